import { afterAll, beforeAll, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.js';
import { waitFor } from '../helpers/wait.js';
import { announced, brokerConfig, makeLink } from '../helpers/link.js';
import { startTestBroker, type TestBroker } from '../helpers/mosquitto.js';

let broker: TestBroker;
beforeAll(async () => {
  broker = await startTestBroker();
});
afterAll(async () => {
  await broker.close();
});

/** The shipped reconnect policy (base 1 s, cap 5 min), not the fast one of the other link tests. */
const SHIPPED_RECONNECT = ConfigSchema.shape.broker.parse({ url: 'mqtt://127.0.0.1:1', allowPlaintext: true }).reconnect;

/**
 * A broker restart of a few seconds must cost a device a few seconds, not the minute an exponential ceiling that
 * overshot the outage would (16-32 s windows by then). The jitter draw is pinned to its median, so the timing is the
 * schedule's, not luck's; and the log says when the next attempt is due while the broker is away.
 */
it('reconnects within seconds after an 8 s broker outage, and logs when each next attempt is due', async () => {
  const made = makeLink(brokerConfig(broker.url, { reconnect: SHIPPED_RECONNECT }), { random: () => 0.5 });
  made.link.start();
  try {
    await announced(made);
    await broker.stop();
    await waitFor(() => !made.link.state().connected, 'the link to notice', 10_000);
    await new Promise((done) => setTimeout(done, 8000));
    await broker.restart();
    const backAt = Date.now();
    await waitFor(() => made.link.state().connected, 'the link back', 30_000);
    const reconnectMs = Date.now() - backAt;
    // Half the median ceiling of an 8 s outage is 2 s; the exponential schedule would come back 7 s after the broker.
    expect(reconnectMs).toBeLessThan(4000);

    const scheduled = made
      .logs()
      .map((line) => JSON.parse(line) as { msg: string; nextAttemptAt?: string; delayMs?: number; level: string })
      .filter((entry) => entry.msg.startsWith('next connection attempt in '));
    expect(scheduled.length).toBeGreaterThan(3);
    for (const entry of scheduled) {
      expect(entry.level).toBe('info'); // shown at the default log level
      expect(Number.isNaN(Date.parse(entry.nextAttemptAt!))).toBe(false);
      expect(entry.msg).toBe(`next connection attempt in ${(entry.delayMs! / 1000).toFixed(1)} s`);
    }
  } finally {
    await made.link.stop();
  }
}, 60_000);
