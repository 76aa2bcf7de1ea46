import { connect, createServer, type Server, type Socket } from 'node:net';
import { onTestFinished } from 'vitest';
import { startTestBroker, type TestBroker } from './mosquitto.js';

/**
 * A TCP proxy on a free loopback port between a client and a broker, that breaks the link on demand:
 * cut (both sides see the connection close), black-hole (connections stay open but nothing gets through, as
 * when a mobile link dies without a reset), slow (every chunk is delayed), and refuse (new connections are
 * closed at once).
 */
export type ProxyMode = 'pass' | 'blackhole' | 'refuse';

interface Pair {
  client: Socket;
  upstream: Socket;
  /** A black-holed connection lost data, so it never carries anything again, even after heal(). */
  dead: boolean;
}

export class FaultProxy {
  #mode: ProxyMode = 'pass';
  #delayMs = 0;
  #accepted = 0;
  readonly #pairs = new Set<Pair>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private targetPort: number,
  ) {
    server.on('connection', (client) => this.#accept(client));
  }

  static async start(targetPort: number): Promise<FaultProxy> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (!address || typeof address === 'string') throw new Error('proxy has no port');
    return new FaultProxy(server, address.port, targetPort);
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Connections accepted so far (each reconnect of the client counts). */
  get accepted(): number {
    return this.#accepted;
  }

  get open(): number {
    return this.#pairs.size;
  }

  /** Closes every open connection; new ones pass unless refuse() is in effect. */
  cut(): void {
    for (const pair of this.#pairs) this.#close(pair);
  }

  /** Nothing passes on open or new connections, and nothing is closed. */
  blackhole(): void {
    this.#mode = 'blackhole';
    for (const pair of this.#pairs) pair.dead = true;
  }

  refuse(): void {
    this.#mode = 'refuse';
  }

  /** Delays every chunk in both directions (order is kept). */
  slow(delayMs: number): void {
    this.#delayMs = delayMs;
  }

  heal(): void {
    this.#mode = 'pass';
    this.#delayMs = 0;
  }

  /** Writes raw bytes to every connected client, as a broken or hostile broker would. */
  injectToClients(bytes: Buffer): void {
    for (const pair of this.#pairs) if (!pair.dead) pair.client.write(bytes);
  }

  retarget(port: number): void {
    this.targetPort = port;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    this.#accepted += 1;
    if (this.#mode === 'refuse') {
      client.destroy();
      return;
    }
    const upstream = connect(this.targetPort, '127.0.0.1');
    const pair: Pair = { client, upstream, dead: this.#mode === 'blackhole' };
    this.#pairs.add(pair);
    client.on('data', (chunk: Buffer) => this.#forward(pair, upstream, chunk));
    upstream.on('data', (chunk: Buffer) => this.#forward(pair, client, chunk));
    for (const socket of [client, upstream]) {
      // Inside a black hole even a close does not get through: the other side must find out by itself.
      const closed = () => (pair.dead && this.#pairs.has(pair) ? socket.destroy() : this.#close(pair));
      socket.on('error', closed);
      socket.on('close', closed);
    }
  }

  #forward(pair: Pair, to: Socket, chunk: Buffer): void {
    if (pair.dead) return;
    if (this.#delayMs === 0) {
      to.write(chunk);
      return;
    }
    setTimeout(() => {
      if (!pair.dead && !to.destroyed) to.write(chunk);
    }, this.#delayMs);
  }

  #close(pair: Pair): void {
    if (!this.#pairs.delete(pair)) return;
    pair.dead = true;
    pair.client.destroy();
    pair.upstream.destroy();
  }
}

/**
 * A real test broker with a fault proxy in front of it: the device talks to the proxy, the fleet's observers to
 * the broker. Both are closed when the test finishes, the proxy first.
 */
export async function brokerBehindProxy(): Promise<{ up: TestBroker; proxy: FaultProxy }> {
  const up = await startTestBroker();
  onTestFinished(() => up.close());
  const proxy = await FaultProxy.start(up.port);
  onTestFinished(() => proxy.close());
  return { up, proxy };
}
