import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { StatusSchema } from '../../src/protocol/status.js';
import { buildInventory, machineFacts } from '../../src/telemetry/inventory.js';
import { DEFAULT_PROVIDERS, type TelemetryProviders } from '../../src/telemetry/providers.js';
import { Sampler } from '../../src/telemetry/sampler.js';
import { buildStatus } from '../../src/telemetry/status-builder.js';
import { SystemFiles } from '../../src/telemetry/system-files.js';
import { statfsDiskSpace } from '../../src/telemetry/disk-space.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';

const FIXTURES = join(REPO_ROOT, 'test/fixtures/proc');

/** A writable copy of a fixture tree, so a test can change files between samples. */
function copyOf(name: string): string {
  const { dir, cleanup } = tempDir('fleetlet-proc-');
  onTestFinished(cleanup);
  cpSync(join(FIXTURES, name), dir, { recursive: true });
  return dir;
}

const fixedDisk = () => ({ totalBytes: 32 * 1024 ** 3, freeBytes: 20 * 1024 ** 3 });

const busyProviders: TelemetryProviders = {
  linkState: () => ({ connected: true, since: new Date('2026-03-01T07:02:11.950Z') }),
  k3sState: () => ({ state: 'crash-loop', healthy: false, version: 'v1.36.3+k3s1', nodeName: 'pi-3' }),
  outboxStats: () => ({ depth: { status: 19_999, event: 19_999, result: 9_999 }, dropped: { status: 123_456_789, event: 1, result: 0 } }),
  identityFingerprints: () => ({ nodePassword: 'sha256:9f2c4e0d7b1a9f2c4e0d7b1a', deviceKey: 'sha256:3e5d01aa77c2' }),
};

describe('Sampler on a Raspberry Pi tree', () => {
  it('reads every reading, and the CPU share between two samples', () => {
    const root = copyOf('raspberry-pi-3-armv7');
    const clock = { ms: 0 };
    const sampler = new Sampler({
      files: new SystemFiles(root),
      disks: [{ name: 'state', path: '/var/lib/fleetlet' }, { name: 'k3s', path: '/var/lib/rancher/k3s' }],
      diskSpace: fixedDisk,
      monotonicMs: () => clock.ms,
    });
    clock.ms += 30_000;
    const first = sampler.sample();
    expect(first.cpuPercent).toBeUndefined(); // the same /proc/stat as at construction: nothing elapsed
    expect(first).toMatchObject({
      uptimeSeconds: 86412.5,
      load: [0.31, 0.42, 0.4],
      cpuMhz: 1200,
      temperatureC: 51.5,
      network: { rxBytes: 1204339121, txBytes: 88301942 },
      throttle: { bits: 0x50005, now: ['under-voltage', 'throttled'] },
    });
    expect(first.disks.map((d) => d.name)).toEqual(['state', 'k3s']);
    writeFileSync(join(root, 'proc/stat'), `cpu  2455 34 2340 22625763 6340 127 456 0 0 0\n`);
    clock.ms += 30_000;
    expect(sampler.sample().cpuPercent).toBe(50);
  });

  it('keeps the last good CPU reading across a garbled /proc/stat', () => {
    const root = copyOf('raspberry-pi-3-armv7');
    const clock = { ms: 0 };
    const sampler = new Sampler({ files: new SystemFiles(root), disks: [], diskSpace: fixedDisk, monotonicMs: () => clock.ms });
    writeFileSync(join(root, 'proc/stat'), 'cpu  garbage\n');
    clock.ms += 30_000;
    expect(sampler.sample().cpuPercent).toBeUndefined();
    writeFileSync(join(root, 'proc/stat'), `cpu  2455 34 2340 22625763 6340 127 456 0 0 0\n`);
    clock.ms += 30_000;
    expect(sampler.sample().cpuPercent).toBe(50);
  });

  it('gives no percentage for readings too close together, and keeps the earlier one as the base', () => {
    const root = copyOf('raspberry-pi-3-armv7');
    const clock = { ms: 0 };
    const sampler = new Sampler({ files: new SystemFiles(root), disks: [], diskSpace: fixedDisk, monotonicMs: () => clock.ms });
    writeFileSync(join(root, 'proc/stat'), `cpu  2455 34 2340 22625763 6340 127 456 0 0 0\n`);
    clock.ms += 50;
    expect(sampler.sample().cpuPercent).toBeUndefined();
    clock.ms += 5_000;
    expect(sampler.sample().cpuPercent).toBe(50);
  });

  it('survives a tree of malformed files and an empty one, leaving the readings out', () => {
    for (const root of [join(FIXTURES, 'malformed'), copyOf('linux-amd64') + '/nowhere']) {
      const sampler = new Sampler({ files: new SystemFiles(root), disks: [{ name: 'state', path: '/x' }], diskSpace: () => undefined });
      const sample = sampler.sample();
      expect(sample).toMatchObject({ disks: [] });
      for (const key of ['cpuPercent', 'load', 'memory', 'temperatureC', 'network', 'throttle', 'uptimeSeconds'] as const) {
        expect(sample[key]).toBeUndefined();
      }
      const status = buildStatus(1, sample, DEFAULT_PROVIDERS);
      expect(StatusSchema.parse(status)).toEqual(status);
      // Left out, not reported as zero: a zero uptime or load would be a wrong reading.
      expect(JSON.parse(JSON.stringify(status))).toEqual({
        schemaVersion: 1,
        seq: 1,
        sampledAt: status.sampledAt,
        cpu: {},
        disks: [],
        k3s: { state: 'unknown', healthy: false },
        link: { connected: false },
        outbox: { depth: { status: 0, event: 0, result: 0 }, dropped: { status: 0, event: 0, result: 0 } },
      });
    }
  });

  it('reads the live system without any child process', () => {
    const sampler = new Sampler({ files: new SystemFiles('/'), disks: [{ name: 'state', path: REPO_ROOT }], diskSpace: statfsDiskSpace });
    const sample = sampler.sample();
    expect(sample.memory!.totalBytes).toBeGreaterThan(0);
    expect(sample.disks[0]!.totalBytes).toBeGreaterThan(sample.disks[0]!.freeBytes);
    expect(sample.uptimeSeconds).toBeGreaterThan(0);
  });
});

describe('Sampler on a Raspberry Pi 5 tree (hwmon instead of get_throttled)', () => {
  it('reads under-voltage from the rpi_volt hwmon alarm, and follows it back to normal', () => {
    const root = copyOf('raspberry-pi-5-arm64');
    const sampler = new Sampler({ files: new SystemFiles(root), disks: [], diskSpace: fixedDisk });
    expect(sampler.sample()).toMatchObject({ temperatureC: 61.3, cpuMhz: 2400, throttle: { bits: 1, now: ['under-voltage'] } });
    writeFileSync(join(root, 'sys/class/hwmon/hwmon1/in0_lcrit_alarm'), '0\n');
    expect(sampler.sample().throttle).toEqual({ bits: 0, now: [], occurred: [] });
    writeFileSync(join(root, 'sys/class/hwmon/hwmon1/in0_lcrit_alarm'), 'x\n');
    expect(sampler.sample().throttle).toBeUndefined();
  });

  it('describes the board from its arm64 cpuinfo, which has no model name line', () => {
    const machine = machineFacts(new SystemFiles(join(FIXTURES, 'raspberry-pi-5-arm64')), {}, new Date());
    expect(machine.hardware).toMatchObject({ model: 'Raspberry Pi 5 Model B Rev 1.0', serial: 'd1e2f3a4b5c6d7e8', cpuCores: 4 });
  });
});

describe('statfsDiskSpace', () => {
  it('measures a directory that does not exist yet at its nearest existing parent', () => {
    const { dir, cleanup } = tempDir();
    onTestFinished(cleanup);
    const missing = statfsDiskSpace(join(dir, 'not/yet/created'));
    expect(missing?.totalBytes).toBeGreaterThan(0);
    expect(missing?.totalBytes).toBe(statfsDiskSpace(dir)?.totalBytes);
    // Below a regular file nothing can ever be created: no reading rather than a wrong one.
    writeFileSync(join(dir, 'file'), '');
    expect(statfsDiskSpace(join(dir, 'file/sub'))).toBeUndefined();
  });
});

describe('status payload', () => {
  it('stays under 1 KiB JSON even with every reading and the largest counters', () => {
    const sampler = new Sampler({
      files: new SystemFiles(join(FIXTURES, 'raspberry-pi-3-armv7')),
      disks: [{ name: 'state', path: '/a' }, { name: 'k3s', path: '/b' }],
      diskSpace: () => ({ totalBytes: Number.MAX_SAFE_INTEGER, freeBytes: Number.MAX_SAFE_INTEGER - 1 }),
    });
    const status = buildStatus(Number.MAX_SAFE_INTEGER, sampler.sample(), busyProviders);
    // What the outbox adds on the wire: a message id, the drop counters and, from the backlog, `historical`.
    const wire = {
      ...status,
      outboxDrops: { status: 123_456_789, event: 123_456, result: 1_234, diskFull: 99 },
      messageId: '01JNB7Q6X1T4Z8Y4D2K9M3C5VW-ffffffff',
      historical: true,
    };
    const bytes = Buffer.byteLength(JSON.stringify(StatusSchema.parse(wire)));
    expect(bytes).toBeLessThanOrEqual(1024);
  });

  it('reports a provider that invents a state name as "unknown" instead of failing the sample', () => {
    const status = buildStatus(1, new Sampler({ files: new SystemFiles('/nonexistent'), disks: [], diskSpace: fixedDisk }).sample(), {
      ...DEFAULT_PROVIDERS,
      k3sState: () => ({ state: 'Running Fine!', healthy: true }),
    });
    expect(status.k3s).toEqual({ state: 'unknown', healthy: true });
  });
});

describe('inventory', () => {
  it('describes a Raspberry Pi from its device tree and cpuinfo, even when systeminformation gives nothing', () => {
    const machine = machineFacts(new SystemFiles(join(FIXTURES, 'raspberry-pi-3-armv7')), {}, new Date('2026-03-01T00:00:00Z'));
    const inventory = buildInventory(
      machine,
      { deviceId: 'pi-3', labels: { site: 'lab' }, groups: ['canary'], fleetletVersion: '0.1.0', nodeName: 'from-config' },
      busyProviders.k3sState(),
      { ...busyProviders.identityFingerprints(), leaked: 'not a fingerprint: -----BEGIN PRIVATE KEY-----' },
    );
    expect(inventory.hardware).toMatchObject({
      model: 'Raspberry Pi 3 Model B Rev 1.2',
      serial: '00000000a1b2c3d4',
      cpuModel: 'ARMv7 Processor rev 4 (v7l)',
      cpuCores: 4,
      memoryTotalBytes: 948280 * 1024,
    });
    expect(inventory.bootedAt).toBe(new Date(1772348500 * 1000).toISOString());
    expect(inventory.nodeName).toBe('pi-3');
    expect(inventory.k3sVersion).toBe('v1.36.3+k3s1');
    expect(Object.keys(inventory.identity)).toEqual(['nodePassword', 'deviceKey']);
    expect(JSON.stringify(inventory)).not.toContain('PRIVATE');
  });

  it('prefers the firmware words over systeminformation, and uses systeminformation for the rest', () => {
    const machine = machineFacts(
      new SystemFiles(join(FIXTURES, 'linux-amd64')),
      { model: 'QEMU Standard PC', serial: 'SN-1', distro: 'Debian GNU/Linux', release: '12', kernel: '6.1.0', cpuModel: 'Intel Xeon', cpuCores: 2 },
      new Date(),
    );
    expect(machine.hardware).toMatchObject({ model: 'QEMU Standard PC', serial: 'SN-1', cpuModel: 'Intel Xeon', cpuCores: 2 });
    expect(machine.os).toMatchObject({ distro: 'Debian GNU/Linux', release: '12', kernel: '6.1.0' });
  });
});
