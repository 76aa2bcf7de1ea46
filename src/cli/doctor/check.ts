import { existsSync, readFileSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../../config/schema.js';
import type { NetworkProbe } from './network-probe.js';

/** What a check found: `fail` means k3s or fleetlet will not work; `warn` means it may, with a risk named. */
export type CheckStatus = 'pass' | 'warn' | 'fail';

export interface CheckResult {
  check: string;
  status: CheckStatus;
  summary: string;
  /** A concrete command or edit that makes the check pass; set for every warn and fail. */
  fix?: string;
}

/**
 * Everything a check reads comes through here, so the same checks run on this device (root "/"), on a mounted
 * image, and on the fixture trees of the tests.
 */
export interface DoctorContext {
  root: string;
  /** Undefined when the configuration did not load (that is reported on its own). */
  config: Config | undefined;
  arch: string;
  now: Date;
  probe: NetworkProbe;
  freeBytes: (path: string) => number;
}

export type Check = (context: DoctorContext) => CheckResult[] | Promise<CheckResult[]>;

export function inRoot(context: DoctorContext, path: string): string {
  return join(context.root, path);
}

export function readRootFile(context: DoctorContext, path: string): string | undefined {
  const file = inRoot(context, path);
  try {
    return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
  } catch {
    return undefined;
  }
}

export function freeBytesOf(path: string): number {
  const stats = statfsSync(path);
  return stats.bavail * stats.bsize;
}

export const pass = (check: string, summary: string): CheckResult => ({ check, status: 'pass', summary });
export const warn = (check: string, summary: string, fix: string): CheckResult => ({ check, status: 'warn', summary, fix });
export const fail = (check: string, summary: string, fix: string): CheckResult => ({ check, status: 'fail', summary, fix });
