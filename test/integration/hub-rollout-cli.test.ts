import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey } from '../../src/fleet/keygen.js';
import { RolloutEngine, type CommandPublisher } from '../../src/hub/rollouts/rollout-engine.js';
import { createLogger } from '../../src/lib/logger.js';
import { CommandEnvelopeSchema, signatureValid } from '../../src/protocol/command.js';
import { publicKeyFromBase64 } from '../../src/protocol/ed25519-keys.js';
import { deviceRow, startHubApi, type TestHubApi } from '../helpers/hub-api.js';
import { HubDatabases } from '../helpers/hub-database.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

const ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' };

/** The bundled CLI, asynchronous: the hub it talks to runs in this process. */
function fleetlet(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [FLEETLET_BUNDLE, ...args], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

/** Records what the engine published: the devices' command topic stands in for the broker here. */
class RecordingPublisher implements CommandPublisher {
  readonly connected = true;
  readonly published: string[] = [];
  async publish(deviceId: string): Promise<void> {
    this.published.push(deviceId);
  }
}

const DEVICES = ['edge-1', 'edge-2', 'edge-3', 'edge-4', 'edge-5'];

/**
 * `fleet rollout ... --hub`: the operator's CLI (the bundle) selects the devices in the hub, signs one command per
 * device, hands them over, and pauses, resumes, aborts and shows the rollout; a real hub API and rollout engine on
 * SQLite take it.
 */
describe('fleet rollout --hub', () => {
  const databases = new HubDatabases('sqlite');
  const dir = tempDir('fleetlet-hub-rollout-cli-');
  const keyFile = join(dir.dir, 'ops.key');
  const tokenFile = join(dir.dir, 'token');
  const viewerTokenFile = join(dir.dir, 'viewer-token');
  let api: TestHubApi;
  let engine: RolloutEngine;
  const publisher = new RecordingPublisher();
  let publicKey: string;

  beforeAll(async () => {
    api = await startHubApi(databases);
    writeFileSync(tokenFile, `${api.tokens.operator}\n`, { mode: 0o600 });
    writeFileSync(viewerTokenFile, `${api.tokens.viewer}\n`, { mode: 0o600 });
    publicKey = generateSigningKey(keyFile, 'ops').publicKey;
    await api.hub.db
      .insertInto('devices')
      .values([...DEVICES.map((id) => deviceRow(id, { labels: { site: 'plant' } })), deviceRow('other-1', { labels: { site: 'office' } })])
      .execute();
    engine = new RolloutEngine({ hub: api.hub, publisher, replicaId: 'cli-test', log: createLogger({ level: 'silent' }), tickMs: 200 });
    engine.start();
  });
  afterAll(async () => {
    await engine?.stop();
    await api?.close();
    await databases.close();
    dir.cleanup();
  });

  const hubFlags = (token = tokenFile) => ['--hub', api.url, '--token-file', token];

  it('signs one command per selected device, each for that device and valid until the deadline, and hands them to the hub', async () => {
    const started = await fleetlet([
      'fleet', 'rollout', 'k3s', '--to', 'v1.36.3+k3s1', '--label', 'site=plant', '--canary-count', '1', '--batch-size', '2',
      '--ttl', '7200', '--watch', '0', '--key', keyFile, ...hubFlags(),
    ]);
    expect({ code: started.code, stderr: started.stderr }).toEqual({ code: 0, stderr: '' });
    const rolloutId = /rollout (r-[0-9a-f]+):/.exec(started.stdout)![1]!;
    expect(started.stdout).toContain('to 5 device(s) in 3 batch(es)');
    const rollout = await api.hub.db.selectFrom('rollouts').selectAll().where('rollout_id', '=', rolloutId).executeTakeFirstOrThrow();
    expect([rollout.kind, rollout.created_by, rollout.batch_count, rollout.canaries]).toEqual(['k3s.upgrade', 'ops', 3, 1]);
    const rows = await api.hub.db.selectFrom('rollout_devices').select(['device_id', 'batch_index', 'envelope_json']).where('rollout_id', '=', rolloutId).orderBy('device_id').execute();
    expect(rows.map((r) => [r.device_id, r.batch_index])).toEqual([['edge-1', 0], ['edge-2', 1], ['edge-3', 1], ['edge-4', 2], ['edge-5', 2]]);
    for (const row of rows) {
      const envelope = CommandEnvelopeSchema.parse(JSON.parse(row.envelope_json));
      expect(signatureValid(envelope, publicKeyFromBase64(publicKey))).toBe(true);
      expect(envelope.target).toEqual({ device: row.device_id });
      expect(envelope.args).toEqual({ version: 'v1.36.3+k3s1' });
      expect(envelope.expiresAt).toBe(rollout.deadline_ms);
    }
    await waitFor(() => publisher.published.includes('edge-1'), 'the canary released by the engine');
  });

  it('pauses, shows, resumes and aborts a rollout the hub runs; a viewer may only look', async () => {
    const started = await fleetlet(['fleet', 'rollout', 'k3s', '--to', 'v1.36.3+k3s1', '--label', 'site=plant', '--key', keyFile, ...hubFlags()]);
    expect(started.code).toBe(0);
    const rolloutId = /rollout (r-[0-9a-f]+):/.exec(started.stdout)![1]!;

    const paused = await fleetlet(['fleet', 'rollout', 'pause', rolloutId, ...hubFlags()]);
    expect({ code: paused.code, stderr: paused.stderr }).toEqual({ code: 0, stderr: '' });
    expect(paused.stdout).toContain(`rollout ${rolloutId} paused: paused by ops`);
    const byViewer = await fleetlet(['fleet', 'rollout', 'resume', rolloutId, ...hubFlags(viewerTokenFile)]);
    expect(byViewer.code).toBe(1);
    expect(byViewer.stderr).toContain('HTTP 403');
    const status = await fleetlet(['fleet', 'rollout', 'status', rolloutId, ...hubFlags(viewerTokenFile)]);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(`rollout ${rolloutId} paused`);
    expect(status.stdout).toMatch(/batch 1\/\d+ /);

    const resumed = await fleetlet(['fleet', 'rollout', 'resume', rolloutId, ...hubFlags()]);
    expect(resumed.stdout).toContain(`rollout ${rolloutId} running`);
    const aborted = await fleetlet(['fleet', 'rollout', 'abort', rolloutId, ...hubFlags()]);
    expect({ code: aborted.code, out: aborted.stdout }).toEqual({ code: 0, out: expect.stringContaining(`rollout ${rolloutId} aborted: aborted by ops`) });
    const again = await fleetlet(['fleet', 'rollout', 'abort', rolloutId, ...hubFlags()]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('is aborted');
    const json = await fleetlet(['fleet', 'rollout', 'status', rolloutId, '--json', ...hubFlags()]);
    const detail = JSON.parse(json.stdout) as { state: string; batches: { devices: { outcome: string }[] }[] };
    expect(detail.state).toBe('aborted');
    expect(detail.batches.at(-1)!.devices.every((d) => d.outcome === 'skipped')).toBe(true);
    const listed = await fleetlet(['fleet', 'rollout', 'status', ...hubFlags(viewerTokenFile)]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(`rollout ${rolloutId} aborted: aborted by ops`);
    expect(listed.stdout.trim().split('\n').length).toBe((await api.hub.db.selectFrom('rollouts').select('rollout_id').execute()).length);
    const actions = await api.hub.db.selectFrom('audit_log').select('action').where('target', '=', rolloutId).orderBy('id').execute();
    expect(actions.map((a) => a.action)).toEqual(['rollout.create', 'rollout.pause', 'rollout.resume', 'rollout.abort']);
  });

  it('rolls k3s.configure out with the arguments given, and refuses arguments its schema does not take or bounds the hub would refuse', async () => {
    const started = await fleetlet(['fleet', 'rollout', 'configure', '--args', '{"labels":{"zone":"b"}}', '--label', 'site=office', '--watch', '60', '--key', keyFile, ...hubFlags()]);
    expect({ code: started.code, stderr: started.stderr }).toEqual({ code: 0, stderr: '' });
    const rolloutId = /rollout (r-[0-9a-f]+):/.exec(started.stdout)![1]!;
    const rollout = await api.hub.db.selectFrom('rollouts').select(['kind', 'watch_seconds']).where('rollout_id', '=', rolloutId).executeTakeFirstOrThrow();
    expect(rollout).toEqual({ kind: 'k3s.configure', watch_seconds: 60 });
    const rows = await api.hub.db.selectFrom('rollout_devices').select(['device_id', 'envelope_json']).where('rollout_id', '=', rolloutId).execute();
    expect(rows.map((r) => [r.device_id, JSON.parse(r.envelope_json).args])).toEqual([['other-1', { labels: { zone: 'b' } }]]);

    const badArgs = await fleetlet(['fleet', 'rollout', 'configure', '--args', '{"colour":"blue"}', '--key', keyFile, ...hubFlags()]);
    expect(badArgs.code).toBe(64);
    expect(badArgs.stderr).toContain('invalid k3s.configure args');
    const tooLong = await fleetlet(['fleet', 'rollout', 'k3s', '--to', 'v1.36.3+k3s1', '--watch', '100000', '--key', keyFile, ...hubFlags()]);
    expect(tooLong.code).toBe(64);
    expect(tooLong.stderr).toContain('watchSeconds');
  });

  it('hands over a rollout of 1,000 devices (about 700 KB of signed commands) in one request', async () => {
    const many = Array.from({ length: 1000 }, (_, i) => `big-${String(i).padStart(4, '0')}`);
    await api.hub.db.insertInto('devices').values(many.map((id) => deviceRow(id, { labels: { site: 'big' } }))).execute();
    const started = await fleetlet(['fleet', 'rollout', 'agent', '--to', '1.2.3', '--artifact-url', 'https://releases.example.net/fleetlet', '--sha256', 'a'.repeat(64),
      '--label', 'site=big', '--batch-size', '25%', '--key', keyFile, ...hubFlags()]);
    expect({ code: started.code, stderr: started.stderr }).toEqual({ code: 0, stderr: '' });
    expect(started.stdout).toContain('to 1000 device(s) in 5 batch(es)');
    const rolloutId = /rollout (r-[0-9a-f]+):/.exec(started.stdout)![1]!;
    const stored = await api.hub.db.selectFrom('rollout_devices').select((eb) => eb.fn.countAll<number>().as('n')).where('rollout_id', '=', rolloutId).executeTakeFirstOrThrow();
    expect(Number(stored.n)).toBe(1000);
    await fleetlet(['fleet', 'rollout', 'abort', rolloutId, ...hubFlags()]);
  });

  it('needs the hub for status and the other actions, and the rollout id', async () => {
    const noHub = await fleetlet(['fleet', 'rollout', 'status', 'r-123456789', '--broker', 'mqtt://127.0.0.1:1']);
    expect(noHub.code).toBe(64);
    expect(noHub.stderr).toContain('needs the hub');
    const noId = await fleetlet(['fleet', 'rollout', 'pause', ...hubFlags()]);
    expect(noId.code).toBe(64);
    expect(noId.stderr).toContain('needs the rollout id');
  });
});
