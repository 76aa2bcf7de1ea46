import { z } from 'zod';
import { SealPublicKeySchema } from './sealed-secret.js';
import { SCHEMA_VERSION } from './topics.js';

/**
 * `{root}/devices/{id}/inventory`, retained, published by the link on every connect and whenever it changes:
 * what the device is. Identity appears only as fingerprints (e.g. "sha256:..."), never as key material.
 */
const shortText = z.string().max(128);
const LABEL_LIMIT = 64;

export const InventorySchema = z.object({
  schemaVersion: z.literal(SCHEMA_VERSION),
  deviceId: z.string().min(1).max(63),
  name: shortText.optional(),
  collectedAt: z.iso.datetime(),
  hardware: z.object({
    /** e.g. "Raspberry Pi 4 Model B Rev 1.4" from the device tree, or the DMI product name. */
    model: shortText,
    serial: shortText.optional(),
    arch: z.string().max(32),
    cpuModel: shortText,
    cpuCores: z.int().min(1).max(4096),
    memoryTotalBytes: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
  }),
  os: z.object({ distro: shortText, release: shortText.optional(), kernel: shortText, hostname: shortText.optional() }),
  bootedAt: z.iso.datetime(),
  fleetletVersion: z.string().min(1).max(64),
  k3sVersion: z.string().max(64).optional(),
  nodeName: z.string().max(253).optional(),
  labels: z.record(z.string().max(317), z.string().max(63)).refine((l) => Object.keys(l).length <= LABEL_LIMIT, {
    error: `at most ${LABEL_LIMIT} labels`,
  }),
  groups: z.array(z.string().max(63)).max(32),
  /** Fingerprints of the device's identities, by name (e.g. nodePassword, clientCertificate). */
  identity: z
    .record(z.string().max(64), z.string().max(128).regex(/^[a-z0-9]+:[A-Za-z0-9+/=_-]+$/))
    .refine((i) => Object.keys(i).length <= 8, { error: 'at most 8 identity fingerprints' }),
  /** The device's X25519 public key (raw 32 bytes, base64): operators seal secret command arguments to it. */
  sealKey: SealPublicKeySchema.optional(),
  /** When the client certificate the device connects with expires: the hub alerts on those near expiry. */
  clientCertificateNotAfter: z.iso.datetime().optional(),
});

export type Inventory = z.infer<typeof InventorySchema>;

export const INVENTORY_EXAMPLE: Inventory = {
  schemaVersion: SCHEMA_VERSION,
  deviceId: 'pi-kitchen-01',
  name: 'Kitchen display',
  collectedAt: '2026-03-01T07:02:12.310Z',
  hardware: {
    model: 'Raspberry Pi 4 Model B Rev 1.4',
    serial: '10000000a1b2c3d4',
    arch: 'arm64',
    cpuModel: 'Cortex-A72',
    cpuCores: 4,
    memoryTotalBytes: 3_981_438_976,
  },
  os: { distro: 'Debian GNU/Linux', release: '12', kernel: '6.6.51+rpt-rpi-v8', hostname: 'pi-kitchen-01' },
  bootedAt: '2026-02-28T07:01:40.000Z',
  fleetletVersion: '0.1.0',
  k3sVersion: 'v1.36.3+k3s1',
  nodeName: 'pi-kitchen-01',
  labels: { site: 'home', 'fleetlet.io/tier': 'edge' },
  groups: ['canary'],
  identity: { nodePassword: 'sha256:9f2c4e0d7b1a', deviceKey: 'sha256:3e5d01aa77c2' },
  sealKey: 'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=',
};
