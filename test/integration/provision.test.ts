import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { provision, type ProvisionOptions } from '../../src/cli/provision.js';
import { SYSTEMD_UNIT } from '../../src/cli/provision-unit.js';
import { ConfigError } from '../../src/lib/errors.js';
import { FLEETLET_BUNDLE, REPO_ROOT, tempDir } from '../helpers/paths.js';

function scratch(): string {
  const { dir, cleanup } = tempDir('fleetlet-provision-');
  onTestFinished(cleanup);
  return dir;
}

/** A stand-in binary whose ELF header says arm64, enough for provision to pick the k3s arch of the image. */
function fakeArm64Binary(dir: string): string {
  const header = Buffer.alloc(64);
  header.writeUInt32BE(0x7f454c46, 0);
  header.writeUInt16LE(183, 18);
  const file = join(dir, 'fleetlet-linux-arm64');
  writeFileSync(file, header);
  return file;
}

const IMAGE_CONFIG = 'broker:\n  url: mqtts://broker.example.test:8883\n  tls:\n    caFile: /etc/fleetlet/trust/fleet-ca.crt\nk3s:\n  serverUrl: https://k3s.example.test:6443\n  tokenFile: /etc/fleetlet/k3s-token\n';

function imageInputs(dir: string, config = IMAGE_CONFIG): Omit<ProvisionOptions, 'root'> {
  writeFileSync(join(dir, 'config.yaml'), config);
  writeFileSync(join(dir, 'fleet-ca.crt'), '-----BEGIN CERTIFICATE-----\n(test)\n-----END CERTIFICATE-----\n');
  return {
    binary: fakeArm64Binary(dir),
    config: join(dir, 'config.yaml'),
    trustAnchors: [join(dir, 'fleet-ca.crt')],
    enable: true,
    allowIdentity: false,
  };
}

const mode = (file: string) => statSync(file).mode & 0o777;

describe('fleetlet provision into a mounted rootfs', () => {
  it('writes binary, config, trust anchor, unit and enable link, with their modes', async () => {
    const [inputs, root] = [scratch(), scratch()];
    const report = await provision({ root, ...imageInputs(inputs) });
    expect(report.written).toEqual([
      '/usr/local/bin/fleetlet',
      '/etc/fleetlet/config.yaml',
      '/etc/fleetlet/trust/fleet-ca.crt',
      '/etc/systemd/system/fleetlet.service',
      '/etc/systemd/system/multi-user.target.wants/fleetlet.service',
    ]);
    expect(mode(join(root, 'usr/local/bin/fleetlet'))).toBe(0o755);
    expect(mode(join(root, 'etc/fleetlet/config.yaml'))).toBe(0o640);
    expect(readFileSync(join(root, 'etc/fleetlet/config.yaml'), 'utf8')).toBe(IMAGE_CONFIG);
    expect(readFileSync(join(root, 'etc/systemd/system/fleetlet.service'), 'utf8')).toBe(SYSTEMD_UNIT);
    expect(readlinkSync(join(root, 'etc/systemd/system/multi-user.target.wants/fleetlet.service'))).toBe('/etc/systemd/system/fleetlet.service');
  });

  it('puts no device identity in the image: no node password or id, no state, no machine-id', async () => {
    const [inputs, root] = [scratch(), scratch()];
    await provision({ root, ...imageInputs(inputs) });
    for (const path of ['etc/rancher/node', 'var/lib/fleetlet', 'etc/machine-id']) expect(existsSync(join(root, path)), path).toBe(false);
    expect(readFileSync(join(root, 'etc/fleetlet/config.yaml'), 'utf8')).not.toMatch(/^\s*id:/m);
  });

  it('refuses a config that names the device, and writes nothing', async () => {
    const [inputs, root] = [scratch(), scratch()];
    const attempt = provision({ root, ...imageInputs(inputs, `device:\n  id: pi-01\n${IMAGE_CONFIG}`) });
    await expect(attempt).rejects.toThrow(ConfigError);
    await expect(attempt).rejects.toThrow(/device\.id.*each device derives its own id/);
    expect(existsSync(join(root, 'usr'))).toBe(false);
  });

  it('refuses an image that already carries an identity, unless installing on the device itself', async () => {
    const [inputs, root] = [scratch(), scratch()];
    mkdirSync(join(root, 'etc/rancher/node'), { recursive: true });
    writeFileSync(join(root, 'etc/rancher/node/password'), 'ab'.repeat(16) + '\n');
    writeFileSync(join(root, 'etc/machine-id'), '9e8d7c6b5a4f30211f2e3d4c5b6a7988\n');
    await expect(provision({ root, ...imageInputs(inputs) })).rejects.toThrow(
      /\/etc\/rancher\/node\/password\n {2}\/etc\/machine-id \(not empty\)/,
    );
    const report = await provision({ root, ...imageInputs(inputs), allowIdentity: true });
    expect(report.written).toContain('/usr/local/bin/fleetlet');
  });

  it('installs an air-gap k3s of the image arch, verified against its checksum file', async () => {
    const [inputs, root, bundle] = [scratch(), scratch(), scratch()];
    const k3s = Buffer.from('#!/bin/sh\necho fake k3s\n');
    const images = Buffer.from('images');
    writeFileSync(join(bundle, 'k3s-arm64'), k3s);
    writeFileSync(join(bundle, 'k3s-airgap-images-arm64.tar.zst'), images);
    const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');
    writeFileSync(join(bundle, 'sha256sum-arm64.txt'), `${sha(k3s)}  k3s-arm64\n${sha(images)}  k3s-airgap-images-arm64.tar.zst\n`);
    const report = await provision({ root, ...imageInputs(inputs), airgap: bundle });
    expect(report.written).toContain('/usr/local/bin/k3s');
    expect(readFileSync(join(root, 'usr/local/bin/k3s'))).toEqual(k3s);
    expect(readFileSync(join(root, 'var/lib/rancher/k3s/agent/images/k3s-airgap-images-arm64.tar.zst'))).toEqual(images);

    writeFileSync(join(bundle, 'k3s-arm64'), 'tampered');
    await expect(provision({ root: scratch(), ...imageInputs(inputs), airgap: bundle })).rejects.toThrow();
  });

  it('installs an air-gap k3s from a tar bundle of the same files', async () => {
    const [inputs, root, bundle] = [scratch(), scratch(), scratch()];
    const k3s = Buffer.from('#!/bin/sh\necho fake k3s\n');
    writeFileSync(join(bundle, 'k3s-arm64'), k3s);
    writeFileSync(join(bundle, 'sha256sum-arm64.txt'), `${createHash('sha256').update(k3s).digest('hex')}  k3s-arm64\n`);
    const tar = join(scratch(), 'k3s-airgap-arm64.tar');
    expect(spawnSync('tar', ['-cf', tar, '-C', bundle, 'k3s-arm64', 'sha256sum-arm64.txt']).status).toBe(0);
    const report = await provision({ root, ...imageInputs(inputs), airgap: tar });
    expect(report.written).toContain('/usr/local/bin/k3s');
    expect(readFileSync(join(root, 'usr/local/bin/k3s'))).toEqual(k3s);
  });

  it('ships packaging/fleetlet.service equal to the unit the binary writes', () => {
    expect(readFileSync(join(REPO_ROOT, 'packaging/fleetlet.service'), 'utf8')).toBe(SYSTEMD_UNIT);
  });

  it('runs from the command line: provision --root, and the unit passes systemd-analyze verify', async () => {
    const [inputs, root] = [scratch(), scratch()];
    const { config, trustAnchors } = imageInputs(inputs);
    const result = spawnSync(
      process.execPath,
      [FLEETLET_BUNDLE, 'provision', '--root', root, '--binary', FLEETLET_BUNDLE, '--config', config!, '--trust-anchor', trustAnchors[0]!],
      { encoding: 'utf8' },
    );
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('wrote /etc/systemd/system/fleetlet.service');
    // The unit as systemd reads it, pointed at the binary just provisioned (verify checks that ExecStart runs).
    const unit = join(root, 'fleetlet.service');
    writeFileSync(unit, SYSTEMD_UNIT.replace('/usr/local/bin/fleetlet', join(root, 'usr/local/bin/fleetlet')));
    const verify = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
    if (verify.error) return; // systemd-analyze is not installed here
    expect(verify.stderr).toBe('');
    expect(verify.status).toBe(0);
  });
});
