import { describe, expect, it } from 'vitest';
import { INVENTORY_EXAMPLE } from '../../src/protocol/inventory.js';
import { STATUS_EXAMPLE, type Status } from '../../src/protocol/status.js';
import { renderStatus } from '../../src/cli/status.js';

const NOW = new Date('2026-03-01T08:16:00.004Z');

describe('fleetlet status output', () => {
  it('summarises a healthy device in one line per subject', () => {
    const text = renderStatus({ source: 'agent', pid: 4242, status: STATUS_EXAMPLE, inventory: INVENTORY_EXAMPLE }, NOW);
    expect(text.split('\n')[0]).toBe('fleetlet: agent running (pid 4242)');
    expect(text).toContain(`pi-kitchen-01  "Kitchen display"  groups canary  labels site=home fleetlet.io/tier=edge\n`);
    expect(text).toMatch(/Hardware\s+Raspberry Pi 4 Model B Rev 1\.4, arm64, 4 cores, 3\.7 GiB RAM, serial 10000000a1b2c3d4\n/);
    expect(text).toMatch(/k3s\s+running, healthy, v1\.36\.3\+k3s1\n/);
    expect(text).toMatch(/Link\s+connected since 1 h 13 min ago\n/);
    expect(text).toMatch(/CPU\s+7\.4 %, load 0\.31 0\.42 0\.40, 1500 MHz, 51\.6 °C\n/);
    expect(text).toMatch(/Disk k3s\s+22\.4 GiB free of 29\.0 GiB \(77 %\)\n/);
    expect(text).toMatch(/Power\s+ok now; since boot: under-voltage, throttled\n/);
    expect(text).toMatch(/Sample\s+#2881, 30 s ago\n/);
    expect(text).not.toContain('!');
  });

  it('marks every problem with "!", and says when the view comes from the database', () => {
    const troubled: Status = {
      ...STATUS_EXAMPLE,
      temperatureC: 83.2,
      disks: [{ name: 'state', totalBytes: 100 * 1024 ** 3, freeBytes: 5 * 1024 ** 3 }],
      throttle: { bits: 0x50005, now: ['under-voltage', 'throttled'], occurred: ['under-voltage', 'throttled'] },
      k3s: { state: 'crash-loop', healthy: false },
      link: { connected: false, since: '2026-03-01T06:16:00.004Z' },
      outbox: { depth: { status: 240, event: 3, result: 0 }, dropped: { status: 12, event: 0, result: 0 } },
    };
    const text = renderStatus({ source: 'database', status: troubled, savedAt: NOW.getTime() - 3_600_000 }, NOW);
    expect(text.split('\n')[0]).toBe('fleetlet: agent not answering; last snapshot from the state database, 1 h 0 min ago');
    for (const line of ['k3s', 'Link', 'CPU', 'Disk state', 'Power', 'Outbox']) {
      expect(text, line).toMatch(new RegExp(`\\n  ${line}\\s+[^\\n]* !\\n`));
    }
    expect(text).toContain('240 status, 3 events, 0 results waiting; 12 dropped !');
    // No inventory in the snapshot: the lines that need it are left out, not invented.
    expect(text).not.toContain('Hardware');
  });
});
