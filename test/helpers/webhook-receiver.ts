import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A real HTTP receiver for alert webhooks on a free loopback port. It verifies each request's HMAC signature with
 * the key it was given (as a receiver in the field would) and answers from a script: the next scripted answer per
 * request, then `otherwise`. A `hang` answer never responds, for the sender's timeout.
 */
export interface ReceivedHook {
  at: number;
  headers: IncomingHttpHeaders;
  body: string;
  signatureValid: boolean;
  answered: number | 'hang';
}

export type HookAnswer = { status: number; headers?: Record<string, string>; body?: string | Buffer } | 'hang';

export interface WebhookReceiver {
  url: string;
  received: ReceivedHook[];
  script: HookAnswer[];
  otherwise: HookAnswer;
  close(): Promise<void>;
}

export async function startWebhookReceiver(key: string): Promise<WebhookReceiver> {
  const sockets = new Set<Socket>();
  const receiver: WebhookReceiver = { url: '', received: [], script: [], otherwise: { status: 200 }, close: async () => {} };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const expected = Buffer.from(`sha256=${createHmac('sha256', key).update(body).digest('hex')}`);
      const given = Buffer.from(String(req.headers['x-fleetlet-signature'] ?? ''));
      const answer = receiver.script.shift() ?? receiver.otherwise;
      receiver.received.push({
        at: Date.now(),
        headers: req.headers,
        body,
        signatureValid: given.length === expected.length && timingSafeEqual(given, expected),
        answered: answer === 'hang' ? 'hang' : answer.status,
      });
      if (answer !== 'hang') respond(res, answer);
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/fleetlet`;
  receiver.close = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    await closed;
  };
  return receiver;
}

function respond(res: ServerResponse, answer: Exclude<HookAnswer, 'hang'>): void {
  res.writeHead(answer.status, { 'content-type': 'text/plain', ...answer.headers });
  res.end(answer.body ?? 'ok');
}
