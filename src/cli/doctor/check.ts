import { existsSync, readdirSync, readFileSync, statfsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Config } from '../../config/schema.js';
import type { NetworkProbe } from './network-probe.js';

/**
 * What a check found: `fail` means k3s or fleetlet will not work; `warn` means it may, with a risk named; `skip`
 * means the check has nothing to say here (a kernel check on an image, whose kernel is not running).
 */
export type CheckStatus = 'pass' | 'warn' | 'fail' | 'skip';

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
  /** The root is an image that is not running (nothing mounted on its /proc): kernel and host checks are skipped. */
  image: boolean;
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
export const skip = (check: string, summary: string): CheckResult => ({ check, status: 'skip', summary });

/**
 * A root other than "/" whose /proc holds nothing is an image on the build machine: its kernel is not running, so
 * what /proc, /sys, the clock and the free space say is the build machine's, not the device's.
 */
export function isImageRoot(root: string): boolean {
  if (resolve(root) === '/') return false;
  try {
    return readdirSync(join(root, 'proc')).length === 0;
  } catch {
    return true;
  }
}
