import type { HubAlertsConfig } from '../../config/hub-alerts-schema.js';
import type { ExternalSource } from './engine.js';

/** An enrolled device's current certificate and its end, as the enrolment part lists them. */
export interface CertificateEnd {
  deviceId: string;
  serial: string;
  notAfterMs: number;
}

const DAY_MS = 86_400_000;

/**
 * 'certificate-expiring': one alert per device whose certificate ends within `withinDays` (critical once it has
 * ended: the broker refuses the device until it renews). Devices renew at two thirds of the life, so a certificate
 * this close to its end means renewal failed. The list comes from the enrolment part, handed in by the hub daemon.
 */
export function certificateExpirySource(
  config: HubAlertsConfig['certificateExpiring'],
  expiringWithin: (withinDays: number, nowMs: number) => Promise<CertificateEnd[]>,
): ExternalSource {
  return {
    rule: 'certificate-expiring',
    async findings(nowMs) {
      if (!config.enabled) return [];
      const ends = await expiringWithin(config.withinDays, nowMs);
      return ends.map(({ deviceId, serial, notAfterMs }) => {
        const expired = notAfterMs <= nowMs;
        const days = Math.abs(notAfterMs - nowMs) / DAY_MS;
        const span = days >= 1 ? `${Math.floor(days)} day(s)` : `${Math.max(1, Math.round(days * 24))} hour(s)`;
        return {
          rule: 'certificate-expiring' as const,
          subject: deviceId,
          deviceId,
          rolloutId: null,
          severity: expired ? ('critical' as const) : ('warning' as const),
          summary: expired ? `certificate expired ${span} ago` : `certificate expires in ${span}`,
          remedy: expired
            ? 'the broker refuses the device until it renews with its renewal credential when it is back online; if it cannot, re-enrol it with a new bootstrap token'
            : 'the device renews at two thirds of its certificate life: check that it reaches the hub over HTTPS (enrolment.hubUrl) and that it was not revoked',
          details: { serial, notAfter: new Date(notAfterMs).toISOString() },
        };
      });
    },
  };
}
