import { expect, it } from 'vitest';
import { compactLogLine, screenLines } from '../../scripts/sandbox-screen.js';

const header = [
  'fleetlet sandbox: broker mqtt://127.0.0.1:40123 (embedded aedes), device dev-sandbox, agent pid 12345',
  'state in .fleetlet-dev, agent log .fleetlet-dev/agent.log, :40124/metrics; Ctrl-C stops',
  'send a command yourself: . .fleetlet-dev/operator.env',
  '  npx tsx src/bin.ts fleet send ping --device dev-sandbox --allow-plaintext',
];

it('fits a busy sandbox into 80x24: every line at most 80 columns, at most 24 rows, the newest feed and log kept', () => {
  const devices = new Map([['dev-sandbox', { presence: 'online, boot #3', status: `#42 cpu 3.1%, mem 41%, outbox 0 ${'x'.repeat(120)}`, k3s: 'not-installed', lastSeen: new Date() }]]);
  const feed = Array.from({ length: 200 }, (_, i) => `06:00:${String(i % 60).padStart(2, '0')} feed line ${i} ${'y'.repeat(i % 3 === 0 ? 150 : 10)}`);
  const logTail = Array.from({ length: 12 }, (_, i) => `info log line ${i} ${'z'.repeat(200)}`);
  const lines = screenLines({ header, devices, feed, logTail }, 24, 80);
  expect(lines.length).toBeLessThanOrEqual(24);
  expect(lines.every((line) => line.length <= 80)).toBe(true);
  expect(lines.some((line) => line.includes('feed line 199'))).toBe(true);
  expect(lines.some((line) => line.includes('log line 11'))).toBe(true);
  expect(lines).toContain(header[3]);
});

it('fits the hub lines into 80x24 too, whole, with the feed still shown', () => {
  const withHub = [
    ...header.slice(0, 2),
    'hub http://127.0.0.1:40125 on SQLite: npx tsx src/bin.ts fleet devices \\',
    '  --hub http://127.0.0.1:40125 --token-file .fleetlet-dev/hub/sandbox.token',
    ...header.slice(2),
  ];
  const devices = new Map([['dev-sandbox', { presence: 'online, boot #3', status: '#42 cpu 3.1%', k3s: 'not-installed', lastSeen: new Date() }]]);
  const feed = Array.from({ length: 50 }, (_, i) => `feed line ${i}`);
  const lines = screenLines({ header: withHub, devices, feed, logTail: ['info a', 'info b', 'info c', 'info d', 'info e'] }, 24, 80);
  expect(lines.length).toBe(24);
  expect(lines.slice(2, 4)).toEqual(withHub.slice(2, 4));
  expect(lines.some((line) => line === 'feed line 49')).toBe(true);
  expect(lines.at(-1)).toBe('info e');
});

it('keeps the fields of a log line that say why and what comes next', () => {
  const line = JSON.stringify({ level: 'info', time: Date.UTC(2026, 0, 1, 6, 1, 2), part: 'link', pid: 1, delayMs: 2310, attempt: 4, nextAttemptAt: 'x', msg: 'next connection attempt in 2.3 s' });
  expect(compactLogLine(line)).toBe('06:01:02 info next connection attempt in 2.3 s delayMs=2310');
  const failed = JSON.stringify({ level: 'warn', step: 'prepare', code: 'AgentArgsError', reason: 'k3s.serverUrl is not set', msg: 'k3s could not be started: k3s.serverUrl is not set' });
  expect(compactLogLine(failed)).toBe('warn k3s could not be started: k3s.serverUrl is not set code=AgentArgsError');
});
