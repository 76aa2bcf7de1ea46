import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigSchema } from '../../src/config/schema.js';
import { buildAgentInvocation } from '../../src/k3s/args.js';
import { binaryVersion } from '../../src/k3s/control.js';
import type { K3sEvent } from '../../src/k3s/events.js';
import { K3sSupervisor } from '../../src/k3s/supervisor.js';
import type { SupervisorOptions } from '../../src/k3s/supervisor-options.js';
import { createLogger } from '../../src/lib/logger.js';
import { FAKE_K3S } from './fake-k3s.js';
import { freePort } from './ports.js';

export const JOIN_TOKEN = 'K10c0ffee::node:join-token-must-stay-hidden';

export interface SupervisedFake {
  supervisor: K3sSupervisor;
  events: K3sEvent[];
  healthzPort: number;
  healthzUrl: string;
  workDir: string;
  /** Writes a FAKE_K3S_SCRIPT: the n-th start of the fake behaves like runs[n] (the last repeats). */
  script(runs: Record<string, unknown>[]): void;
  kinds(): string[];
}

/** A supervisor over the fake k3s with test-sized timings; everything lives under `dir`. */
export async function supervisedFake(
  dir: string,
  fakeEnv: Record<string, string> = {},
  overrides: Partial<SupervisorOptions> = {},
): Promise<SupervisedFake> {
  const healthzPort = await freePort();
  const lbPort = await freePort();
  const events: K3sEvent[] = [];
  const scriptFile = join(dir, 'fake-script.json');
  const k3s = ConfigSchema.parse({
    broker: { url: 'mqtts://broker.example:8883' },
    k3s: { serverUrl: 'https://10.0.0.1:6443', token: JOIN_TOKEN, dataDir: join(dir, 'data'), lbServerPort: lbPort, nodeName: 'pi-01' },
  }).k3s;
  const workDir = join(dir, 'work');
  const supervisor = new K3sSupervisor({
    binaryPath: FAKE_K3S,
    dataDir: join(dir, 'data'),
    binaryVersion,
    invocation: () => buildAgentInvocation(k3s),
    baseEnv: {
      ...process.env,
      FAKE_K3S_AS_ROOT: '1',
      FAKE_K3S_NODE_CONFIG_PATH: join(dir, 'etc-rancher-node'),
      FAKE_K3S_HEALTHZ_PORT: String(healthzPort),
      FAKE_K3S_RETRY_MS: '100',
      FAKE_K3S_RECORD_DIR: dir,
      FAKE_K3S_SCRIPT: scriptFile,
      ...fakeEnv,
    },
    // The fake takes its behaviour from these; k3s gets only allow-listed variables otherwise.
    passEnv: ['FAKE_K3S_*'],
    workDir,
    healthzUrl: `http://127.0.0.1:${healthzPort}/healthz`,
    sink: { emit: (event) => void events.push(event) },
    logger: createLogger({ level: 'silent' }),
    timings: {
      graceMs: 2_000,
      backoffBaseMs: 100,
      backoffCapMs: 400,
      stableMs: 60_000,
      crashLoopExits: 3,
      crashLoopWindowMs: 60_000,
      crashLoopRetryMs: 60_000,
      healthIntervalMs: 100,
      unhealthyAfterFailures: 2,
      probeTimeoutMs: 2_000,
      notInstalledRetryMs: 200,
      logPollMs: 50,
      adoptPollMs: 100,
      holdPollMs: 100,
    },
    ...overrides,
  });
  writeFileSync(scriptFile, JSON.stringify({ runs: [{}] }));
  return {
    supervisor,
    events,
    healthzPort,
    healthzUrl: `http://127.0.0.1:${healthzPort}/healthz`,
    workDir,
    script: (runs) => writeFileSync(scriptFile, JSON.stringify({ runs })),
    kinds: () => events.map((event) => event.kind),
  };
}

/** Stops k3s explicitly, then the machine: a stop of the machine alone leaves k3s running for the next one. */
export async function shutDown(fake: SupervisedFake): Promise<void> {
  await fake.supervisor.stopK3s('test');
  await fake.supervisor.stop();
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
