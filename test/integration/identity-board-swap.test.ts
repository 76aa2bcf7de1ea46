import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { machineSourcesUnder, readMachineIdentity, type MachineIdentity } from '../../src/identity/device-id.js';
import { DEVICE_RECORD_FILE } from '../../src/identity/device-record.js';
import type { FleetEvent } from '../../src/protocol/event.js';
import type { CommandResult } from '../../src/protocol/result.js';
import { isolatedK3s, writeAgentConfig } from '../helpers/agent-config.js';
import { FAKE_K3S } from '../helpers/fake-k3s.js';
import { processesMatching, signalIfAlive } from '../helpers/processes.js';
import { createCa, issueCert, type KeyPair } from '../helpers/certs.js';
import { startCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { mosquittoAvailable, startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { tempDir } from '../helpers/paths.js';
import { SHIPPED_MOSQUITTO_DIR, shippedMosquittoConfig } from '../helpers/shipped-broker.js';
import { encode, signedCommand, testKey } from '../fixtures/command-keys.js';

/**
 * The card of a device moved to a new board: the real agent (the bundle) with its state from "board 1" starts on
 * "board 2" (another machine id and serial, read under device.identityRoot), behind the shipped mosquitto with mutual
 * TLS and the per-device ACL, where the client certificate names the device id. Needs the real mosquitto.
 */
const ROOT = 'fleetlet/v1';
const operatorKey = testKey('ops-2026');

function board(root: string, machineId: string, serial: string): MachineIdentity {
  mkdirSync(join(root, 'etc'), { recursive: true });
  mkdirSync(join(root, 'sys/firmware/devicetree/base'), { recursive: true });
  writeFileSync(join(root, 'etc/machine-id'), `${machineId}\n`);
  writeFileSync(join(root, 'sys/firmware/devicetree/base/serial-number'), `${serial}\0`);
  return readMachineIdentity(machineSourcesUnder(root))!;
}

describe.skipIf(!mosquittoAvailable())('a board swap', () => {
  let dir: string;
  let cleanupDir: () => void;
  let broker: TestBroker;
  let ca: KeyPair;

  beforeAll(async () => {
    ({ dir, cleanup: cleanupDir } = tempDir('fleetlet-board-swap-'));
    const pki = join(dir, 'pki');
    mkdirSync(pki);
    ca = createCa(pki, 'fleet-ca');
    const server = issueCert(ca, pki, 'broker', { server: true, altNames: ['IP:127.0.0.1'] });
    copyFileSync(ca.cert, join(pki, 'ca.crt'));
    copyFileSync(server.cert, join(pki, 'broker.crt'));
    copyFileSync(server.key, join(pki, 'broker.key'));
    copyFileSync(join(SHIPPED_MOSQUITTO_DIR, 'acl'), join(pki, 'acl'));
    // mosquitto started as root reads these after dropping to its own user.
    chmodSync(dir, 0o755);
    chmodSync(pki, 0o755);
    for (const name of ['ca.crt', 'broker.crt', 'broker.key', 'acl']) chmodSync(join(pki, name), 0o644);
    broker = await startMosquitto(shippedMosquittoConfig(pki));
  });

  afterAll(async () => {
    await broker?.close();
    cleanupDir?.();
  });

  function agent(config: string, env: Record<string, string> = {}) {
    const run = startCli(['agent', '--config', config], env);
    onTestFinished(async () => {
      if (run.child.exitCode === null && run.child.signalCode === null) {
        run.child.kill('SIGTERM');
        await run.exited;
      }
    });
    return run;
  }

  it('keeps its id, reaches the broker with its certificate, reports the change, and an operator\'s command settles it', async () => {
    const board1 = board(join(dir, 'board1'), '0123456789abcdef0123456789abcdef', '10000000aaaa0001');
    const board2 = board(join(dir, 'board2'), 'fedcba9876543210fedcba9876543210', '10000000bbbb0002');
    const deviceId = board1.derivedId!;
    expect(board2.derivedId).not.toBe(deviceId);
    const pki = join(dir, 'pki');
    const cert = issueCert(ca, pki, deviceId);
    const operatorCert = issueCert(ca, pki, 'fleet-operator');
    const topic = (leaf: string) => `${ROOT}/devices/${deviceId}/${leaf}`;
    // One operator connection: the shipped config makes the certificate's name the client id.
    const fleet = await Observer.connect(`mqtts://127.0.0.1:${broker.port}`, [`${ROOT}/devices/+/presence`, topic('events'), topic('results'), topic('inventory')], {
      ca: readFileSync(ca.cert),
      cert: readFileSync(operatorCert.cert),
      key: readFileSync(operatorCert.key),
      clientId: 'fleet-operator',
    });
    onTestFinished(() => fleet.close());
    const births = () => fleet.messages.filter((m) => m.topic === topic('presence') && (m.json as { state?: string }).state === 'online').length;
    const events = () => fleet.messages.filter((m) => m.topic === topic('events')).map((m) => m.json as FleetEvent);
    const resultsFor = (id: string) => fleet.messages.filter((m) => m.topic === topic('results')).map((m) => m.json as CommandResult).filter((r) => r.commandId === id);
    const finished = (id: string) => resultsFor(id).some((r) => ['succeeded', 'failed', 'rejected'].includes(r.status));

    const configOn = (root: string) =>
      writeAgentConfig(join(dir, 'agent'), {
        // No device.id: the id is derived at the first start and recorded.
        device: { id: undefined, identityRoot: root },
        broker: {
          url: `mqtts://127.0.0.1:${broker.port}`,
          allowPlaintext: false,
          tls: { caFile: ca.cert, certFile: cert.cert, keyFile: cert.key },
          keepaliveSeconds: 5,
          reconnect: { baseMs: 200, capMs: 1000 },
        },
        commands: { trustedKeys: [{ id: operatorKey.id, publicKey: operatorKey.publicBase64 }] },
      });
    const stop = async (run: ReturnType<typeof agent>) => {
      run.child.kill('SIGTERM');
      expect(await run.exited).toBe(0);
    };

    const first = agent(configOn(join(dir, 'board1')));
    await waitFor(() => births() === 1, 'the device online on board 1', 20_000);
    await stop(first);
    expect(events().filter((e) => e.kind === 'identity.fingerprint-changed')).toEqual([]);

    // The card in board 2: the same id (the certificate still matches), online, and the change reported.
    const second = agent(configOn(join(dir, 'board2')));
    await waitFor(() => births() === 2 || second.child.exitCode !== null, 'the device online on board 2', 20_000);
    expect(second.child.exitCode, second.output()).toBeNull();
    const raised = await fleet.waitFor((m) => (m.json as FleetEvent).kind === 'identity.fingerprint-changed', 'the fingerprint-changed event');
    expect(raised.json).toMatchObject({
      state: 'raised',
      severity: 'critical',
      remedy: expect.stringContaining('identity.reidentify'),
      detail: { deviceId, changed: 'machineId,serial', recordedFingerprint: board1.fingerprint, currentFingerprint: board2.fingerprint },
    });
    expect(fleet.messages.filter((m) => m.topic.endsWith('/presence')).every((m) => m.topic === topic('presence'))).toBe(true);
    // The retained inventory shows the fingerprint to quote as well, for an operator who missed the event.
    await fleet.waitFor(
      (m) => m.topic === topic('inventory') && (m.json as { identity?: Record<string, string> }).identity?.machine === board2.fingerprint,
      'the inventory with the new machine fingerprint',
    );

    // A command that quotes another machine (a sibling clone's, here board 1) is not for this device.
    const publish = (args: Record<string, unknown>) => {
      const command = signedCommand(operatorKey, { type: 'identity.reidentify', target: { device: deviceId }, args });
      void fleet.client.publishAsync(topic('commands'), encode(command), { qos: 1 });
      return command.id;
    };
    const wrong = publish({ fingerprint: board1.fingerprint });
    await waitFor(() => finished(wrong), 'the refused re-identify', 20_000);
    expect(resultsFor(wrong).at(-1)).toMatchObject({ status: 'failed', reason: 'fingerprint_mismatch' });
    // A new id that the client certificate does not name would cut the device off: refused.
    const renamed = publish({ fingerprint: board2.fingerprint, deviceId: 'pi-renamed' });
    await waitFor(() => finished(renamed), 'the refused new id', 20_000);
    expect(resultsFor(renamed).at(-1)).toMatchObject({ status: 'failed', reason: 'device_id_refused' });

    const adopt = publish({ fingerprint: board2.fingerprint });
    await waitFor(() => finished(adopt), 'the re-identify result', 20_000);
    expect(resultsFor(adopt).map((r) => r.status)).toEqual(['accepted', 'progress', 'succeeded']);
    const cleared = await fleet.waitFor((m) => (m.json as FleetEvent).kind === 'identity.fingerprint-changed' && (m.json as FleetEvent).state === 'cleared', 'the cleared event');
    expect(cleared.json).toMatchObject({ detail: { deviceId, currentFingerprint: board2.fingerprint } });
    await stop(second);

    // The next start on board 2 is ordinary: nothing raised again.
    const third = agent(configOn(join(dir, 'board2')));
    await waitFor(() => births() === 3, 'the device online again', 20_000);
    await stop(third);
    const record = JSON.parse(readFileSync(join(dir, 'agent', 'state', DEVICE_RECORD_FILE), 'utf8')) as { deviceId: string; signals: unknown };
    expect(record).toMatchObject({ deviceId, signals: board2.signals });
    const db = new BetterSqlite3(join(dir, 'agent', 'state', 'fleetlet.db'), { readonly: true });
    const logged = db.prepare("SELECT COUNT(*) AS n FROM event_log WHERE kind = 'identity.fingerprint-changed'").get() as { n: number };
    db.close();
    expect(logged.n).toBe(1);
  });

  it('keeps the k3s node on a swapped board, and gives a clone a node and device id of its own on the operator\'s word', async () => {
    const plain = await startMosquitto();
    onTestFinished(() => plain.close());
    const golden = board(join(dir, 'golden'), '0123456789abcdef0123456789abcdef', '10000000aaaa0001');
    const clone = board(join(dir, 'clone'), 'fedcba9876543210fedcba9876543210', '10000000cccc0003');
    const work = join(dir, 'k3s-device');
    onTestFinished(() => {
      for (const pid of processesMatching(join(work, 'data'))) signalIfAlive(pid, 'SIGKILL');
    });
    const k3s = await isolatedK3s(work, FAKE_K3S, { nodeName: 'pi-golden', withNodeId: true });
    const serverPasswords = join(work, 'server-passwords.json');
    const env = {
      FAKE_K3S_AS_ROOT: '1',
      FAKE_K3S_RETRY_MS: '200',
      FAKE_K3S_NODE_CONFIG_PATH: join(work, 'etc-rancher-node'),
      FAKE_K3S_SERVER_PASSWORDS: serverPasswords,
    };
    const configOn = (root: string) =>
      writeAgentConfig(work, {
        device: { id: undefined, identityRoot: root },
        broker: { url: plain.url, allowPlaintext: true, keepaliveSeconds: 5, reconnect: { baseMs: 200, capMs: 1000 } },
        commands: { trustedKeys: [{ id: operatorKey.id, publicKey: operatorKey.publicBase64 }] },
        k3s,
      });
    const fleet = await Observer.connect(plain.url, [`${ROOT}/devices/+/presence`, `${ROOT}/devices/+/results`, `${ROOT}/devices/+/events`]);
    onTestFinished(() => fleet.close());
    const online = (id: string) => fleet.messages.filter((m) => m.topic === `${ROOT}/devices/${id}/presence` && (m.json as { state?: string }).state === 'online').length;
    const registered = () => JSON.parse(readFileSync(serverPasswords, 'utf8')) as Record<string, string>;
    const password = () => readFileSync(join(work, 'etc-rancher-node', 'password'), 'utf8').trim();
    const k3sRegistered = (names: number) => {
      try {
        return Object.keys(registered()).length === names;
      } catch {
        return false;
      }
    };
    const k3sState = () => {
      try {
        return (JSON.parse(readFileSync(join(work, 'state', 'node-agent', 'agent-status.json'), 'utf8')) as { state?: string }).state;
      } catch {
        return undefined;
      }
    };
    const deviceId = golden.derivedId!;

    const first = agent(configOn(join(dir, 'golden')), env);
    await waitFor(() => online(deviceId) === 1 && k3sRegistered(1), 'the golden device online and its node registered', 60_000);
    const goldenPassword = password();
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);

    // The card in another board: the node keeps its password and id, so the server still knows it as the same node.
    const second = agent(configOn(join(dir, 'clone')), env);
    await fleet.waitFor((m) => (m.json as FleetEvent).kind === 'identity.fingerprint-changed' && m.topic.includes(deviceId), 'the fingerprint-changed event', 30_000);
    await waitFor(() => online(deviceId) === 2, 'the device online on the other board', 30_000);
    // Healthy means registered: had the node password changed, the server would now know a second node.
    await waitFor(() => k3sState() === 'running-healthy', 'k3s healthy on the other board', 60_000);
    expect(Object.keys(registered())).toHaveLength(1);
    expect(password()).toBe(goldenPassword);

    // The operator decides it is a clone: a node identity and a device id of its own.
    const command = signedCommand(operatorKey, {
      type: 'identity.reidentify',
      target: { device: deviceId },
      args: { fingerprint: clone.fingerprint, deviceId: 'pi-clone-2', newNodeIdentity: true },
    });
    await fleet.client.publishAsync(`${ROOT}/devices/${deviceId}/commands`, encode(command), { qos: 1 });
    // It restarts itself to take the new id (systemd would start it again).
    expect(await second.exited).toBe(0);
    const steps = fleet.messages.filter((m) => m.topic === `${ROOT}/devices/${deviceId}/results`).map((m) => m.json as CommandResult).filter((r) => r.commandId === command.id);
    expect(steps.map((r) => (r.status === 'progress' ? r.step : r.status))).toEqual(['accepted', 'adopt', 'restart_k3s', 'restarting']);
    expect(password()).not.toBe(goldenPassword);

    const third = agent(configOn(join(dir, 'clone')), env);
    await waitFor(() => online('pi-clone-2') === 1, 'the clone online under its new id', 30_000);
    const final = await fleet.waitFor(
      (m) => m.topic === `${ROOT}/devices/pi-clone-2/results` && (m.json as CommandResult).commandId === command.id,
      'the result from the new id',
    );
    expect(final.json).toMatchObject({ status: 'succeeded', deviceId: 'pi-clone-2' });
    await waitFor(() => k3sRegistered(2), 'the clone registered as a node of its own', 60_000);
    expect(Object.values(registered())).toEqual([goldenPassword, password()]);
    third.child.kill('SIGTERM');
    expect(await third.exited).toBe(0);
  });
});
