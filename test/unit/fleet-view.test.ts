import { describe, expect, it } from 'vitest';
import { applyMessage, type DeviceView } from '../../src/fleet/fleet-view.js';
import { STATUS_EXAMPLE } from '../../src/protocol/status.js';
import { RESULT_EXAMPLE } from '../../src/protocol/result.js';

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('the fleet view folds messages in', () => {
  it('takes HEALTH from the newest status: an older sample from a backlog arriving later does not count', () => {
    const devices = new Map<string, DeviceView>();
    applyMessage(devices, 'pi-1', 'status', json({ ...STATUS_EXAMPLE, sampledAt: '2026-03-01T09:00:00.000Z', k3s: { state: 'crashloop', healthy: false } }));
    applyMessage(devices, 'pi-1', 'status', json({ ...STATUS_EXAMPLE, sampledAt: '2026-03-01T08:00:00.000Z', historical: true }));
    expect(devices.get('pi-1')).toMatchObject({ k3sHealthy: false, k3sState: 'crashloop', lastSeen: '2026-03-01T09:00:00.000Z' });
  });

  it('counts a command result as the device being seen', () => {
    const devices = new Map<string, DeviceView>();
    applyMessage(devices, 'pi-1', 'status', json({ ...STATUS_EXAMPLE, sampledAt: '2026-03-01T08:00:00.000Z' }));
    applyMessage(devices, 'pi-1', 'results', json({ ...RESULT_EXAMPLE, deviceId: 'pi-1', at: Date.parse('2026-03-01T10:00:00.000Z') }));
    expect(devices.get('pi-1')?.lastSeen).toBe('2026-03-01T10:00:00.000Z');
  });
});
