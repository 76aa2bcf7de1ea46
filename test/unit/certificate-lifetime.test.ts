import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkCsr } from '../../src/hub/enrolment/csr-check.js';
import { createFleetCa, loadFleetCa } from '../../src/hub/enrolment/fleet-ca.js';
import { csrPem, newDeviceKey } from '../helpers/enrolment.js';
import { tempDir } from '../helpers/paths.js';

/**
 * The validity window the fleet CA gives a device certificate. A device renews at a share of notBefore..notAfter,
 * so the backdating (for device clocks a little behind) must stay small against the lifetime.
 */
describe('device certificate lifetime', () => {
  const temp = tempDir('fleetlet-ca-lifetime-');
  afterAll(() => temp.cleanup());

  async function issue(lifetimeDays: number, now: Date) {
    const issuer = await loadFleetCa(await createFleetCa(join(temp.dir, `ca-${lifetimeDays}`), { commonName: 'lifetime CA', days: 2, now }));
    const checked = await checkCsr(await csrPem('pi-1', await newDeviceKey()), 'pi-1');
    if ('refused' in checked) throw new Error(checked.refused);
    return issuer.issue({ deviceId: 'pi-1', csr: checked.csr, lifetimeDays, now });
  }

  it('backdates a 30-day certificate by 5 minutes and ends it 30 days after its issue', async () => {
    const now = new Date('2026-11-30T09:00:00Z');
    const issued = await issue(30, now);
    expect(now.getTime() - issued.notBefore.getTime()).toBe(5 * 60_000);
    expect(issued.notAfter.getTime() - now.getTime()).toBe(30 * 86_400_000);
  });

  it('backdates a certificate of a fraction of a day by at most a tenth of its lifetime, so that its renewal point lies after its issue', async () => {
    const now = new Date('2026-11-30T09:00:00Z');
    const lifetimeMs = 0.00025 * 86_400_000;
    const issued = await issue(0.00025, now);
    expect(issued.notAfter.getTime() - now.getTime()).toBe(lifetimeMs);
    expect(now.getTime() - issued.notBefore.getTime()).toBeLessThanOrEqual(lifetimeMs / 10);
    const renewAt = issued.notBefore.getTime() + ((issued.notAfter.getTime() - issued.notBefore.getTime()) * 2) / 3;
    expect(renewAt).toBeGreaterThan(now.getTime());
  });
});
