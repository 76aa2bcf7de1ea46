import { rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import type { CommandArgs } from '../protocol/command.js';
import { sha256OfFileIfPresent } from '../lib/files.js';
import { keepPrevious, restorePrevious, swapIn } from './binary-swap.js';
import type { K3sControl } from '../k3s/ports.js';
import { compareVersions } from './versions.js';
import { errorMessage } from '../lib/errors.js';

/**
 * The k3s upgrade as an explicit state machine (after Mender): each state does one thing and returns the next.
 * The runner persists the state before running it, so a SIGKILL or power cut at any point resumes at a state
 * whose step is safe to repeat. The previous binary is kept before the swap and restored on any failure after it.
 */
const Installed = { fromVersion: z.string(), fromSha: z.string() };
const Fetched = { ...Installed, newPath: z.string(), newSha: z.string() };

export const UpgradeStateSchema = z.discriminatedUnion('state', [
  z.object({ state: z.literal('check') }),
  z.object({ state: z.literal('download'), ...Installed }),
  z.object({ state: z.literal('swap'), ...Fetched }),
  z.object({ state: z.literal('restart'), ...Fetched }),
  z.object({ state: z.literal('wait_health'), ...Fetched }),
  z.object({ state: z.literal('commit'), ...Fetched }),
  z.object({ state: z.literal('rollback'), ...Installed, reason: z.string() }),
  z.object({ state: z.literal('rollback_restart'), ...Installed, reason: z.string() }),
  z.object({ state: z.literal('rollback_wait_health'), ...Installed, reason: z.string() }),
  z.object({ state: z.literal('done'), outcome: z.enum(['succeeded', 'failed']), reason: z.string(), detail: z.string() }),
]);
export type UpgradeState = z.output<typeof UpgradeStateSchema>;
export type UpgradeStateName = UpgradeState['state'];

export interface UpgradeEnv {
  k3s: K3sControl;
  args: CommandArgs<'k3s.upgrade'>;
  commandId: string;
  healthTimeoutMs: number;
  minFreeBytes: number;
  maxArtifactBytes: number;
  downloadIdleTimeoutMs: number;
  /** The command's expiresAt: nothing is changed after it, and the download ends by it. */
  expiresAt: number;
  signal: AbortSignal;
  progress: (step: string, detail?: string) => void;
}

const done = (outcome: 'succeeded' | 'failed', reason: string, detail: string): UpgradeState => ({ state: 'done', outcome, reason, detail });

/** Before the swap nothing has changed, so a command past its validity ends there (also when a restart resumes it). */
function expired(env: UpgradeEnv): UpgradeState | undefined {
  if (Date.now() <= env.expiresAt) return undefined;
  return done('failed', 'expired', `the command expired at ${new Date(env.expiresAt).toISOString()}; nothing was changed`);
}

export async function runState(state: UpgradeState, env: UpgradeEnv): Promise<UpgradeState> {
  const { k3s, args } = env;
  switch (state.state) {
    case 'check': {
      const late = expired(env);
      if (late) return late;
      const fromVersion = await k3s.installedVersion();
      const fromSha = await sha256OfFileIfPresent(k3s.binaryPath);
      if (!fromVersion || !fromSha) return done('failed', 'not_installed', `no working k3s at ${k3s.binaryPath} to upgrade`);
      const order = compareVersions(args.version, fromVersion);
      if (order === 0) return done('succeeded', 'already_installed', `k3s ${fromVersion} is already installed`);
      if (order < 0 && !args.allowDowngrade) {
        return done('failed', 'downgrade_refused', `${args.version} is older than the installed ${fromVersion}; set allowDowngrade to force it`);
      }
      const free = await k3s.freeBytes(dirname(k3s.binaryPath));
      if (free < env.minFreeBytes) {
        return done('failed', 'disk_space', `${free} bytes free beside ${k3s.binaryPath}, ${env.minFreeBytes} needed`);
      }
      return { state: 'download', fromVersion, fromSha };
    }
    case 'download': {
      const late = expired(env);
      if (late) return late;
      let fetched;
      try {
        fetched = await k3s.fetchRelease(
          { version: args.version, ...(args.artifactUrl ? { artifactUrl: args.artifactUrl } : {}), ...(args.sha256 ? { sha256: args.sha256 } : {}) },
          throttled(env),
          { signal: env.signal, deadline: env.expiresAt, maxBytes: env.maxArtifactBytes, idleTimeoutMs: env.downloadIdleTimeoutMs },
        );
      } catch (err) {
        return done('failed', Date.now() > env.expiresAt ? 'expired' : 'download_failed', `${errorMessage(err)}; nothing was changed`);
      }
      return { state: 'swap', fromVersion: state.fromVersion, fromSha: state.fromSha, newPath: fetched.path, newSha: fetched.sha256 };
    }
    case 'swap': {
      if ((await sha256OfFileIfPresent(k3s.binaryPath)) !== state.newSha) {
        const late = expired(env);
        if (late) {
          await rm(state.newPath, { force: true });
          return late;
        }
        if ((await sha256OfFileIfPresent(state.newPath)) !== state.newSha) {
          // The verified download vanished before the swap (the sweep of leftovers at start, a power cut before the
          // directory reached the disk): nothing changed yet, so download it again.
          return { state: 'download', fromVersion: state.fromVersion, fromSha: state.fromSha };
        }
      }
      await keepPrevious(k3s.binaryPath, state.fromSha);
      await swapIn(state.newPath, k3s.binaryPath, state.newSha);
      return { ...state, state: 'restart' };
    }
    case 'restart':
      await k3s.restart();
      return { ...state, state: 'wait_health' };
    case 'wait_health': {
      // Healthy means the new version runs: a k3s still running the old binary is not a verdict on the new one.
      const health = await k3s.waitHealthy(env.healthTimeoutMs, env.signal, args.version);
      if (health.healthy) return { ...state, state: 'commit' };
      return { state: 'rollback', fromVersion: state.fromVersion, fromSha: state.fromSha, reason: health.reason };
    }
    case 'commit':
      // The previous binary stays as `.previous` for a manual rollback; the next upgrade replaces it.
      await rm(state.newPath, { force: true });
      return done('succeeded', 'upgraded', `k3s ${state.fromVersion} -> ${args.version}, healthy`);
    case 'rollback':
      await restorePrevious(k3s.binaryPath, state.fromSha);
      return { ...state, state: 'rollback_restart' };
    case 'rollback_restart':
      await k3s.restart();
      return { ...state, state: 'rollback_wait_health' };
    case 'rollback_wait_health': {
      const health = await k3s.waitHealthy(env.healthTimeoutMs, env.signal, state.fromVersion);
      const why = state.reason.startsWith('cancelled') ? `the upgrade to ${args.version} was ${state.reason}` : `${args.version} was not healthy (${state.reason})`;
      if (health.healthy) return done('failed', 'rolled_back', `${why}; ${state.fromVersion} restored and healthy`);
      return done('failed', 'rollback_unhealthy', `${why}; ${state.fromVersion} restored but not healthy either (${health.reason})`);
    }
    case 'done':
      return state;
  }
}

/** Download progress as a result every 10 %, not on every chunk. */
function throttled(env: UpgradeEnv): (bytes: number, total: number | undefined) => void {
  let lastDecile = -1;
  return (bytes, total) => {
    if (!total) return;
    const decile = Math.floor((bytes / total) * 10);
    if (decile > lastDecile) {
      lastDecile = decile;
      env.progress('download', `${decile * 10}% of ${total} bytes`);
    }
  };
}
