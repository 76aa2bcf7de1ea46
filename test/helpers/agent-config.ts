import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { WORK_DIR_NAME } from '../../src/k3s/k3s-part.js';
import { readStatusFile } from '../../src/k3s/status-file.js';
import { startCli } from './cli.js';
import { freePort } from './ports.js';
import { processesMatching, signalIfAlive } from './processes.js';

/**
 * Writes a config for an agent under test: state in `dir` (status committed at once, no RAM spool), no k3s, no local HTTP port (tests run in parallel),
 * and a broker URL that may point at nothing. `overrides` are merged one level deep per section.
 */
export function writeAgentConfig(dir: string, overrides: Record<string, unknown> = {}): string {
  const base: Record<string, Record<string, unknown> | string> = {
    device: { id: 'test-device' },
    broker: { url: 'mqtt://127.0.0.1:1', allowPlaintext: true },
    k3s: { enabled: false },
    stateDir: join(dir, 'state'),
    // On disk, so no spool: tests that read status from the state database see it there on every machine, and none
    // writes into the host's /run.
    runtimeDir: join(dir, 'run'),
    telemetry: { http: { enabled: false } },
    log: { level: 'info' },
  };
  for (const [key, value] of Object.entries(overrides)) {
    const current = base[key];
    base[key] =
      typeof current === 'object' && typeof value === 'object' && value !== null && !Array.isArray(value)
        ? { ...current, ...(value as Record<string, unknown>) }
        : (value as string);
  }
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'config.yaml');
  writeFileSync(file, stringify(base));
  return file;
}

/**
 * A k3s section whose agent lives wholly inside `dir`: its data, its node identity (never the host's
 * /etc/rancher/node) and free loopback ports for its load balancer and kubelet healthz. Every test that runs an
 * agent with k3s enabled builds its section here, so none can forget a path and touch the host.
 */
export async function isolatedK3s(
  dir: string,
  binaryPath: string,
  extra: Record<string, unknown> = {},
): Promise<Record<string, unknown>> {
  return {
    enabled: true,
    serverUrl: 'https://10.0.0.1:6443',
    token: 'K10abc::node:test-join-token',
    binaryPath,
    dataDir: join(dir, 'data'),
    nodeConfigDir: join(dir, 'etc-rancher-node'),
    lbServerPort: await freePort(),
    kubeletArgs: [`healthz-port=${await freePort()}`],
    // The fake k3s takes its behaviour from FAKE_K3S_* variables, which k3s would not get otherwise.
    passEnv: ['FAKE_K3S_*'],
    ...extra,
  };
}

/**
 * Starts the agent (the bundled CLI) on `configFile`, supervising the fake k3s of an isolatedK3s section in `dir`.
 * `stop` ends the agent with SIGTERM and then the k3s it leaves running: a stop of fleetlet never stops k3s.
 */
export function startAgentWithFakeK3s(configFile: string, dir: string, healthzPort: number, extraEnv: Record<string, string> = {}) {
  const agent = startCli(['agent', '--config', configFile], {
    PATH: `${dirname(process.execPath)}:/usr/bin:/bin`,
    FAKE_K3S_AS_ROOT: '1',
    FAKE_K3S_NODE_CONFIG_PATH: join(dir, 'etc-rancher-node'),
    FAKE_K3S_HEALTHZ_PORT: String(healthzPort),
    FAKE_K3S_RETRY_MS: '100',
    ...extraEnv,
  });
  const stop = async () => {
    if (agent.child.exitCode === null && agent.child.signalCode === null) {
      agent.child.kill('SIGTERM');
      await agent.exited;
    }
    for (const pid of processesMatching(join(dir, 'data'))) signalIfAlive(pid, 'SIGKILL');
  };
  return { ...agent, stop };
}

/** The state of the supervised k3s as the agent last saved it, the file `fleetlet k3s status` reads. */
export function savedK3sState(stateDir: string): string | undefined {
  return readStatusFile(join(stateDir, WORK_DIR_NAME))?.state;
}
