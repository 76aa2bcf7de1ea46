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
  // sd_booted(3): this directory exists exactly when systemd is the init system.
  if (!existsSync(inRoot(context, 'run/systemd/system'))) {
    results.push(
      warn('platform', 'systemd is not running, so the fleetlet unit cannot be used', 'boot with systemd, or run `fleetlet agent` under another supervisor'),
    );
  }
  return results;
};
