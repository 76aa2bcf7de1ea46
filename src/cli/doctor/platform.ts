import { existsSync } from 'node:fs';
import { imageArch } from '../provision-binary.js';
import { type Check, type CheckResult, type DoctorContext, fail, inRoot, pass, readRootFile, warn } from './check.js';

const SUPPORTED_ARCHES: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'armv7' };

/** Architecture and operating system: the binary runs on linux amd64/arm64/armv7, the unit needs systemd. */
export const checkPlatform: Check = (context) => {
  if (context.image) return imagePlatform(context);
  const arch = SUPPORTED_ARCHES[context.arch];
  if (!arch) {
    return [fail('platform', `unsupported CPU architecture ${context.arch}`, 'use a linux amd64, arm64 or armv7 device')];
  }
  const prettyName = distribution(context);
  const results = prettyName
    ? [pass('platform', `linux ${arch}, ${prettyName}`)]
    : [warn('platform', `linux ${arch}, unknown distribution (no /etc/os-release)`, 'use a systemd distribution such as Raspberry Pi OS or Debian')];
  if (arch === 'armv7') {
    results.push(
      warn(
        'platform',
        'the armv7 build runs on Node 20.11.0, the last armv7 Node runtime: it gets no security fixes since April 2026 (fleetlet updates still come)',
        'on a board that can run a 64-bit OS (Raspberry Pi 3, 4, 5, Zero 2), use a 64-bit OS and the arm64 binary, whose runtime is a supported Node LTS',
      ),
    );
  }
  // sd_booted(3): this directory exists exactly when systemd is the init system.
  if (!existsSync(inRoot(context, 'run/systemd/system'))) {
    results.push(
      warn('platform', 'systemd is not running, so the fleetlet unit cannot be used', 'boot with systemd, or run `fleetlet agent` under another supervisor'),
    );
  }
  return results;
};

function distribution(context: DoctorContext): string | undefined {
  return /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readRootFile(context, 'etc/os-release') ?? '')?.[1];
}

/** An image's arch is the one of the loader it carries, not this machine's; its systemd is installed, not running. */
function imagePlatform(context: DoctorContext): CheckResult[] {
  let arch: string;
  try {
    arch = imageArch(context.root, undefined);
  } catch (err) {
    return [warn('platform', `image of unknown architecture: ${(err as Error).message.replace(/^--arch: /, '')}`, 'provision it with --arch x64, arm64 or armv7')];
  }
  const name = distribution(context);
  const results = [name ? pass('platform', `image for linux ${arch}, ${name}`) : warn('platform', `image for linux ${arch}, unknown distribution (no /etc/os-release)`, 'use a systemd distribution such as Raspberry Pi OS or Debian')];
  if (!['lib/systemd/systemd', 'usr/lib/systemd/systemd'].some((path) => existsSync(inRoot(context, path)))) {
    results.push(warn('platform', 'the image has no systemd (/lib/systemd/systemd), so the fleetlet unit will not run', 'use a systemd distribution, or run `fleetlet agent` under another supervisor'));
  }
  return results;
}
