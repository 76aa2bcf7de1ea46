import { loadConfig } from '../config/load.js';
import { ConfigError } from '../lib/errors.js';
import type { CliIo, ConfigSelection } from './program.js';
import { EXIT } from './exit-codes.js';
import { join } from 'node:path';
import { type Check, type CheckResult, type DoctorContext, fail, freeBytesOf, isImageRoot, pass, skip, warn } from './doctor/check.js';
import { checkCgroups } from './doctor/cgroups.js';
import { checkClock, checkNodeName } from './doctor/identity.js';
import { checkK3sToken } from './doctor/k3s-token.js';
import { checkKernelModules, checkNetfilter, checkSwap } from './doctor/kernel.js';
import { checkBroker, checkK3sServer } from './doctor/network.js';
import { checkClientCertificate } from './doctor/client-certificate.js';
import { createNetworkProbe } from './doctor/network-probe.js';
import { checkPlatform } from './doctor/platform.js';
import { withK3sDisabled } from './doctor/k3s-disabled.js';
import { checkDisk, checkStateDir } from './doctor/storage.js';

/** In the order a person fixes things: the device first, then its configuration, then the network. */
export const CHECKS: readonly Check[] = [
  checkPlatform,
  checkCgroups,
  checkKernelModules,
  checkNetfilter,
  checkSwap,
  checkDisk,
  checkStateDir,
  checkClock,
  checkNodeName,
  checkK3sToken,
  checkClientCertificate,
  checkBroker,
  checkK3sServer,
];

export interface DoctorOptions {
  selection: ConfigSelection;
  /** Root of the filesystem to inspect: "/" on the device, a mounted image or a fixture otherwise. */
  root: string;
  json: boolean;
}

/** What the build machine's kernel, clock and disk say about an image is not about the image: skipped there. */
const HOST_CHECKS = new Map<Check, string>([
  [checkCgroups, 'cgroups'],
  [checkKernelModules, 'kernel-modules'],
  [checkNetfilter, 'netfilter'],
  [checkSwap, 'swap'],
  [checkDisk, 'disk'],
  [checkClock, 'clock'],
]);

/** Runs every check; the exit code is 0 when nothing failed (the device is ready), 1 otherwise. */
export async function runDoctor(options: DoctorOptions, io: CliIo, overrides: Partial<DoctorContext> = {}): Promise<number> {
  const image = overrides.image ?? isImageRoot(options.root);
  const { config, result: configResult } = loadForDoctor(imageSelection(options), io.env, options.root);
  const context: DoctorContext = {
    root: options.root,
    image,
    config,
    arch: process.arch,
    now: new Date(),
    probe: createNetworkProbe(),
    freeBytes: freeBytesOf,
    ...overrides,
  };
  const results: CheckResult[] = [configResult];
  for (const check of CHECKS) {
    const hostOnly = HOST_CHECKS.get(check);
    if (context.image && hostOnly) results.push(skip(hostOnly, "not about the image: it is the build machine's; checked on the device"));
    else results.push(...(await check(context)).map((result) => withK3sDisabled(config, result)));
  }
  io.stdout(options.json ? `${JSON.stringify(results, null, 2)}\n` : formatResults(results));
  return results.some((r) => r.status === 'fail') ? EXIT.FAILURE : EXIT.OK;
}

/** Under --root, the config is the one in that root unless one was named, and the files it names are read there. */
function imageSelection(options: DoctorOptions): ConfigSelection {
  if (options.selection.explicit) return options.selection;
  return { ...options.selection, path: join(options.root, options.selection.path) };
}

function loadForDoctor(selection: ConfigSelection, env: Record<string, string | undefined>, root: string) {
  try {
    const loaded = loadConfig({ path: selection.path, explicit: selection.explicit, env, sets: selection.sets, fileRoot: root });
    const result = loaded.warnings.length > 0
      ? warn('config', `${selection.path}: ${loaded.warnings.join('; ')}`, 'see fleetlet config check')
      : pass('config', `${loaded.files.length > 0 ? loaded.files.join(', ') : 'defaults and environment'} valid`);
    return { config: loaded.config, result };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { config: undefined, result: fail('config', err.message, `edit ${selection.path}, then run fleetlet config check`) };
  }
}

export function formatResults(results: readonly CheckResult[]): string {
  const lines = results.map((r) => {
    const head = `${r.status.toUpperCase().padEnd(4)}  ${r.check.padEnd(14)} ${r.summary}`;
    return r.fix ? `${head}\n      ${''.padEnd(14)} fix: ${r.fix}` : head;
  });
  const failed = results.filter((r) => r.status === 'fail').length;
  const warned = results.filter((r) => r.status === 'warn').length;
  const verdict = failed > 0 ? `NOT READY: ${failed} failed, ${warned} warnings` : `READY${warned > 0 ? ` (${warned} warnings)` : ''}`;
  return `${lines.join('\n')}\n\n${verdict}\n`;
}
