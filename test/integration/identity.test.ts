import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DeviceIdSchema } from '../../src/protocol/ids.js';
import { readMachineIdentity, resolveDeviceId, type MachineSources } from '../../src/identity/device-id.js';
import { DeviceIdUnavailableError } from '../../src/identity/errors.js';
import { fingerprint } from '../../src/identity/fingerprint.js';
import { IdentityStore } from '../../src/identity/identity-store.js';
import { NodeFiles } from '../../src/identity/node-files.js';
import { ensureNodeIdentity, renewNodeIdentity } from '../../src/identity/node-identity.js';
import { adoptMachine, DeviceRecordFile, resolveDevice } from '../../src/identity/device-record.js';
import { createIdentityControl } from '../../src/identity/reidentify.js';
import type { EventInput } from '../../src/protocol/event.js';
import { openDatabase, type OpenedDatabase } from '../../src/store/db.js';
import { FAKE_K3S } from '../helpers/fake-k3s.js';
import { freePort } from '../helpers/ports.js';
import { tempDir } from '../helpers/paths.js';

const MACHINE_A = '0123456789abcdef0123456789abcdef';
const MACHINE_B = 'fedcba9876543210fedcba9876543210';

let dir: string;
let cleanup: () => void;
const opened: OpenedDatabase[] = [];

beforeEach(() => {
  ({ dir, cleanup } = tempDir('fleetlet-identity-'));
});
afterEach(() => {
  for (const db of opened.splice(0)) db.db.close();
  cleanup();
});

interface MachineFiles {
  machineId?: string;
  serial?: string;
  cpuinfo?: string;
  dmiUuid?: string;
  /** Network cards: name -> MAC address; `physical` ones get the `device` link the kernel gives hardware. */
  nics?: Record<string, { address: string; physical: boolean }>;
}

function sources(root: string, files: MachineFiles): MachineSources {
  mkdirSync(join(root, 'net'), { recursive: true });
  const write = (name: string, content: string | undefined) => {
    if (content !== undefined) writeFileSync(join(root, name), content);
    return join(root, name);
  };
  for (const [name, nic] of Object.entries(files.nics ?? {})) {
    mkdirSync(join(root, 'net', name, ...(nic.physical ? ['device'] : [])), { recursive: true });
    writeFileSync(join(root, 'net', name, 'address'), `${nic.address}\n`);
  }
  return {
    machineIdPath: write('machine-id', files.machineId),
    serialPaths: [write('serial-number', files.serial)],
    cpuinfoPath: write('cpuinfo', files.cpuinfo),
    dmiProductUuidPath: write('product_uuid', files.dmiUuid),
    netClassDir: join(root, 'net'),
  };
}

function device(root: string, machineId: string) {
  const db = openDatabase({ stateDir: join(root, 'state'), fleetletVersion: 'test' });
  opened.push(db);
  const machine = readMachineIdentity(sources(join(root, 'machine'), { machineId: `${machineId}\n` }));
  return { store: new IdentityStore(db.db), files: new NodeFiles(join(root, 'etc-rancher-node')), machine };
}

describe('device id', () => {
  it('derives a stable, topic-safe id from /etc/machine-id without exposing it', () => {
    const machine = readMachineIdentity(sources(dir, { machineId: `${MACHINE_A}\n` }))!;
    expect(machine.source).toBe('machine-id');
    expect(DeviceIdSchema.safeParse(machine.derivedId).success).toBe(true);
    expect(machine.derivedId).not.toContain(MACHINE_A.slice(0, 8));
    expect(readMachineIdentity(sources(join(dir, 'again'), { machineId: MACHINE_A }))!.derivedId).toBe(machine.derivedId);
    expect(readMachineIdentity(sources(join(dir, 'b'), { machineId: MACHINE_B }))!.derivedId).not.toBe(machine.derivedId);
  });

  it('falls back to the board serial while the machine id is uninitialized', () => {
    const fromDt = readMachineIdentity(sources(dir, { machineId: 'uninitialized\n', serial: '10000000a1b2c3d4\0' }))!;
    expect(fromDt.source).toBe('serial');
    const fromCpuinfo = readMachineIdentity(
      sources(join(dir, 'pi'), { cpuinfo: 'processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 10000000A1B2C3D4\n' }),
    )!;
    expect(fromCpuinfo.source).toBe('serial');
    expect(fromCpuinfo.derivedId).toBe(fromDt.derivedId);
  });

  it('tells apart boards cloned with the same machine id by their serials', () => {
    const boardA = readMachineIdentity(sources(join(dir, 'a'), { machineId: MACHINE_A, serial: '10000000aaaa0001' }))!;
    const boardB = readMachineIdentity(sources(join(dir, 'b'), { machineId: MACHINE_A, serial: '10000000bbbb0002' }))!;
    expect(boardA.derivedId).not.toBe(boardB.derivedId);
    expect(boardA.fingerprint).not.toBe(boardB.fingerprint);
    expect(readMachineIdentity(sources(join(dir, 'a2'), { machineId: MACHINE_A, serial: '10000000aaaa0001' }))).toEqual(boardA);
  });

  it('prefers the configured id and fails clearly when there is nothing to derive from', () => {
    const machine = readMachineIdentity(sources(dir, { machineId: MACHINE_A }));
    expect(resolveDeviceId('pi-kitchen', machine)).toMatchObject({ deviceId: 'pi-kitchen', deviceIdSource: 'config' });
    expect(resolveDeviceId(undefined, machine)).toMatchObject({ deviceId: machine!.derivedId, deviceIdSource: 'machine-id' });
    const nothing = readMachineIdentity(sources(join(dir, 'empty'), { cpuinfo: 'Serial\t: 0000000000000000\n' }));
    expect(nothing).toBeUndefined();
    expect(() => resolveDeviceId(undefined, nothing)).toThrow(DeviceIdUnavailableError);
  });
});

describe('the device id recorded at the first start', () => {
  const SERIAL_1 = '10000000aaaa0001';
  const SERIAL_2 = '10000000bbbb0002';
  /** The agent opens its database, which makes the state directory, before it resolves the id. */
  const recordIn = (stateDir: string) => {
    mkdirSync(stateDir, { recursive: true });
    return new DeviceRecordFile(stateDir);
  };

  it('derives ids exactly as fleetlet did before ids were recorded, so no existing certificate stops matching', () => {
    // The value the derivation gave before the record existed (commit 50bbaf5): a device upgrading derives it again.
    const machine = readMachineIdentity(sources(dir, { machineId: `${MACHINE_A}\n`, serial: `${SERIAL_1}\0` }))!;
    expect(machine.derivedId).toBe('ddeafd149c519bfe810bf');
  });

  it('keeps the id on another board and reports the change at every start until an operator adopts the board', async () => {
    const record = recordIn(join(dir, 'state'));
    const board1 = readMachineIdentity(sources(join(dir, 'board1'), { machineId: MACHINE_A, serial: SERIAL_1 }))!;
    const first = await resolveDevice({ file: record, configured: undefined, machine: board1 });
    expect(first).toEqual({ deviceId: board1.derivedId, source: 'machine-id' });
    expect(statSync(record.path).mode & 0o777).toBe(0o600);
    expect(await resolveDevice({ file: record, configured: undefined, machine: board1 })).toEqual(first);

    // The card moved: the new board has another serial, and (say) the machine id was regenerated.
    const board2 = readMachineIdentity(sources(join(dir, 'board2'), { machineId: MACHINE_B, serial: SERIAL_2 }))!;
    expect(board2.derivedId).not.toBe(board1.derivedId);
    for (let start = 0; start < 2; start += 1) {
      const moved = await resolveDevice({ file: record, configured: undefined, machine: board2 });
      expect(moved).toEqual({
        deviceId: board1.derivedId,
        source: 'machine-id',
        fingerprintChange: { changed: ['machineId', 'serial'], recordedFingerprint: board1.fingerprint, currentFingerprint: board2.fingerprint },
      });
    }

    await adoptMachine(record, board2, board1.derivedId!);
    expect(await resolveDevice({ file: record, configured: undefined, machine: board2 })).toEqual({ deviceId: board1.derivedId, source: 'machine-id' });
    // Back on the first board would be a change again.
    expect((await resolveDevice({ file: record, configured: undefined, machine: board1 })).fingerprintChange?.changed).toEqual(['machineId', 'serial']);
  });

  it('tells apart x86 boxes cloned with their machine id by the DMI uuid, else by the burnt-in MAC address', async () => {
    const nics = (eth0: string) => ({ eth0: { address: eth0, physical: true }, 'cni0': { address: '00:16:3e:00:00:01', physical: false } });
    const box1 = readMachineIdentity(sources(join(dir, 'box1'), { machineId: MACHINE_A, dmiUuid: '4c4c4544-0042-3510-8051-b4c04f4e3332\n', nics: nics('00:1b:21:aa:00:01') }))!;
    const box2 = readMachineIdentity(sources(join(dir, 'box2'), { machineId: MACHINE_A, dmiUuid: '4c4c4544-0042-3510-8051-b4c04f4e9999\n', nics: nics('00:1b:21:aa:00:01') }))!;
    expect(box2.derivedId).toBe(box1.derivedId); // the id alone cannot tell them apart: the fingerprint must
    const record = recordIn(join(dir, 'state'));
    await resolveDevice({ file: record, configured: undefined, machine: box1 });
    expect((await resolveDevice({ file: record, configured: undefined, machine: box2 })).fingerprintChange?.changed).toEqual(['hardware']);

    // Without a usable DMI uuid (a vendor placeholder), the first physical card's MAC; bridges and made-up MACs do not count.
    const placeholder = '03000200-0400-0500-0006-000700080009';
    const mac1 = readMachineIdentity(sources(join(dir, 'mac1'), { machineId: MACHINE_A, dmiUuid: placeholder, nics: nics('00:1b:21:aa:00:01') }))!;
    const mac2 = readMachineIdentity(sources(join(dir, 'mac2'), { machineId: MACHINE_A, dmiUuid: placeholder, nics: nics('00:1b:21:aa:00:02') }))!;
    expect(mac1.signals.hardware).toBeDefined();
    expect(mac2.signals.hardware).not.toBe(mac1.signals.hardware);
    const randomised = readMachineIdentity(
      sources(join(dir, 'mac3'), { machineId: MACHINE_A, nics: { eth0: { address: '02:42:ac:11:00:02', physical: true }, br0: { address: '00:1b:21:aa:00:01', physical: false } } }),
    )!;
    expect(randomised.signals.hardware).toBeUndefined();
  });

  it('adds a signal the record lacks without reporting a change (a device upgraded from before the DMI signal)', async () => {
    const record = recordIn(join(dir, 'state'));
    const before = readMachineIdentity(sources(join(dir, 'old'), { machineId: MACHINE_A, serial: SERIAL_1 }))!;
    await resolveDevice({ file: record, configured: undefined, machine: before });
    const now = readMachineIdentity(sources(join(dir, 'new'), { machineId: MACHINE_A, serial: SERIAL_1, dmiUuid: '4c4c4544-0042-3510-8051-b4c04f4e3332' }))!;
    expect(await resolveDevice({ file: record, configured: undefined, machine: now })).toEqual({ deviceId: before.derivedId, source: 'machine-id' });
    expect(record.load().record?.signals).toEqual(now.signals);
    // Unreadable later (not root): not a change either.
    expect((await resolveDevice({ file: record, configured: undefined, machine: before })).fingerprintChange).toBeUndefined();
  });

  it('uses a configured id over the recorded one, records it and says which it replaced', async () => {
    const record = recordIn(join(dir, 'state'));
    const machine = readMachineIdentity(sources(dir, { machineId: MACHINE_A }))!;
    await resolveDevice({ file: record, configured: undefined, machine });
    const configured = await resolveDevice({ file: record, configured: 'pi-kitchen', machine });
    expect(configured).toEqual({ deviceId: 'pi-kitchen', source: 'config', replacedDeviceId: machine.derivedId });
    expect(record.load().record).toMatchObject({ deviceId: 'pi-kitchen', source: 'config' });
    // Removed from the config again: the recorded id stays, it is not derived anew.
    expect(await resolveDevice({ file: record, configured: undefined, machine })).toEqual({ deviceId: 'pi-kitchen', source: 'config' });
  });

  it('gives each board flashed from one fresh image its own id, and refuses nothing to derive from', async () => {
    const a = await resolveDevice({ file: recordIn(join(dir, 'a')), configured: undefined, machine: readMachineIdentity(sources(join(dir, 'ma'), { machineId: MACHINE_A }))! });
    const b = await resolveDevice({ file: recordIn(join(dir, 'b')), configured: undefined, machine: readMachineIdentity(sources(join(dir, 'mb'), { machineId: MACHINE_B }))! });
    expect(a.deviceId).not.toBe(b.deviceId);
    const hardwareOnly = readMachineIdentity(sources(join(dir, 'hw'), { dmiUuid: '4c4c4544-0042-3510-8051-b4c04f4e3332' }));
    await expect(resolveDevice({ file: recordIn(join(dir, 'c')), configured: undefined, machine: hardwareOnly })).rejects.toThrow(DeviceIdUnavailableError);
  });

  it('starts with the derived id when the record cannot be written, and records it at a later start', async () => {
    const record = recordIn(join(dir, 'state'));
    // Something in the way of the rename (as a full disk would fail the write): the start must not fail.
    mkdirSync(join(record.path, 'in-the-way'), { recursive: true });
    const machine = readMachineIdentity(sources(join(dir, 'm'), { machineId: MACHINE_A }))!;
    const blocked = await resolveDevice({ file: record, configured: undefined, machine });
    expect(blocked).toMatchObject({ deviceId: machine.derivedId, unsaved: expect.any(String) });
    rmSync(record.path, { recursive: true });
    expect(await resolveDevice({ file: record, configured: undefined, machine })).toEqual({ deviceId: machine.derivedId, source: 'machine-id' });
    expect(record.load().record?.deviceId).toBe(machine.derivedId);
  });

  it('reports a damaged record and records the id afresh', async () => {
    const record = recordIn(dir);
    writeFileSync(record.path, '{"version":1,"deviceId":"Bad/Id"');
    const machine = readMachineIdentity(sources(join(dir, 'm'), { machineId: MACHINE_A }))!;
    expect(await resolveDevice({ file: record, configured: undefined, machine })).toMatchObject({ deviceId: machine.derivedId, damagedRecord: 'not JSON' });
    expect(record.load()).toEqual({ record: expect.objectContaining({ deviceId: machine.derivedId }) });
  });
});

describe('identity.reidentify on the device', () => {
  it('refuses an id the config or the client certificate overrules, and a node identity without k3s', async () => {
    mkdirSync(join(dir, 'state'));
    const record = new DeviceRecordFile(join(dir, 'state'));
    const machine = readMachineIdentity(sources(join(dir, 'm'), { machineId: MACHINE_A }))!;
    const emitted: EventInput[] = [];
    const base = { deviceId: 'pi-1', record, machine, events: { emit: (e: EventInput) => void emitted.push(e) } };
    expect(createIdentityControl({ ...base, configuredDeviceId: 'pi-1' }).refuseDeviceId('pi-2')).toMatch(/device.id is set to pi-1/);
    const withCert = createIdentityControl({ ...base, configuredDeviceId: undefined, clientCertificateName: () => 'pi-1' });
    expect(withCert.refuseDeviceId('pi-2')).toMatch(/issued to "pi-1"/);
    expect(createIdentityControl({ ...base, configuredDeviceId: undefined, clientCertificateName: () => 'pi-2' }).refuseDeviceId('pi-2')).toBeUndefined();
    expect(withCert.refuseNodeIdentity()).toMatch(/k3s is not supervised/);

    await withCert.adopt({ deviceId: 'pi-1', newNodeIdentity: false });
    expect(record.load().record).toMatchObject({ deviceId: 'pi-1', source: 'operator', signals: machine.signals });
    expect(emitted).toEqual([expect.objectContaining({ kind: 'identity.fingerprint-changed', state: 'cleared' })]);
  });
});

describe('node password and id', () => {
  it('generates files in k3s format and modes, keeps a copy, and reports only fingerprints', () => {
    const d = device(dir, MACHINE_A);
    const report = ensureNodeIdentity({ ...d, machineFingerprint: d.machine!.fingerprint, withNodeId: true });
    expect(report.actions).toEqual(['generated']);
    const password = readFileSync(d.files.passwordPath, 'utf8');
    expect(password).toMatch(/^[0-9a-f]{32}\n$/);
    expect(statSync(d.files.passwordPath).mode & 0o777).toBe(0o600);
    expect(readFileSync(d.files.idPath, 'utf8')).toMatch(/^[0-9a-f]{8}\n$/);
    expect(statSync(d.files.idPath).mode & 0o777).toBe(0o644);
    expect(report.passwordFingerprint).toBe(fingerprint(password.trim()));
    expect(JSON.stringify(report)).not.toContain(password.trim());
    expect(d.store.load()?.nodePassword).toBe(password.trim());
  });

  it('restores the files after /etc/rancher/node is wiped, so the server still accepts the node', () => {
    const d = device(dir, MACHINE_A);
    ensureNodeIdentity({ ...d, machineFingerprint: d.machine!.fingerprint, withNodeId: true });
    const before = { password: d.files.readPassword(), id: d.files.readNodeId() };
    rmSync(d.files.dir, { recursive: true });
    const report = ensureNodeIdentity({ ...d, machineFingerprint: d.machine!.fingerprint, withNodeId: true });
    expect(report.actions).toEqual(['restored-password', 'restored-node-id']);
    expect({ password: d.files.readPassword(), id: d.files.readNodeId() }).toEqual(before);
    expect(statSync(d.files.passwordPath).mode & 0o777).toBe(0o600);
    expect(ensureNodeIdentity({ ...d, machineFingerprint: d.machine!.fingerprint, withNodeId: true }).actions).toEqual(['unchanged']);
  });

  it('restores a password file that was corrupted (truncated)', () => {
    const d = device(dir, MACHINE_A);
    ensureNodeIdentity({ ...d, machineFingerprint: d.machine!.fingerprint, withNodeId: false });
    const password = d.files.readPassword();
    writeFileSync(d.files.passwordPath, password!.slice(0, 10));
    expect(ensureNodeIdentity({ ...d, machineFingerprint: d.machine!.fingerprint, withNodeId: false }).actions).toEqual([
      'restored-password',
    ]);
    expect(d.files.readPassword()).toBe(password);
  });

  it('adopts the password of a k3s that ran before fleetlet', () => {
    const d = device(dir, MACHINE_A);
    d.files.writePassword('00112233445566778899aabbccddeeff');
    const report = ensureNodeIdentity({ ...d, machineFingerprint: d.machine!.fingerprint, withNodeId: false });
    expect(report.actions).toEqual(['adopted-files']);
    expect(d.store.load()?.nodePassword).toBe('00112233445566778899aabbccddeeff');
  });

  it('keeps the node password when the card moves to another board, and renews it only on an operator\'s word', () => {
    const board1 = device(join(dir, 'card'), MACHINE_A);
    ensureNodeIdentity({ ...board1, machineFingerprint: board1.machine!.fingerprint, withNodeId: true });
    const before = { password: board1.files.readPassword()!, id: board1.files.readNodeId()! };
    opened.pop()!.db.close();
    // The same card (state and /etc/rancher/node) in a board with another machine id: the server knows `before`.
    rmSync(join(dir, 'card', 'machine'), { recursive: true });
    const board2 = device(join(dir, 'card'), MACHINE_B);
    expect(board2.machine!.fingerprint).not.toBe(board1.machine!.fingerprint);

    expect(ensureNodeIdentity({ ...board2, machineFingerprint: board2.machine!.fingerprint, withNodeId: true }).actions).toEqual(['unchanged']);
    expect({ password: board2.files.readPassword(), id: board2.files.readNodeId() }).toEqual(before);

    // A clone, says the operator: a new password and id, kept, and the next check leaves them alone.
    const renewed = renewNodeIdentity({ ...board2, machineFingerprint: board2.machine!.fingerprint });
    expect(renewed.previousPasswordFingerprint).toBe(fingerprint(before.password));
    expect(board2.files.readPassword()).not.toBe(before.password);
    expect(board2.files.readNodeId()).not.toBe(before.id);
    expect(renewed.report.passwordFingerprint).toBe(fingerprint(board2.files.readPassword()!));
    expect(board2.store.load()?.nodePassword).toBe(board2.files.readPassword());
    expect(ensureNodeIdentity({ ...board2, machineFingerprint: board2.machine!.fingerprint, withNodeId: true }).actions).toEqual(['unchanged']);
  });
});

/** Runs the fake k3s until it registers or reports a rejected password. */
async function joinOnce(nodeDir: string, serverPasswords: string): Promise<'registered' | 'rejected'> {
  const child = spawn(FAKE_K3S, ['agent', '--server', 'https://10.0.0.1:6443', '--node-name', 'pi-01', '--data-dir', join(dir, 'data'), '--lb-server-port', String(await freePort())], {
    env: {
      ...process.env,
      K3S_TOKEN: 'K10abc::node:secret',
      FAKE_K3S_AS_ROOT: '1',
      FAKE_K3S_NODE_CONFIG_PATH: nodeDir,
      FAKE_K3S_SERVER_PASSWORDS: serverPasswords,
      FAKE_K3S_HEALTHZ_PORT: String(await freePort()),
      FAKE_K3S_RETRY_MS: '200',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let output = '';
  try {
    return await new Promise((resolve, reject) => {
      child.stderr!.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Successfully registered node')) resolve('registered');
        if (output.includes('Node password rejected')) resolve('rejected');
      });
      child.on('exit', (code) => reject(new Error(`fake k3s exited ${code}: ${output}`)));
    });
  } finally {
    child.kill('SIGTERM');
  }
}

describe('with the fake k3s agent', () => {
  it('a wiped /etc/rancher/node is rejected by the server unless fleetlet restores it first', async () => {
    const d = device(dir, MACHINE_A);
    const serverPasswords = join(dir, 'server-passwords.json');
    ensureNodeIdentity({ ...d, machineFingerprint: d.machine!.fingerprint, withNodeId: false });
    expect(await joinOnce(d.files.dir, serverPasswords)).toBe('registered');

    rmSync(d.files.dir, { recursive: true });
    expect(await joinOnce(d.files.dir, serverPasswords)).toBe('rejected'); // k3s made itself a new password

    rmSync(d.files.dir, { recursive: true });
    ensureNodeIdentity({ ...d, machineFingerprint: d.machine!.fingerprint, withNodeId: false });
    expect(await joinOnce(d.files.dir, serverPasswords)).toBe('registered');
  });
});
