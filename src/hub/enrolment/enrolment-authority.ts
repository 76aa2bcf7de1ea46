import type { HubEnrolmentConfig } from '../../config/hub-enrolment-schema.js';
import type { EnrolRequest, EnrolResponse } from '../../protocol/enrolment.js';
import type { HubDatabase } from '../db/open.js';
import { secretHash } from '../auth/secrets.js';
import { audit } from '../auth/sessions.js';
import { checkAttempts, countRefusal, type AttemptPolicy } from './attempt-limit.js';
import { findBootstrapToken } from './bootstrap-tokens.js';
import type { CertificateIssuer } from './certificate-issuer.js';
import { checkCsr, type CheckedCsr } from './csr-check.js';
import { issueAndRecord, type Issued } from './issue.js';
import { writeRevocationList } from './revocation.js';

/** What the enrol routes answer: 200 issued, 202 pending, 403 refused (the body says why). */
export interface EnrolOutcome {
  httpStatus: 200 | 202 | 403;
  body: EnrolResponse;
}

export interface EnrolmentAuthorityOptions {
  hub: HubDatabase;
  issuer: CertificateIssuer;
  config: HubEnrolmentConfig;
  /** Ends a revoked device's open broker connection (RevokedConnectionCloser); without it, it lasts until it drops. */
  closeConnection?: (deviceId: string) => void;
}

/**
 * The hub as the fleet's enrolment authority. A bootstrap token enrols a device id once, bound to the key in its
 * CSR: the same id with another key is refused (a forged CSR for an enrolled device) until an operator revokes and
 * releases that device. The renewal credential issued with each certificate renews only its own device, also
 * after the certificate expired, and is replaced on each renewal.
 */
export class EnrolmentAuthority {
  private readonly policy: AttemptPolicy;

  constructor(private readonly options: EnrolmentAuthorityOptions) {
    this.policy = { maxFailures: options.config.maxFailures, windowSeconds: options.config.windowSeconds };
  }

  get issuer(): CertificateIssuer {
    return this.options.issuer;
  }

  /** After a revocation: the CRL for the broker's next handshakes, and the end of the connection open now. */
  async revoked(deviceId: string, now: number): Promise<number> {
    const entries = await this.writeRevocationList(now);
    this.options.closeConnection?.(deviceId);
    return entries;
  }

  /** Writes the CRL the broker reads (hub.enrolment.crlPath); returns how many certificates it lists. */
  async writeRevocationList(now: number): Promise<number> {
    const { hub, issuer, config } = this.options;
    return writeRevocationList(hub, issuer, config.crlPath, config.crlDays, now);
  }

  async enrol(secret: string, request: EnrolRequest, remoteAddr: string, now: number): Promise<EnrolOutcome> {
    const { hub } = this.options;
    const tokenKey = secretHash(secret).slice(0, 32);
    await checkAttempts(hub, remoteAddr, tokenKey, this.policy, now);
    const refuse = (reason: string) => this.refuse(reason, remoteAddr, tokenKey, request.deviceId, now);
    const token = await findBootstrapToken(hub, secret, now);
    if ('refused' in token) return refuse(token.refused);
    const checked = await checkCsr(request.csrPem, request.deviceId);
    if ('refused' in checked) return refuse(checked.refused);
    const bound = await this.keyBinding(request.deviceId, checked);
    if (bound) return refuse(bound);

    const previous = await hub.db
      .selectFrom('enrolment_requests')
      .select(['id', 'status'])
      .where('device_id', '=', request.deviceId)
      .where('public_key_sha256', '=', checked.publicKeySha256)
      .where('status', 'in', ['pending', 'approved', 'denied'])
      .orderBy('id', 'desc')
      .executeTakeFirst();
    if (previous?.status === 'denied') return refuse(`an operator denied the enrolment of ${request.deviceId} with this key`);
    if (previous?.status === 'pending') return this.pending(request.deviceId);
    if (previous?.status === 'approved') return this.issue(request.deviceId, checked, Number(previous.id), 'enrol', remoteAddr, now);

    // A new enrolment: it takes one use of the token, whether it is issued now or waits for an operator.
    const taken = await hub.db
      .updateTable('enrol_tokens')
      .set((eb) => ({ uses: eb('uses', '+', 1) }))
      .where('id', '=', token.id)
      .whereRef('uses', '<', 'max_uses')
      .executeTakeFirst();
    if (Number(taken.numUpdatedRows) === 0) return refuse(`the bootstrap token "${token.name}" has no uses left`);
    const inserted = await hub.db
      .insertInto('enrolment_requests')
      .values({
        device_id: request.deviceId,
        token_id: token.id,
        public_key_sha256: checked.publicKeySha256,
        fingerprint: request.fingerprint ?? null,
        remote_addr: remoteAddr,
        status: token.autoApprove ? 'approved' : 'pending',
        created_at_ms: now,
        decided_at_ms: token.autoApprove ? now : null,
        decided_by: token.autoApprove ? `token:${token.name}` : null,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    if (!token.autoApprove) {
      await audit(hub, { actor: `device:${request.deviceId}`, action: 'enrolment.pending', target: request.deviceId, remoteAddr, detail: { token: token.name } }, now);
      return this.pending(request.deviceId);
    }
    return this.issue(request.deviceId, checked, Number(inserted.id), 'enrol', remoteAddr, now);
  }

  async renew(secret: string, request: EnrolRequest, remoteAddr: string, now: number): Promise<EnrolOutcome> {
    const { hub } = this.options;
    const tokenKey = `renew:${secretHash(secret).slice(0, 26)}`;
    await checkAttempts(hub, remoteAddr, tokenKey, this.policy, now);
    const refuse = (reason: string) => this.refuse(reason, remoteAddr, tokenKey, request.deviceId, now);
    const device = await hub.db
      .selectFrom('enrolled_devices')
      .select(['device_id', 'state'])
      .where('renewal_hash', '=', secretHash(secret))
      .executeTakeFirst();
    if (!device) return refuse('the renewal credential is not known (each renewal replaces it; a revoked device has none)');
    if (device.state !== 'active') return refuse(`${device.device_id} was revoked`);
    if (device.device_id !== request.deviceId) return refuse(`this renewal credential belongs to ${device.device_id}, not ${request.deviceId}`);
    const checked = await checkCsr(request.csrPem, request.deviceId);
    if ('refused' in checked) return refuse(checked.refused);
    return this.issue(request.deviceId, checked, undefined, 'renew', remoteAddr, now);
  }

  /** Why this key may not take this device id, or undefined when it may. */
  private async keyBinding(deviceId: string, checked: CheckedCsr): Promise<string | undefined> {
    const enrolled = await this.options.hub.db
      .selectFrom('enrolled_devices')
      .select(['state', 'public_key_sha256'])
      .where('device_id', '=', deviceId)
      .executeTakeFirst();
    if (!enrolled || enrolled.state === 'released') return undefined;
    if (enrolled.state === 'revoked') return `${deviceId} was revoked; an operator must release it (fleetlet hub device release) before it can enrol again`;
    if (enrolled.public_key_sha256 !== checked.publicKeySha256) {
      return `${deviceId} is enrolled with another key; renew with its renewal credential, or an operator revokes and releases it`;
    }
    return undefined;
  }

  private async issue(deviceId: string, checked: CheckedCsr, requestId: number | undefined, how: 'enrol' | 'renew', remoteAddr: string, now: number): Promise<EnrolOutcome> {
    const { hub, issuer, config } = this.options;
    let body: Issued | { refused: string };
    try {
      body = await hub.db.transaction().execute(async (tx) => {
        const issued = await issueAndRecord(tx, issuer, { deviceId, checked, lifetimeDays: config.certificateDays, mayChangeKey: how === 'renew' }, now);
        if (requestId !== undefined && !('refused' in issued)) {
          await tx.updateTable('enrolment_requests').set({ status: 'issued' }).where('id', '=', requestId).execute();
        }
        return issued;
      });
    } catch (err) {
      // Another enrolment of this id committed its key first (its insert won the primary key): refuse, as it would now.
      const bound = await this.keyBinding(deviceId, checked);
      if (!bound) throw err;
      body = { refused: bound };
    }
    if ('refused' in body) return this.refuse(body.refused, remoteAddr, `issue:${deviceId}`, deviceId, now);
    await audit(hub, { actor: `device:${deviceId}`, action: `device.${how}`, target: deviceId, remoteAddr, detail: { notAfter: body.notAfter } }, now);
    return { httpStatus: 200, body };
  }

  private pending(deviceId: string): EnrolOutcome {
    return { httpStatus: 202, body: { status: 'pending', deviceId, retryAfterSeconds: this.options.config.pendingRetrySeconds } };
  }

  private async refuse(reason: string, remoteAddr: string, tokenKey: string, deviceId: string, now: number): Promise<EnrolOutcome> {
    const { hub } = this.options;
    await countRefusal(hub, remoteAddr, tokenKey, this.policy, now);
    await audit(hub, { actor: `device:${deviceId}`, action: 'enrolment.refused', target: deviceId, remoteAddr, detail: { reason } }, now);
    return { httpStatus: 403, body: { status: 'refused', reason: reason.slice(0, 500) } };
  }
}
