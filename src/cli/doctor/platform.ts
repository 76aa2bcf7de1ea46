import { existsSync } from 'node:fs';
import { type Check, fail, inRoot, pass, readRootFile, warn } from './check.js';

const SUPPORTED_ARCHES: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'armv7' };

/** Architecture and operating system: the binary runs on linux amd64/arm64/armv7, the unit needs systemd. */
export const checkPlatform: Check = (context) => {
  const arch = SUPPORTED_ARCHES[context.arch];
  if (!arch) {
    return [fail('platform', `unsupported CPU architecture ${context.arch}`, 'use a linux amd64, arm64 or armv7 device')];
  }
  const prettyName = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readRootFile(context, 'etc/os-release') ?? '')?.[1];
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
