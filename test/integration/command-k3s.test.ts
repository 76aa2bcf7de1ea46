import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { k3sRestartHandler } from '../../src/commands/k3s-restart.js';
import { CHUNK_BYTES, logsCollectHandler } from '../../src/commands/logs-collect.js';
import { tempDir } from '../helpers/paths.js';
import { encode, signedCommand, testKey } from '../fixtures/command-keys.js';
import { writeShellFakeK3s } from '../fixtures/command-fake-k3s.js';
import { ProcessK3sControl } from '../fixtures/command-k3s-control.js';
import { routerRig, type RouterRig } from '../fixtures/command-router-setup.js';

const operator = testKey('ops');

describe('k3s.restart and logs.collect on a running (fake) k3s', () => {
  let dir: { dir: string; cleanup: () => void };
  let k3s: ProcessK3sControl;
  let rig: RouterRig;
  const agentLines = Array.from({ length: 300 }, (_, i) => `agent line ${i} ${'x'.repeat(i % 7 === 0 ? 3000 : 40)}`);

  beforeEach(async () => {
    dir = tempDir('fleetlet-k3s-commands-');
    mkdirSync(join(dir.dir, 'k3s', 'bin'), { recursive: true });
    writeShellFakeK3s(join(dir.dir, 'k3s', 'bin', 'k3s'), 'v1.35.2+k3s1', 'healthy');
    k3s = new ProcessK3sControl(join(dir.dir, 'k3s'), join(dir.dir, 'mirror'), 0);
    await k3s.restart();
    rig = routerRig({
      stateDir: join(dir.dir, 'state'),
      operator,
      handlers: [
        k3sRestartHandler(k3s, 3000),
        logsCollectHandler({ agent: async (max) => agentLines.slice(-max), k3s: (max) => k3s.recentLogLines(max) }),
      ],
    });
  });
  afterEach(() => {
    rig.close();
    k3s.stop();
    dir.cleanup();
  });

  const run = async (type: 'k3s.restart' | 'logs.collect', args: Record<string, unknown> = {}) => {
    const envelope = signedCommand(operator, { type, args });
    rig.router.receive(encode(envelope));
    await rig.router.idle();
    return rig.outbox.results().filter((r) => r.commandId === envelope.id);
  };

  it('k3s.restart restarts k3s once and waits for it to be healthy', async () => {
    const before = k3s.runningPid();
    const results = await run('k3s.restart');
    expect(results.at(-1)).toMatchObject({ status: 'succeeded', detail: 'k3s restarted and healthy' });
    expect(k3s.runningPid()).not.toBe(before);
    expect(k3s.runningPid()).toBeDefined();
  });

  it('logs.collect sends bounded lines in chunks that each fit one message', async () => {
    const results = await run('logs.collect', { lines: 250 });
    const chunks = results.filter((r) => r.status === 'progress' && r.step === 'logs');
    const lines = chunks.flatMap((r) => (r.status === 'progress' ? ((r.data?.lines as string[]) ?? []) : []));
    expect(chunks.length).toBeGreaterThan(1);
    for (const chunk of chunks) expect(Buffer.byteLength(JSON.stringify(chunk))).toBeLessThan(CHUNK_BYTES + 4096);
    expect(lines.filter((l) => l.startsWith('agent line'))).toHaveLength(250);
    expect(lines.some((l) => l.includes('Starting k3s agent v1.35.2+k3s1'))).toBe(true);
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(2051);
    expect(results.at(-1)).toMatchObject({ status: 'succeeded', data: { chunks: chunks.length } });
    expect(readFileSync(join(dir.dir, 'k3s', 'k3s.log'), 'utf8')).toContain('Starting k3s agent');
  });
});
