import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DeviceIdSchema } from '../../src/config/schema.js';
import { readMachineIdentity, resolveDeviceId, type MachineSources } from '../../src/identity/device-id.js';
import { DeviceIdUnavailableError } from '../../src/identity/errors.js';
import { fingerprint } from '../../src/identity/fingerprint.js';
import { IdentityStore } from '../../src/identity/identity-store.js';
import { NodeFiles } from '../../src/identity/node-files.js';
import { ensureNodeIdentity } from '../../src/identity/node-identity.js';
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

function sources(root: string, files: { machineId?: string; serial?: string; cpuinfo?: string }): MachineSources {
  mkdirSync(root, { recursive: true });
  const write = (name: string, content: string | undefined) => {
    if (content !== undefined) writeFileSync(join(root, name), content);
    return join(root, name);
  };
  return {
    machineIdPath: write('machine-id', files.machineId),
    serialPaths: [write('serial-number', files.serial)],
    cpuinfoPath: write('cpuinfo', files.cpuinfo),
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

  it('gives a cloned image its own identity and says so', () => {
    const golden = device(join(dir, 'golden'), MACHINE_A);
    ensureNodeIdentity({ ...golden, machineFingerprint: golden.machine!.fingerprint, withNodeId: true });
    const goldenPassword = golden.files.readPassword();
    opened.pop()!.db.close();
    // The image, state database included, is copied onto a second board whose first boot made a new machine id.
    cpSync(join(dir, 'golden'), join(dir, 'clone'), { recursive: true });
    rmSync(join(dir, 'clone', 'machine'), { recursive: true });
    const clone = device(join(dir, 'clone'), MACHINE_B);

    const report = ensureNodeIdentity({ ...clone, machineFingerprint: clone.machine!.fingerprint, withNodeId: true });
    expect(report.actions).toEqual(['clone-regenerated']);
    expect(report.clone).toMatchObject({ previousPasswordFingerprint: fingerprint(goldenPassword!), currentMachine: clone.machine!.fingerprint });
    expect(clone.files.readPassword()).not.toBe(goldenPassword);
    expect(clone.files.readNodeId()).not.toBe(golden.files.readNodeId());
    expect(clone.machine!.derivedId).not.toBe(golden.machine!.derivedId);
    // Detected once: the next start on the clone is ordinary.
    expect(ensureNodeIdentity({ ...clone, machineFingerprint: clone.machine!.fingerprint, withNodeId: true }).actions).toEqual([
      'unchanged',
    ]);
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
