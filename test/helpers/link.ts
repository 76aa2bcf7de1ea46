import { Writable } from 'node:stream';
import { ConfigSchema, type Config } from '../../src/config/schema.js';
import { createLogger, type Logger } from '../../src/lib/logger.js';
import { Topics } from '../../src/protocol/topics.js';
import { MqttLink, type LinkOptions } from '../../src/link/link.js';
import { waitFor } from './wait.js';

/** The broker section as the loader would produce it, with fast reconnects for tests. */
export function brokerConfig(url: string, overrides: Record<string, unknown> = {}): Config['broker'] {
  return ConfigSchema.shape.broker.parse({
    url,
    allowPlaintext: true,
    keepaliveSeconds: 5,
    reconnect: { baseMs: 100, capMs: 1000, stableMs: 2000 },
    ...overrides,
  });
}

/** A logger whose JSON lines the test can read. */
export function capturingLogger(): { logger: Logger; lines: () => string[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { logger: createLogger({ level: 'debug', destination }), lines: () => lines };
}

export function makeLink(broker: Config['broker'], options: Partial<LinkOptions> = {}): { link: MqttLink; logs: () => string[] } {
  const { logger, lines } = capturingLogger();
  const link = new MqttLink({
    broker,
    topics: new Topics(broker.topicRoot),
    deviceId: 'dev-a',
    groups: ['canary'],
    maxMessageBytes: 4096,
    bootSequence: 7,
    fleetletVersion: '0.1.0',
    logger,
    ...options,
  });
  return { link, logs: lines };
}

/**
 * Waits until the link has completed its n-th connect: subscribed to its command topics and published its birth.
 * `connected` alone is not enough: it is true from the CONNACK, before the subscriptions reach the broker.
 */
export async function announced(made: { logs: () => string[] }, times = 1, timeoutMs = 20_000): Promise<void> {
  const count = () => made.logs().filter((line) => line.includes('online: subscribed to commands and announced')).length;
  await waitFor(() => count() >= times, `connect #${times} to complete`, timeoutMs);
}
