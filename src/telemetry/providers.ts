import type { K3sView } from '../k3s/ports.js';
import type { OutboxClass } from '../protocol/outbox-classes.js';

/**
 * What telemetry needs to know about the other parts of the agent, as narrow read-only views. The composition
 * root supplies them (with safe defaults where a part does not exist yet); telemetry never imports those parts.
 */
export type OutboxClassCounts = Record<OutboxClass, number>;

export interface LinkView {
  connected: boolean;
  /** When the link last connected or disconnected. */
  since?: Date;
}

export interface OutboxView {
  depth: OutboxClassCounts;
  dropped: OutboxClassCounts;
}

export interface TelemetryProviders {
  linkState(): LinkView;
  k3sState(): K3sView;
  outboxStats(): OutboxView;
  /** Fingerprints of the device's identities by name, e.g. { nodePassword: "sha256:..." }. */
  identityFingerprints(): Record<string, string>;
}

const zero = (): OutboxClassCounts => ({ status: 0, event: 0, result: 0 });

/** Used for any provider whose part is not wired: it reports "unknown" honestly instead of inventing health. */
export const DEFAULT_PROVIDERS: TelemetryProviders = {
  linkState: () => ({ connected: false }),
  k3sState: () => ({ state: 'unknown', healthy: false }),
  outboxStats: () => ({ depth: zero(), dropped: zero() }),
  identityFingerprints: () => ({}),
};
