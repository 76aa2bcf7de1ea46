import type { TlsKey } from './device-key-store.js';

/** One certificate generation the link can connect with. */
export interface ClientCredentials {
  /** Names the generation, so that the link can say which one connected or was refused. */
  id: string;
  cert: Buffer;
  key: TlsKey;
  notAfter: Date;
}

/**
 * Where the link takes its client certificate from when the device enrols (identity/enrolment-part.ts). The link
 * asks at every connection attempt, waits (without blocking anything else) while there is none, reconnects when it
 * changes, and tells which generation the broker accepted or refused: a renewed certificate replaces the old one
 * only once it has connected.
 */
export interface ClientCredentialSource {
  /** The generation to connect with now: an unproven renewal first, else the one in use; undefined before enrolment. */
  current(): ClientCredentials | undefined;
  /** Called when `current()` changed; returns the unsubscribe function. */
  onChange(listener: () => void): () => void;
  /** The broker accepted a connection with this generation. */
  connected(id: string): void;
  /** The broker refused this generation (a TLS alert or a CONNACK refusal), not a network failure. */
  refused(id: string, reason: string): void;
}
