import { existsSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { stringify } from 'yaml';
import { EnrolmentSection } from '../config/enrolment-schema.js';
import { UsageError } from '../lib/errors.js';
import type { PlannedFile } from './provision-plan.js';

/** Where the image keeps the fleet's bootstrap token (0600), and the drop-in that turns enrolment on. */
export const ENROL_TOKEN_PATH = '/etc/fleetlet/enrol-token';
export const ENROLMENT_DROP_IN_PATH = '/etc/fleetlet/config.d/50-enrolment.yaml';
const TRUST_DIR = '/etc/fleetlet/trust';
const MAX_TOKEN_BYTES = 4096;

export interface EnrolmentInputs {
  /** The hub that issues device certificates (https://). */
  hub: string;
  /** The fleet's bootstrap token; copied, never printed. */
  tokenFile: string;
  /** The fleet CA: it signs the device certificates and the hub's. */
  caFile: string;
}

/**
 * The bootstrap credential and the trust anchor a golden image needs to enrol at first boot, never a device
 * certificate: every device makes its own key and gets its own certificate. Written as a config drop-in, so the
 * image's own config.yaml stays as its author wrote it.
 */
export function planEnrolment(inputs: EnrolmentInputs): { files: PlannedFile[]; trustAnchor: string } {
  const caPath = join(TRUST_DIR, basename(inputs.caFile));
  const section = EnrolmentSection.safeParse({ hubUrl: inputs.hub, bootstrapTokenFile: ENROL_TOKEN_PATH, caFile: caPath });
  if (!section.success) throw new UsageError(`--hub ${inputs.hub}: ${section.error.issues[0]?.message ?? 'not a hub URL'}`);
  requireFile('--enrol-token-file', inputs.tokenFile, MAX_TOKEN_BYTES);
  requireFile('--ca-file', inputs.caFile, 1024 * 1024);
  const dropIn = `# Written by fleetlet provision: enrol at first boot with the hub.\n${stringify({ enrolment: { hubUrl: inputs.hub, bootstrapTokenFile: ENROL_TOKEN_PATH, caFile: caPath } })}`;
  return {
    files: [
      { path: ENROL_TOKEN_PATH, mode: 0o600, source: { file: inputs.tokenFile }, secret: true },
      { path: ENROLMENT_DROP_IN_PATH, mode: 0o640, source: { text: dropIn }, secret: false },
    ],
    trustAnchor: inputs.caFile,
  };
}

/** Enrolment needs all three flags or none. */
export function enrolmentInputs(options: { hub?: string; enrolTokenFile?: string; caFile?: string }): EnrolmentInputs | undefined {
  const { hub, enrolTokenFile, caFile } = options;
  if (hub === undefined && enrolTokenFile === undefined) return undefined;
  if (!hub) throw new UsageError('--enrol-token-file needs --hub URL (the hub that issues device certificates)');
  if (!enrolTokenFile) throw new UsageError('--hub needs --enrol-token-file FILE (the fleet\'s bootstrap token)');
  if (!caFile) throw new UsageError('--hub needs --ca-file FILE (the fleet CA that signs the hub and the device certificates)');
  return { hub, tokenFile: enrolTokenFile, caFile };
}

function requireFile(flag: string, file: string, maxBytes: number): void {
  if (!existsSync(file) || !statSync(file).isFile()) throw new UsageError(`${flag} ${file}: no such file`);
  if (statSync(file).size > maxBytes) throw new UsageError(`${flag} ${file}: larger than ${maxBytes} bytes`);
}
