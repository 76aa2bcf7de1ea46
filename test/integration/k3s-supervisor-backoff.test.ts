import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SYSTEM_CLOCK, type Clock } from '../../src/k3s/supervisor-options.js';
import type { K3sSupervisor } from '../../src/k3s/supervisor.js';
import { shutDown, supervisedFake, type SupervisedFake } from '../helpers/k3s-supervisor.js';
import { waitFor } from '../helpers/wait.js';
import { descendantsOf } from '../helpers/processes.js';
import { tempDir } from '../helpers/paths.js';

let dir: string;
let cleanup: () => void;
let fake: SupervisedFake | undefined;

beforeEach(() => {
  ({ dir, cleanup } = tempDir('fleetlet-k3s-backoff-'));
});
afterEach(async () => {
  if (fake) await shutDown(fake);
  fake = undefined;
  cleanup();
});

/** A real clock that remembers how long the supervisor chose to wait in backoff. */
function recordingClock(supervisor: () => K3sSupervisor | undefined, delays: number[]): Clock {
  return {
    now: SYSTEM_CLOCK.now,
    sleep: (ms, signal) => {
      if (supervisor()?.status().state === 'backoff') delays.push(ms);
      return SYSTEM_CLOCK.sleep(ms, signal);
    },
  };
}

describe('restart pacing', () => {
  it('backs off exponentially with jitter, capped', async () => {
    const delays: number[] = [];
    fake = await supervisedFake(
      dir,
      {},
      {
        clock: recordingClock(() => fake?.supervisor, delays),
        random: () => 0.5,
        timings: { backoffBaseMs: 100, backoffCapMs: 400, crashLoopExits: 6, crashLoopWindowMs: 60_000, healthIntervalMs: 50, logPollMs: 50 },
      },
    );
    fake.script([{ crashAfterMs: 0, crashMode: 'exit1' }]);
    await fake.supervisor.start();
    await waitFor(() => fake!.supervisor.status().state === 'crash-loop', 'crash loop', 30_000);
    // ceiling = min(400, 100 * 2^n); delay = ceiling/2 + random * ceiling/2
    expect(delays).toEqual([75, 150, 300, 300, 300]);
  });

  it('forgets the backoff once k3s has been healthy for the stable period', async () => {
    const delays: number[] = [];
    fake = await supervisedFake(
      dir,
      {},
      {
        clock: recordingClock(() => fake?.supervisor, delays),
        random: () => 0.5,
        timings: { backoffBaseMs: 100, backoffCapMs: 400, stableMs: 1_000, healthIntervalMs: 50, logPollMs: 50 },
      },
    );
    fake.script([{ crashAfterMs: 0, crashMode: 'exit1' }, { crashAfterMs: 2_500, crashMode: 'exit0' }, {}]);
    await fake.supervisor.start();
    await waitFor(() => fake!.supervisor.status().restarts === 2 && fake!.supervisor.status().state === 'running-healthy', 'third run healthy', 30_000);
    expect(delays).toEqual([75, 75]); // not 75, 150: the second run was stable
    expect(fake.kinds()).not.toContain('k3s.crash-loop');
  });

  it('leaves a crash loop when k3s comes back healthy', async () => {
    fake = await supervisedFake(dir, {}, { timings: { crashLoopExits: 2, crashLoopRetryMs: 300, backoffBaseMs: 50, backoffCapMs: 50 } });
    fake.script([{ crashAfterMs: 0, crashMode: 'exit1' }, { crashAfterMs: 0, crashMode: 'exit1' }, {}]);
    await fake.supervisor.start();
    await waitFor(() => fake!.kinds().includes('k3s.crash-loop'), 'crash loop', 30_000);
    await waitFor(() => fake!.supervisor.status().state === 'running-healthy', 'healthy after the slow retry', 30_000);
    expect(fake.kinds().filter((kind) => kind === 'k3s.crash-loop')).toHaveLength(1);
  });

  it('returns to healthy when healthz recovers', async () => {
    fake = await supervisedFake(dir, { FAKE_K3S_HEALTHZ: 'ok' });
    await fake.supervisor.start();
    await waitFor(() => fake!.supervisor.status().state === 'running-healthy', 'healthy', 30_000);
    // A kubelet that stops answering for a while: a stopped process leaves healthz connections unanswered. The
    // agent is the only child of the "k3s init" parent that fleetlet started (k3s runs with --log).
    const pid = fake.supervisor.status().pid!;
    const [agent] = descendantsOf(pid);
    process.kill(agent!, 'SIGSTOP');
    try {
      await waitFor(() => fake!.supervisor.status().state === 'running-unhealthy', 'unhealthy while stopped', 30_000);
    } finally {
      process.kill(agent!, 'SIGCONT');
    }
    await waitFor(() => fake!.supervisor.status().state === 'running-healthy', 'healthy again', 30_000);
    expect(fake.supervisor.status().pid).toBe(pid);
    expect(fake.kinds().filter((kind) => kind === 'k3s.up')).toHaveLength(2);
  });
});
