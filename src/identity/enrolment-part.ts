import { readFile, stat } from 'node:fs/promises';
import type { EnrolmentConfig } from '../config/enrolment-schema.js';
import { enrolmentFiles } from '../config/enrolment-schema.js';
import { fullJitterDelay } from '../lib/backoff.js';
import { ConfigError, errorMessage } from '../lib/errors.js';
import { hasControlCharacter } from '../lib/control-characters.js';
import type { Logger } from '../lib/logger.js';
import type { EnrolResponse } from '../protocol/enrolment.js';
import type { EventKind } from '../protocol/event.js';
import { inspectCertificate, verifyDeviceCertificate, type CertificateFacts } from './certificate-check.js';
import type { ClientCredentials, ClientCredentialSource } from './client-credentials.js';
import { FileKeyStore, type DeviceKeyStore } from './device-key-store.js';
import { EnrolClient, type EnrolKind } from './enrol-client.js';
import { EnrolledFiles } from './enrolled-files.js';
import { CertificateRejectedError } from './errors.js';

/** The event kinds enrolment emits (its sink takes only these). */
export const ENROLMENT_EVENT_KINDS = ['enrolment.refused', 'enrolment.certificate-refused'] as const satisfies readonly EventKind[];

/** What the part reports to the fleet (through the agent's event sink, like the k3s supervisor). */
export interface EnrolmentEvent {
  kind: (typeof ENROLMENT_EVENT_KINDS)[number];
  at: number;
  reason?: string;
  detail?: Record<string, unknown>;
}

export interface EnrolmentDeps {
  stateDir: string;
  deviceId: string;
  /** broker.tls.caFile, the fleet CA when enrolment.caFile is unset. */
  brokerCaFile?: string | undefined;
  /** Set by hand, they conflict with the enrolled certificate. */
  brokerCertFile?: string | undefined;
  brokerKeyFile?: string | undefined;
  /** The machine fingerprint, so that the hub can show a cloned image. */
  fingerprint?: string | undefined;
  sink: { emit(event: EnrolmentEvent): void };
  logger: Logger;
  keys?: DeviceKeyStore;
  now?: () => Date;
  random?: () => number;
}

interface Generation extends ClientCredentials {
  slot: string;
  facts: CertificateFacts;
}

const MAX_TOKEN_BYTES = 4096;
const HUB_RETRY = { baseMs: 5_000, capMs: 600_000 };
/** Polls of a pending enrolment slow down (doubling from the hub's delay) to this, so days of waiting cost little. */
const PENDING_CAP_MS = 900_000;
/** setTimeout takes at most 2^31-1 ms; a renewal weeks away is re-checked now and then instead. */
const MAX_TIMER_MS = 6 * 3600_000;

/**
 * Zero-touch enrolment and the certificate's renewal. At first boot (no valid certificate) the device makes its key,
 * sends a CSR with CN=<device id> and the bootstrap token, and waits for the hub's answer: issued (verified, then
 * used), pending (asked again after the hub's delay, then less often) or refused (an event, then asked again slowly). At `renewAt` of
 * the lifetime it makes a NEW key and renews with the renewal credential: a fresh key limits what a key copied from
 * the card can do to one lifetime, and the old one stays on disk until the link connected with the new certificate.
 * A device whose certificate expired while offline renews with the same credential. Never blocks the agent: the
 * link waits for `current()`; reports queue in the outbox meanwhile.
 */
export class EnrolmentPart implements ClientCredentialSource {
  readonly name = 'enrolment';
  readonly #config: EnrolmentConfig;
  readonly #deps: EnrolmentDeps;
  readonly #keys: DeviceKeyStore;
  readonly #files: EnrolledFiles;
  readonly #caFile: string;
  readonly #log: Logger;
  readonly #listeners = new Set<() => void>();
  #active: Generation | undefined;
  /** A renewed generation not yet proven by a connection. */
  #candidate: Generation | undefined;
  /** The key waiting for the hub's approval; the same CSR is sent again. */
  #pendingSlot: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  #pendingPolls = 0;
  #stopped = true;
  #running: Promise<void> = Promise.resolve();
  /** Ends a request in flight when the agent stops: a slow hub must not hold the shutdown. */
  #abort = new AbortController();

  constructor(config: EnrolmentConfig, deps: EnrolmentDeps) {
    const caFile = config.caFile ?? deps.brokerCaFile;
    if (!config.hubUrl || !caFile) {
      throw new ConfigError([{ path: 'enrolment.caFile', source: 'config', message: 'enrolment needs the fleet CA: set enrolment.caFile or broker.tls.caFile' }]);
    }
    if (deps.brokerCertFile || deps.brokerKeyFile) {
      // Two certificates would compete: the link connects with the enrolled one.
      throw new ConfigError([
        { path: deps.brokerCertFile ? 'broker.tls.certFile' : 'broker.tls.keyFile', source: 'config', message: 'with enrolment.hubUrl the device makes its own key and certificate: leave broker.tls.certFile and keyFile unset' },
      ]);
    }
    this.#config = config;
    this.#deps = deps;
    this.#caFile = caFile;
    this.#keys = deps.keys ?? new FileKeyStore();
    this.#files = new EnrolledFiles(enrolmentFiles(deps.stateDir, config).dir);
    this.#log = deps.logger.child({ part: 'enrolment' });
  }

  current(): ClientCredentials | undefined {
    return this.#candidate ?? this.#active;
  }

  /** The expiry of the certificate the link connects with, for the inventory (published at every connect). */
  notAfter(): Date | undefined {
    return this.current()?.notAfter;
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  connected(id: string): void {
    this.#withCandidate(id, async (candidate) => {
      await this.#files.promote(candidate.slot);
      const old = this.#active;
      this.#active = candidate;
      this.#candidate = undefined;
      if (old && old.slot !== candidate.slot) await this.#files.removeSlot(old.slot);
      this.#log.info({ notAfter: candidate.notAfter.toISOString(), fingerprint: candidate.facts.fingerprint }, 'the renewed certificate connected; it replaces the old one');
      this.#schedule(this.#renewalDelay(candidate));
    });
  }

  refused(id: string, reason: string): void {
    this.#withCandidate(id, async (candidate) => {
      this.#candidate = undefined;
      await this.#files.removeSlot(candidate.slot);
      this.#log.error({ reason }, 'the broker refused the renewed certificate; back to the previous one');
      this.#notify();
      this.#failures += 1;
      this.#schedule(this.#retryDelay());
    });
  }

  /** Runs `work` on the unproven generation `id`, unless it was settled meanwhile (the link reports every attempt). */
  #withCandidate(id: string, work: (candidate: Generation) => Promise<void>): void {
    const candidate = this.#candidate;
    if (candidate?.id !== id) return;
    this.#serially(async () => {
      if (this.#candidate === candidate) await work(candidate);
    });
  }

  start(): void {
    this.#stopped = false;
    this.#abort = new AbortController();
    this.#serially(async () => {
      await this.#loadActive();
      await this.#cycle();
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#abort.abort();
    await this.#running;
  }

  /** One thing at a time: a renewal, a promotion and a rollback never interleave. */
  #serially(work: () => Promise<void>): void {
    this.#running = this.#running.then(work).catch((err: unknown) => {
      this.#log.error({ error: errorMessage(err) }, 'enrolment step failed');
      this.#failures += 1;
      this.#schedule(this.#retryDelay());
    });
  }

  async #loadActive(): Promise<void> {
    const stray = await this.#files.removeOtherSlots();
    if (stray.length > 0) this.#log.info({ removed: stray }, 'removed certificate generations never proven by a connection');
    const slot = await this.#files.currentSlot();
    const pem = slot ? await this.#files.readCertificate(slot) : undefined;
    if (!slot || !pem || !(await this.#keys.has(slot))) return;
    const { facts, problems } = inspectCertificate(pem, { ...(await this.#expectations(slot)) });
    const fatal = problems.filter((p) => p.kind !== 'expired' && p.kind !== 'not-yet-valid');
    if (fatal.length > 0) {
      this.#log.error({ problems: fatal.map((p) => p.message) }, 'the enrolled certificate fails its checks; enrolling again');
      return;
    }
    // An expired one is still kept: it tells that this device was enrolled (renew, not enrol) until the next one.
    this.#active = { id: slot, slot, cert: Buffer.from(pem), key: await this.#keys.tlsKey(slot), notAfter: facts.notAfter, facts };
    this.#notify();
  }

  async #cycle(): Promise<void> {
    if (this.#stopped) return;
    const active = this.#active;
    if (active && !this.#candidate) {
      const delay = this.#renewalDelay(active);
      if (delay > 0) return this.#schedule(delay);
    }
    if (this.#candidate) return;
    const credential = await this.#files.readCredential();
    let kind: EnrolKind = active && credential ? 'renew' : 'enrol';
    let response = await this.#ask(kind, kind === 'renew' ? credential : await this.#bootstrapToken());
    if (response?.status === 'refused' && kind === 'renew' && (await this.#bootstrapToken())) {
      this.#log.warn({ reason: response.reason }, 'the hub refused the renewal credential; enrolling with the bootstrap token');
      kind = 'enrol';
      response = await this.#ask(kind, await this.#bootstrapToken());
    }
    if (!response) return;
    if (response.status !== 'pending') this.#pendingPolls = 0;
    if (response.status === 'pending') {
      this.#log.info({ retryAfterSeconds: response.retryAfterSeconds }, 'enrolment waits for approval in the hub');
      this.#failures = 0;
      const hubDelay = response.retryAfterSeconds * 1000;
      const delay = Math.max(hubDelay, Math.min(hubDelay * 2 ** this.#pendingPolls, PENDING_CAP_MS));
      this.#pendingPolls += 1;
      return this.#schedule(delay);
    }
    if (response.status === 'refused') {
      this.#log.error({ reason: response.reason, retryInSeconds: this.#config.refusedRetrySeconds }, `the hub refused ${kind === 'renew' ? 'the renewal' : 'enrolment'}`);
      this.#deps.sink.emit({ kind: 'enrolment.refused', at: Date.now(), reason: response.reason, detail: { request: kind } });
      return this.#schedule(this.#config.refusedRetrySeconds * 1000);
    }
    await this.#accept(response);
  }

  /** Sends the CSR of the pending key (or a new one); undefined when nothing can be asked now (already scheduled). */
  async #ask(kind: EnrolKind, credential: string | undefined): Promise<EnrolResponse | undefined> {
    if (!credential) {
      this.#log.error({ file: this.#config.bootstrapTokenFile }, 'no certificate and no bootstrap token: cannot enrol (give one in enrolment.bootstrapTokenFile)');
      this.#schedule(this.#config.refusedRetrySeconds * 1000);
      return undefined;
    }
    if (!this.#pendingSlot) {
      this.#pendingSlot = await this.#files.newSlot();
      await this.#keys.generate(this.#pendingSlot);
    }
    const csrPem = await this.#keys.signCsr(this.#pendingSlot, this.#deps.deviceId);
    const client = new EnrolClient({ hubUrl: this.#config.hubUrl!, hubCaPem: await readFile(this.#config.hubCaFile ?? this.#caFile, 'utf8') });
    try {
      const response = await client.send(kind, credential, {
        deviceId: this.#deps.deviceId,
        csrPem,
        ...(this.#deps.fingerprint ? { fingerprint: this.#deps.fingerprint } : {}),
      }, this.#abort.signal);
      this.#failures = response.status === 'refused' ? this.#failures : 0;
      return response;
    } catch (err) {
      this.#failures += 1;
      const delay = this.#retryDelay();
      this.#log.warn({ error: errorMessage(err), retryInMs: delay }, `${kind} failed; trying again later`);
      this.#schedule(delay);
      return undefined;
    }
  }

  async #accept(response: Extract<EnrolResponse, { status: 'issued' }>): Promise<void> {
    const slot = this.#pendingSlot!;
    let facts: CertificateFacts;
    try {
      facts = verifyDeviceCertificate(response.certificatePem, { ...(await this.#expectations(slot)), intermediatesPem: response.caPem });
    } catch (err) {
      if (!(err instanceof CertificateRejectedError)) throw err;
      // A new key for the next try: nothing issued for this one is used.
      this.#pendingSlot = undefined;
      await this.#files.removeSlot(slot);
      this.#failures += 1;
      this.#log.error({ reason: err.message }, 'the hub issued a certificate this device refuses; keeping the one it has');
      this.#deps.sink.emit({ kind: 'enrolment.certificate-refused', at: Date.now(), reason: err.message });
      return this.#schedule(this.#retryDelay());
    }
    await this.#files.writeCertificate(slot, response.certificatePem);
    await this.#files.writeCredential(response.renewalCredential);
    this.#pendingSlot = undefined;
    const generation: Generation = { id: slot, slot, cert: Buffer.from(response.certificatePem), key: await this.#keys.tlsKey(slot), notAfter: facts.notAfter, facts };
    const active = this.#active;
    const activeUsable = active && active.notAfter.getTime() > this.#now().getTime();
    this.#log.info({ notAfter: facts.notAfter.toISOString(), fingerprint: facts.fingerprint }, activeUsable ? 'certificate renewed; switching once it connects' : 'certificate issued');
    if (activeUsable) {
      this.#candidate = generation;
    } else {
      // Nothing usable to fall back to: this one is in use at once.
      await this.#files.promote(slot);
      this.#active = generation;
      if (active) await this.#files.removeSlot(active.slot);
    }
    this.#notify();
    this.#schedule(this.#renewalDelay(generation));
  }

  async #expectations(slot: string) {
    return { caPem: await readFile(this.#caFile, 'utf8'), publicKey: await this.#keys.publicKey(slot), deviceId: this.#deps.deviceId, now: this.#now() };
  }

  async #bootstrapToken(): Promise<string | undefined> {
    const file = this.#config.bootstrapTokenFile;
    if (!file) return undefined;
    try {
      if ((await stat(file)).size > MAX_TOKEN_BYTES) throw new Error(`larger than ${MAX_TOKEN_BYTES} bytes`);
      const token = (await readFile(file, 'utf8')).trim();
      if (!token || hasControlCharacter(token)) throw new Error('empty, or with a control character');
      return token;
    } catch (err) {
      this.#log.error({ file, error: errorMessage(err) }, 'cannot read the bootstrap token');
      return undefined;
    }
  }

  #renewalDelay(generation: Generation): number {
    const { notBefore, notAfter } = generation.facts;
    const renewAt = notBefore.getTime() + (notAfter.getTime() - notBefore.getTime()) * this.#config.renewAt;
    return Math.max(0, renewAt - this.#now().getTime());
  }

  #retryDelay(): number {
    return Math.max(1000, fullJitterDelay(this.#failures, HUB_RETRY, this.#deps.random));
  }

  #schedule(delayMs: number): void {
    clearTimeout(this.#timer);
    if (this.#stopped) return;
    this.#timer = setTimeout(() => this.#serially(() => this.#cycle()), Math.min(delayMs, MAX_TIMER_MS));
    this.#timer.unref?.();
  }

  #notify(): void {
    for (const listener of this.#listeners) listener();
  }

  #now(): Date {
    return this.#deps.now?.() ?? new Date();
  }
}

/** The enrolment part when `enrolment.hubUrl` is set; undefined for a device whose certificate is given by hand. */
export function buildEnrolmentPart(
  config: { stateDir: string; enrolment: EnrolmentConfig; broker: { tls: { caFile?: string | undefined; certFile?: string | undefined; keyFile?: string | undefined } } },
  deps: Omit<EnrolmentDeps, 'stateDir' | 'brokerCaFile' | 'brokerCertFile' | 'brokerKeyFile'>,
): EnrolmentPart | undefined {
  if (!config.enrolment.hubUrl) return undefined;
  const { caFile, certFile, keyFile } = config.broker.tls;
  return new EnrolmentPart(config.enrolment, { ...deps, stateDir: config.stateDir, brokerCaFile: caFile, brokerCertFile: certFile, brokerKeyFile: keyFile });
}
