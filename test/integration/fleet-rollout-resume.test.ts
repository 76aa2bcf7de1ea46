import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey } from '../../src/fleet/keygen.js';
import type { RolloutState } from '../../src/fleet/rollout-state.js';
import { runCli } from '../helpers/cli.js';
import { startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/paths.js';
import { startTestDevice, type TestDevice } from '../fixtures/command-device.js';

const VERSION = 'v1.36.3+k3s1';

/**
 * Rollouts that halt, resume with a new threshold, or are aborted, through the real CLI. The devices are real agents
 * with k3s off: each refuses the upgrade, so every device fails.
 */
describe('fleet rollout: dry runs, halted rollouts, state files', () => {
  let broker: TestBroker;
  let dir: { dir: string; cleanup: () => void };
  let keyFile: string;
  const devices: TestDevice[] = [];

  beforeAll(async () => {
    broker = await startMosquitto();
    dir = tempDir('fleetlet-rollout-resume-');
    keyFile = join(dir.dir, 'ops.key');
    const key = generateSigningKey(keyFile, 'ops');
    for (const deviceId of ['pi-1', 'pi-2', 'pi-3']) {
      devices.push(await startTestDevice({ brokerUrl: broker.url, dir: join(dir.dir, deviceId), deviceId, trustedKeys: [{ id: 'ops', publicKey: key.publicKey }] }));
    }
  });

  afterAll(async () => {
    for (const device of devices) await device.stop();
    await broker?.close();
    dir?.cleanup();
  });

  const rollout = (...args: string[]) => runCli(['fleet', 'rollout', ...args, '--broker', broker.url, '--allow-plaintext', '--key', keyFile], {}, 60_000);
  const stateOf = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as RolloutState;

  it('--dry-run needs no --state; without --dry-run, the missing --state is named', () => {
    const dry = rollout('k3s', '--to', VERSION, '--dry-run');
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('to 3 device(s) in 3 batch(es); nothing sent');
    const missing = rollout('k3s', '--to', VERSION);
    expect(missing.code).toBe(64);
    expect(missing.stderr).toContain('give --state FILE');
  });

  it('a halted rollout stays halted when rerun as it was, and goes on with a new --max-failures', () => {
    const file = join(dir.dir, 'halt.json');
    const first = rollout('k3s', '--to', VERSION, '--canary', 'pi-1', '--device-timeout', '2', '--state', file);
    expect(first.code, first.stdout + first.stderr).toBe(1);
    expect(first.stdout).toMatch(/halted: 1 failure\(s\) after batch 1, more than the 0 allowed for canaries/);
    const again = rollout('k3s', '--state', file);
    expect(again.code).toBe(1);
    expect(again.stdout).toContain('to go on, rerun with a higher --max-failures (now 0); to end it, rerun with --abort');
    expect(stateOf(file).devices['pi-2']?.status).toBe('pending');
    const onward = rollout('k3s', '--state', file, '--max-failures', '5', '--device-timeout', '2');
    expect(onward.code, onward.stdout + onward.stderr).toBe(0);
    expect(onward.stdout).toContain('going on with --max-failures 5');
    const state = stateOf(file);
    expect(state.outcome).toBe('completed');
    for (const id of ['pi-2', 'pi-3']) expect(state.devices[id]).toMatchObject({ status: 'failed', detail: 'no result within 2 s' });
  });

  it('--abort ends a halted rollout: a rerun sends nothing', () => {
    const file = join(dir.dir, 'abort.json');
    expect(rollout('k3s', '--to', VERSION, '--canary', 'pi-2', '--device-timeout', '2', '--state', file).code).toBe(1);
    const aborted = rollout('k3s', '--state', file, '--abort');
    expect(aborted.code, aborted.stderr).toBe(0);
    expect(aborted.stdout).toContain('aborted: nothing more will be sent');
    const again = rollout('k3s', '--state', file, '--max-failures', '9');
    expect(again.stdout).toContain('it is aborted');
    expect(stateOf(file)).toMatchObject({ outcome: 'aborted', devices: { 'pi-1': { status: 'pending' }, 'pi-3': { status: 'pending' } } });
  });

  it('refuses to resume a k3s rollout as an agent rollout, naming the command that resumes it', () => {
    const file = join(dir.dir, 'halt.json');
    const before = readFileSync(file, 'utf8');
    const run = rollout('agent', '--state', file);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`${file} holds a k3s.upgrade rollout`);
    expect(run.stderr).toContain(`\`fleet rollout k3s --state ${file}\``);
    expect(readFileSync(file, 'utf8')).toBe(before);
    expect(existsSync(join(dir.dir, 'agent.json'))).toBe(false);
  });
});
