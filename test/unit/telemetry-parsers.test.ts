import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuPercent } from '../../src/telemetry/cpu-math.js';
import {
  isPhysicalInterface,
  parseBootTime,
  parseCpuTimes,
  parseCpuinfo,
  parseDeviceTreeString,
  parseKilohertzAsMegahertz,
  parseLoadAvg,
  parseMeminfo,
  parseMillidegrees,
  parseNetDev,
  parseThrottled,
  parseUptime,
} from '../../src/telemetry/proc-parsers.js';
import { fileSystemFacts, parseOsRelease } from '../../src/telemetry/system-facts.js';
import { SystemFiles } from '../../src/telemetry/system-files.js';
import { REPO_ROOT } from '../helpers/paths.js';

const fixture = (name: string) => new SystemFiles(join(REPO_ROOT, 'test/fixtures/proc', name));
const pi = fixture('raspberry-pi-3-armv7');
const amd64 = fixture('linux-amd64');
const broken = fixture('malformed');

describe('Raspberry Pi fixture (kernel formats)', () => {
  it('reads the device-tree model and serial without their trailing NUL', () => {
    expect(parseDeviceTreeString(pi.read('proc/device-tree/model'))).toBe('Raspberry Pi 3 Model B Rev 1.2');
    expect(parseDeviceTreeString(pi.read('proc/device-tree/serial-number'))).toBe('00000000a1b2c3d4');
  });

  it('reads the armv7 /proc/cpuinfo with its Serial, Hardware, Revision and Model lines', () => {
    expect(parseCpuinfo(pi.read('proc/cpuinfo'))).toEqual({
      processors: 4,
      model: 'ARMv7 Processor rev 4 (v7l)',
      hardware: 'BCM2835',
      revision: 'a02082',
      serial: '00000000a1b2c3d4',
      boardModel: 'Raspberry Pi 3 Model B Rev 1.2',
    });
  });

  it('reads thermal millidegrees, cpufreq kHz and the throttled bitmask', () => {
    expect(parseMillidegrees(pi.read('sys/class/thermal/thermal_zone0/temp'))).toBe(51.5);
    expect(parseKilohertzAsMegahertz(pi.read('sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq'))).toBe(1200);
    expect(parseThrottled(pi.read('sys/devices/platform/soc/soc:firmware/get_throttled'))).toEqual({
      bits: 0x50005,
      now: ['under-voltage', 'throttled'],
      occurred: ['under-voltage', 'throttled'],
    });
  });

  it('reads memory, load, uptime and boot time', () => {
    expect(parseMeminfo(pi.read('proc/meminfo'))).toEqual({
      totalBytes: 948280 * 1024,
      availableBytes: 701944 * 1024,
      swapTotalBytes: 102396 * 1024,
      swapFreeBytes: 102140 * 1024,
    });
    expect(parseLoadAvg(pi.read('proc/loadavg'))).toEqual([0.31, 0.42, 0.4]);
    expect(parseUptime(pi.read('proc/uptime'))).toBe(86412.5);
    expect(parseBootTime(pi.read('proc/stat'))).toBe(1772348500);
  });

  it('counts only physical interfaces: loopback, pod veths and the flannel overlay are left out', () => {
    expect(parseNetDev(pi.read('proc/net/dev'))).toEqual({ rxBytes: 1204338121 + 1000, txBytes: 88301442 + 500 });
    expect(['lo', 'veth1a2b3c', 'flannel.1', 'cni0', 'docker0'].filter(isPhysicalInterface)).toEqual([]);
    expect(['eth0', 'wlan0', 'enp3s0', 'end0'].every(isPhysicalInterface)).toBe(true);
  });

  it('computes the CPU share between two /proc/stat readings', () => {
    const before = parseCpuTimes(pi.read('proc/stat'));
    const after = parseCpuTimes(pi.read('stat.later'));
    // +200 user, +50 system, +200 idle, +50 iowait: 250 busy of 500 jiffies.
    expect(cpuPercent(before, after)).toBe(50);
  });
});

describe('this machine, captured by scripts/capture-proc-fixtures.sh', () => {
  it('parses every captured file', () => {
    const cpu = parseCpuinfo(amd64.read('proc/cpuinfo'));
    expect(cpu?.processors).toBeGreaterThan(0);
    expect(cpu?.model).toMatch(/\S/);
    const memory = parseMeminfo(amd64.read('proc/meminfo'))!;
    expect(memory.availableBytes).toBeLessThanOrEqual(memory.totalBytes);
    expect(memory.totalBytes).toBeGreaterThan(64 * 1024 * 1024);
    expect(parseLoadAvg(amd64.read('proc/loadavg'))).toHaveLength(3);
    expect(parseUptime(amd64.read('proc/uptime'))).toBeGreaterThan(0);
    // eth0 only: lo and the ifb devices are not physical interfaces.
    expect(parseNetDev(amd64.read('proc/net/dev'))).toEqual({ rxBytes: 434_340_372, txBytes: 870_995 });
    expect(parseBootTime(amd64.read('proc/stat'))).toBeGreaterThan(1_500_000_000);
  });

  it('gives a CPU share between 0 and 100 across the two captured readings', () => {
    const percent = cpuPercent(parseCpuTimes(amd64.read('proc/stat')), parseCpuTimes(amd64.read('stat.later')));
    expect(percent).toBeGreaterThanOrEqual(0);
    expect(percent).toBeLessThanOrEqual(100);
  });
});

describe('malformed, truncated and missing files', () => {
  it('yields undefined, never NaN or an exception', () => {
    expect(parseCpuTimes(broken.read('proc/stat'))).toBeUndefined();
    expect(parseLoadAvg(broken.read('proc/loadavg'))).toBeUndefined();
    expect(parseUptime(broken.read('proc/uptime'))).toBeUndefined();
    expect(parseMeminfo(broken.read('proc/meminfo'))).toBeUndefined();
    expect(parseNetDev(broken.read('proc/net/dev'))).toBeUndefined();
    expect(parseDeviceTreeString(broken.read('proc/device-tree/model'))).toBeUndefined();
    expect(parseMillidegrees(broken.read('sys/class/thermal/thermal_zone0/temp'))).toBeUndefined();
    // 999999 °C is a broken sensor, not a reading.
    expect(parseMillidegrees(broken.read('sys/class/thermal/thermal_zone1/temp'))).toBeUndefined();
    expect(parseThrottled(broken.read('sys/devices/platform/soc/soc:firmware/get_throttled'))).toBeUndefined();
    expect(parseCpuinfo(broken.read('proc/cpuinfo'))).toEqual({ processors: 1 });
    expect(broken.read('proc/does-not-exist')).toBeUndefined();
    expect(broken.list('sys/no/such/dir')).toEqual([]);
  });

  it('bounds what it reads from a file', () => {
    expect(pi.read('proc/cpuinfo', 16)).toHaveLength(16);
  });

  it('accepts the older kernel formats: no MemAvailable, /proc/stat without iowait', () => {
    const old = 'MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n';
    expect(parseMeminfo(old)?.availableBytes).toBe(400 * 1024);
    expect(parseCpuTimes('cpu  10 0 10 80\n')).toEqual({ busy: 20, total: 100 });
  });

  it('refuses CPU percentages from counters that went backwards or did not move', () => {
    const a = { busy: 100, total: 1000 };
    expect(cpuPercent(a, a)).toBeUndefined();
    expect(cpuPercent({ busy: 200, total: 2000 }, a)).toBeUndefined();
    expect(cpuPercent(a, { busy: 50, total: 1100 })).toBeUndefined();
    expect(cpuPercent(undefined, a)).toBeUndefined();
    expect(cpuPercent(a, { busy: 200, total: 1100 })).toBe(100);
  });

  it('accepts vcgencmd-style and 0x-prefixed throttled values', () => {
    expect(parseThrottled('throttled=0x0\n')).toEqual({ bits: 0, now: [], occurred: [] });
    expect(parseThrottled('0x80008')?.now).toEqual(['soft-temperature-limit']);
    expect(parseThrottled('123456789')).toBeUndefined();
  });
});

describe('system facts from DMI and os-release (what the inventory took from systeminformation)', () => {
  it('reads the board from DMI, leaves a placeholder serial out, and the distribution from /etc/os-release', async () => {
    expect(await fileSystemFacts(amd64)()).toEqual({
      model: 'LENOVO ThinkCentre M75q Gen 2',
      serial: undefined,
      distro: 'Ubuntu',
      release: '24.04.1 LTS (Noble Numbat)',
    });
  });

  it('takes /usr/lib/os-release when /etc has none, and leaves out what a board without DMI lacks', async () => {
    expect(await fileSystemFacts(fixture('raspberry-pi-5-arm64'))()).toEqual({
      model: undefined,
      serial: undefined,
      distro: 'Debian GNU/Linux',
      release: '12 (bookworm)',
    });
  });

  it('parses os-release quoting: double, single, bare and escaped values; ignores comments and junk', () => {
    const fields = parseOsRelease('# comment\nNAME="Foo \\"OS\\""\nVERSION=\'1 (one)\'\nID=foo\nnot a line\nlower=x\n');
    expect(Object.fromEntries(fields)).toEqual({ NAME: 'Foo "OS"', VERSION: '1 (one)', ID: 'foo' });
  });
});
