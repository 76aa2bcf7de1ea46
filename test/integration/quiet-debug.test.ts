import { readFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { freePort } from '../helpers/ports.js';
import { FLEETLET_BUNDLE, REPO_ROOT } from '../helpers/paths.js';

// MQTT.js and mqtt-packet call their `debug` loggers about fifteen times per publish. The bundle gives them
// scripts/quiet-debug-shim.cjs instead of the `debug` package (docs/benchmarks.md, "Memory while draining").
const SHIM = join(REPO_ROOT, 'scripts/quiet-debug-shim.cjs');
const require = createRequire(import.meta.url);

type Logger = ((...args: unknown[]) => void) & { enabled: boolean; namespace: string; extend(sub: string): Logger };

interface ProfileNode {
  callFrame: { url: string };
  selfSize: number;
  children: ProfileNode[];
}

/** Bytes the sampling heap profiler saw allocated by functions of `file`, young garbage included. */
async function bytesAllocatedIn(file: string, work: () => void): Promise<number> {
  const session = new Session();
  session.connect();
  try {
    await session.post('HeapProfiler.startSampling', {
      samplingInterval: 64,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    } as never);
    work();
    const { profile } = (await session.post('HeapProfiler.stopSampling')) as unknown as { profile: { head: ProfileNode } };
    const sum = (node: ProfileNode): number =>
      (node.callFrame.url.endsWith(file) ? node.selfSize : 0) + node.children.reduce((total, child) => total + sum(child), 0);
    return sum(profile.head);
  } finally {
    session.disconnect();
  }
}

const CALLS = 100_000;

function callOften(log: Logger): void {
  const packet = { cmd: 'publish', topic: 'fleetlet/v1/devices/d1/status', qos: 1 };
  for (let i = 0; i < CALLS; i += 1) log('publish: packet: %o', packet, i);
}

describe('the bundle\'s stand-in for the debug package', () => {
  it('gives a namespace that is off a logger that allocates nothing per call, where debug allocates', async () => {
    const quiet = (require(SHIM) as (namespace: string) => Logger)('fleetlet-test:off');
    const real = (require('debug') as (namespace: string) => Logger)('fleetlet-test:off');
    expect(quiet.enabled).toBe(false);
    expect(real.enabled).toBeFalsy();

    const realBytes = await bytesAllocatedIn('debug/src/common.js', () => callOften(real));
    const quietBytes = await bytesAllocatedIn('quiet-debug-shim.cjs', () => callOften(quiet));
    // debug's `...args` is an array per call until V8's optimizer removes some of them from this loop (about 5 bytes a
    // call are left); the stand-in's few kilobytes are V8's one-time bookkeeping for a function that runs at all.
    expect(realBytes / CALLS).toBeGreaterThan(1);
    expect(quietBytes).toBeLessThan(realBytes / 20);
  });

  it('keeps the loggers\' shape: namespace, extend, enabled', () => {
    const quiet = (require(SHIM) as (namespace: string) => Logger)('mqttjs:client');
    expect(quiet.namespace).toBe('mqttjs:client');
    const child = quiet.extend('store');
    expect(child.namespace).toBe('mqttjs:client:store');
    expect(child.enabled).toBe(false);
    expect(() => child('a %s', 'b')).not.toThrow();
  });

  it('is what MQTT.js logs through in the bundle, and DEBUG=mqttjs* still shows its diagnostics', async () => {
    // esbuild marks each bundled module with its path.
    expect(readFileSync(FLEETLET_BUNDLE, 'utf8')).toContain('scripts/quiet-debug-shim.cjs');
    const broker = `mqtt://127.0.0.1:${await freePort()}`; // nothing listens: MQTT.js logs its attempt, then fails
    const withDebug = runCli(['fleet', 'devices', '--broker', broker], { DEBUG: 'mqttjs:client' });
    expect(withDebug.stderr).toMatch(/mqttjs:client MqttClient :: options\.protocolVersion 4/);
    expect(withDebug.stderr).toContain(`cannot connect to ${broker}`);
    const withoutDebug = runCli(['fleet', 'devices', '--broker', broker]);
    expect(withoutDebug.stderr).toContain(`cannot connect to ${broker}`);
    expect(withoutDebug.stderr).not.toContain('mqttjs');
  });
});
