import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { describe, expect, it, onTestFinished } from 'vitest';
import { provision, type ProvisionOptions } from '../../src/cli/provision.js';
import { SYSTEMD_UNIT } from '../../src/cli/provision-unit.js';
import { ConfigError } from '../../src/lib/errors.js';
import { createCa, issueCert } from '../helpers/certs.js';
import { runCli } from '../helpers/cli.js';
import { canBuildAndRun, REQUIRE_ELF_TOOLS, versionProgram } from '../helpers/elf-programs.js';
import { FLEETLET_BUNDLE, REPO_ROOT, tempDir } from '../helpers/paths.js';

function scratch(): string {
  const { dir, cleanup } = tempDir('fleetlet-provision-');
  onTestFinished(cleanup);
  return dir;
}

/** A root filesystem as an arm64 Debian image has it before its first boot: os-release, the loader, an empty machine-id. */
function arm64Image(): string {
  const root = scratch();
  mkdirSync(join(root, 'etc'), { recursive: true });
  mkdirSync(join(root, 'lib'), { recursive: true });
  writeFileSync(join(root, 'etc/os-release'), 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n');
  writeFileSync(join(root, 'etc/machine-id'), '');
  writeFileSync(join(root, 'lib/ld-linux-aarch64.so.1'), '');
  return root;
}

const VERSION = '9.8.7';
const tools = canBuildAndRun('arm64');
/** Needs aarch64-linux-gnu-gcc and qemu-aarch64-static to make and run a real arm64 binary; CI has both. */
const describeArm64 = describe.skipIf(!tools && !REQUIRE_ELF_TOOLS);

const IMAGE_CONFIG = 'broker:\n  url: mqtts://broker.example.test:8883\n  tls:\n    caFile: /etc/fleetlet/trust/fleet-ca.crt\nk3s:\n  serverUrl: https://k3s.example.test:6443\n  tokenFile: /etc/fleetlet/k3s-token\n';
const TOKEN = `K10${'5e'.repeat(32)}::node:agent-secret-0123456789abcdef`;

function imageInputs(dir: string, config = IMAGE_CONFIG): Omit<ProvisionOptions, 'root'> & { tokenFile: string } {
  writeFileSync(join(dir, 'config.yaml'), config);
  writeFileSync(join(dir, 'fleet-ca.crt'), '-----BEGIN CERTIFICATE-----\n(test)\n-----END CERTIFICATE-----\n');
  writeFileSync(join(dir, 'k3s-token'), `${TOKEN}\n`, { mode: 0o600 });
  return {
    binary: existsSync(join(dir, 'fleetlet-linux-arm64')) ? join(dir, 'fleetlet-linux-arm64') : versionProgram('arm64', dir, VERSION),
    config: join(dir, 'config.yaml'),
    trustAnchors: [join(dir, 'fleet-ca.crt')],
    files: { 'k3s.tokenFile': join(dir, 'k3s-token') },
    tokenFile: join(dir, 'k3s-token'),
    enable: true,
    allowIdentity: false,
  };
}

/** Every file and link under root, relative and with a leading slash, with what it holds: the image as a whole. */
function snapshot(root: string): Map<string, string> {
  const found = new Map<string, string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isSymbolicLink()) found.set(`/${relative(root, path)}`, `link ${readlinkSync(path)}`);
      else found.set(`/${relative(root, path)}`, `${(statSync(path).mode & 0o777).toString(8)} ${createHash('sha256').update(readFileSync(path)).digest('hex')}`);
    }
  };
  walk(root);
  return found;
}

/** The CLI's argument list for a provision of the inputs. */
function cliArgs(root: string, inputs: ReturnType<typeof imageInputs>): string[] {
  return ['provision', '--root', root, '--binary', inputs.binary!, '--config', inputs.config!, '--trust-anchor', inputs.trustAnchors[0]!, '--token-file', inputs.tokenFile];
}

const written = (stdout: string, verb = 'wrote') =>
  stdout.split('\n').filter((line) => line.startsWith(`${verb} `)).map((line) => line.slice(verb.length + 1));

const mode = (file: string) => statSync(file).mode & 0o777;

describeArm64('fleetlet provision into a mounted rootfs', () => {
  it('writes binary, config, trust anchor, unit and enable link, with their modes', async () => {
    const [inputs, root] = [scratch(), arm64Image()];
    const report = await provision({ root, ...imageInputs(inputs) });
    expect(report.written).toEqual([
      '/usr/local/bin/fleetlet',
      '/etc/fleetlet/config.yaml',
      '/etc/fleetlet/trust/fleet-ca.crt',
      '/etc/fleetlet/k3s-token',
      '/etc/systemd/system/fleetlet.service',
      '/etc/systemd/system/multi-user.target.wants/fleetlet.service',
      '/etc/fleetlet/provision-manifest.json',
    ]);
    expect(report.version).toBe(VERSION);
    expect(mode(join(root, 'usr/local/bin/fleetlet'))).toBe(0o755);
    expect(mode(join(root, 'etc/fleetlet/k3s-token'))).toBe(0o600);
    expect(statSync(join(root, 'etc/fleetlet/k3s-token')).uid).toBe(0);
    expect(readFileSync(join(root, 'etc/fleetlet/k3s-token'), 'utf8')).toBe(`${TOKEN}\n`);
    expect(mode(join(root, 'etc/fleetlet/config.yaml'))).toBe(0o640);
    expect(readFileSync(join(root, 'etc/fleetlet/config.yaml'), 'utf8')).toBe(IMAGE_CONFIG);
    expect(readFileSync(join(root, 'etc/systemd/system/fleetlet.service'), 'utf8')).toBe(SYSTEMD_UNIT);
    expect(readlinkSync(join(root, 'etc/systemd/system/multi-user.target.wants/fleetlet.service'))).toBe('/etc/systemd/system/fleetlet.service');
  });

  it('puts no device identity in the image: no node password or id, no state, machine-id left empty', async () => {
    const [inputs, root] = [scratch(), arm64Image()];
    await provision({ root, ...imageInputs(inputs) });
    for (const path of ['etc/rancher/node', 'var/lib/fleetlet']) expect(existsSync(join(root, path)), path).toBe(false);
    expect(readFileSync(join(root, 'etc/machine-id'), 'utf8')).toBe('');
    expect(readFileSync(join(root, 'etc/fleetlet/config.yaml'), 'utf8')).not.toMatch(/^\s*id:/m);
  });

  it('refuses a config that names the device, and writes nothing', async () => {
    const [inputs, root] = [scratch(), arm64Image()];
    const attempt = provision({ root, ...imageInputs(inputs, `device:\n  id: pi-01\n${IMAGE_CONFIG}`) });
    await expect(attempt).rejects.toThrow(ConfigError);
    await expect(attempt).rejects.toThrow(/device\.id.*each device derives its own id/);
    expect(existsSync(join(root, 'usr'))).toBe(false);
  });

  it('refuses an image that already carries an identity, unless installing on the device itself', async () => {
    const [inputs, root] = [scratch(), arm64Image()];
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
    const [inputs, root, bundle] = [scratch(), arm64Image(), scratch()];
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
    await expect(provision({ root: arm64Image(), ...imageInputs(inputs), airgap: bundle })).rejects.toThrow();
  });

  it('installs an air-gap k3s from a tar bundle of the same files', async () => {
    const [inputs, root, bundle] = [scratch(), arm64Image(), scratch()];
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
    const [inputs, root] = [scratch(), arm64Image()];
    const result = runCli(cliArgs(root, imageInputs(inputs)));
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
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

describeArm64('fleetlet provision refuses a binary that would make a bad image', () => {
  function refused(root: string, binary: string, extra: string[] = []) {
    const inputs = imageInputs(scratch());
    const result = runCli([...cliArgs(root, { ...inputs, binary }), ...extra]);
    expect(result.code, result.stderr).toBe(64);
    expect(result.stdout).toBe('');
    expect(existsSync(join(root, 'usr')), 'nothing written').toBe(false);
    expect(existsSync(join(root, 'etc/fleetlet')), 'nothing written').toBe(false);
    return result.stderr;
  }

  it('refuses an x64 binary for an arm64 image, naming both arches', () => {
    const dir = scratch();
    expect(refused(arm64Image(), versionProgram('x64', dir, VERSION))).toMatch(/--binary .*fleetlet-linux-x64: an executable for x64, but the image is arm64/);
  });

  it('refuses the JavaScript bundle, with or without its #! line', () => {
    expect(refused(arm64Image(), FLEETLET_BUNDLE)).toMatch(/--binary .*fleetlet\.cjs: a JavaScript bundle \(#!\/usr\/bin\/env node\), not the fleetlet single binary/);
    const bare = join(scratch(), 'fleetlet.cjs');
    writeFileSync(bare, readFileSync(FLEETLET_BUNDLE, 'utf8').replace(/^#!.*\n/, ''));
    expect(refused(arm64Image(), bare)).toMatch(/--binary .*fleetlet\.cjs: not an ELF executable/);
  });

  it('refuses a shell script, quoting its interpreter line', () => {
    const script = join(scratch(), 'fleetlet');
    writeFileSync(script, '#!/bin/sh\necho 9.8.7\n', { mode: 0o755 });
    expect(refused(arm64Image(), script)).toMatch(/--binary .*: a script \(#!\/bin\/sh\), not the fleetlet executable/);
  });

  it('refuses an arm64 executable that is not fleetlet: its --version is not a fleetlet version', () => {
    const dir = scratch();
    expect(refused(arm64Image(), versionProgram('arm64', dir, 'true (GNU coreutils) 9.1'))).toMatch(/`--version` printed "true \(GNU coreutils\) 9.1", not a fleetlet version/);
  });

  it('refuses --arch that contradicts the loader in the image, and an image whose arch nothing tells', () => {
    expect(refused(arm64Image(), versionProgram('arm64', scratch(), VERSION), ['--arch', 'armv7'])).toMatch(/--arch armv7: the image .* holds the loader of arm64, not of armv7/);
    const bare = scratch();
    writeFileSync(join(bare, 'placeholder'), '');
    expect(refused(bare, versionProgram('arm64', scratch(), VERSION))).toMatch(/--arch: cannot tell the architecture of .*give --arch x64, arm64 or armv7/);
  });

  it('accepts an image without a loader when --arch names its arch', () => {
    const root = scratch();
    const result = runCli([...cliArgs(root, imageInputs(scratch())), '--arch', 'arm64']);
    expect(result.code, result.stderr).toBe(0);
  });
});

describe('fleetlet provision: usage errors exit 64 and name the flag', () => {
  it('names a missing --root, an unknown --arch and a malformed --file', () => {
    const missingRoot = runCli(['provision', '--binary', '/bin/true']);
    expect(missingRoot.code).toBe(64);
    expect(missingRoot.stderr).toContain("required option '--root <dir>' not specified");
    const root = arm64Image();
    const arch = runCli(['provision', '--root', root, '--binary', '/bin/true', '--arch', 'sparc']);
    expect(arch.code).toBe(64);
    expect(arch.stderr).toContain('--arch: unknown architecture "sparc"');
    const file = runCli(['provision', '--root', root, '--binary', '/bin/true', '--file', 'k3s.tokenFile']);
    expect(file.code).toBe(64);
    expect(file.stderr).toContain('--file expects KEY=FILE');
    const rootFile = runCli(['provision', '--root', join(root, 'etc/os-release'), '--binary', '/bin/true']);
    expect(rootFile.code).toBe(64);
    expect(rootFile.stderr).toMatch(/--root .*os-release: not a directory/);
  });
});

describeArm64('fleetlet provision: every file the config names is in the image', () => {
  it('refuses a config whose CA is missing from the image, then writes it with --allow-missing and a warning', () => {
    const [inputs, root] = [imageInputs(scratch()), arm64Image()];
    const args = ['provision', '--root', root, '--binary', inputs.binary!, '--config', inputs.config!, '--token-file', inputs.tokenFile];
    const refused = runCli(args);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('the config names files that are not in the image:\n  broker.tls.caFile: /etc/fleetlet/trust/fleet-ca.crt\n');
    expect(existsSync(join(root, 'usr'))).toBe(false);

    const allowed = runCli([...args, '--allow-missing']);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stderr).toBe('fleetlet provision: warning: not in the image (--allow-missing): broker.tls.caFile: /etc/fleetlet/trust/fleet-ca.crt\n');
    expect(existsSync(join(root, 'usr/local/bin/fleetlet'))).toBe(true);
  });

  it('counts a CA already in the image, and refuses a token file the config names but nobody gave', () => {
    const [inputs, root] = [imageInputs(scratch()), arm64Image()];
    mkdirSync(join(root, 'etc/fleetlet/trust'), { recursive: true });
    writeFileSync(join(root, 'etc/fleetlet/trust/fleet-ca.crt'), 'ca');
    const result = runCli(['provision', '--root', root, '--binary', inputs.binary!, '--config', inputs.config!]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('not in the image:\n  k3s.tokenFile: /etc/fleetlet/k3s-token\n');
    expect(result.stderr).not.toContain('caFile');
  });

  it('copies --token-file and --file KEY=FILE to where the config points, 0600, and never prints them', () => {
    const dir = scratch();
    const config = `${IMAGE_CONFIG.replace('    caFile', '    keyFile: /etc/fleetlet/device.key\n    caFile')}`;
    const inputs = imageInputs(dir, config);
    writeFileSync(join(dir, 'device.key'), 'PRIVATE-KEY-SECRET\n');
    const root = arm64Image();
    const result = runCli([...cliArgs(root, inputs), '--file', `broker.tls.keyFile=${join(dir, 'device.key')}`]);
    expect(result.code, result.stderr).toBe(0);
    for (const [path, content] of [['etc/fleetlet/k3s-token', `${TOKEN}\n`], ['etc/fleetlet/device.key', 'PRIVATE-KEY-SECRET\n']] as const) {
      expect(readFileSync(join(root, path), 'utf8')).toBe(content);
      expect(mode(join(root, path))).toBe(0o600);
      expect(statSync(join(root, path)).uid).toBe(0);
    }
    expect(`${result.stdout}${result.stderr}`).not.toMatch(/agent-secret|PRIVATE-KEY-SECRET/);
    const unknown = runCli([...cliArgs(arm64Image(), inputs), '--file', `broker.tls.certFile=${join(dir, 'device.key')}`]);
    expect(unknown.code).toBe(64);
    expect(unknown.stderr).toContain('--file broker.tls.certFile: the config sets no broker.tls.certFile');
  });
});

describeArm64('fleetlet provision: zero-touch enrolment in the image', () => {
  const ENROL_TOKEN = `enrol-${'b'.repeat(40)}`;

  it('writes the bootstrap token (0600), the fleet CA and an enrolment drop-in, never a device certificate; doctor sees an image that enrols', () => {
    const dir = scratch();
    const inputs = imageInputs(dir);
    writeFileSync(join(dir, 'enrol-token'), `${ENROL_TOKEN}\n`, { mode: 0o600 });
    const root = arm64Image();
    const result = runCli([
      ...cliArgs(root, inputs),
      '--enrol-token-file', join(dir, 'enrol-token'), '--hub', 'https://hub.example.test', '--ca-file', join(dir, 'fleet-ca.crt'),
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(readFileSync(join(root, 'etc/fleetlet/enrol-token'), 'utf8')).toBe(`${ENROL_TOKEN}\n`);
    expect(mode(join(root, 'etc/fleetlet/enrol-token'))).toBe(0o600);
    expect(readFileSync(join(root, 'etc/fleetlet/config.d/50-enrolment.yaml'), 'utf8')).toContain(
      'enrolment:\n  hubUrl: https://hub.example.test\n  bootstrapTokenFile: /etc/fleetlet/enrol-token\n  caFile: /etc/fleetlet/trust/fleet-ca.crt\n',
    );
    expect(existsSync(join(root, 'etc/fleetlet/trust/fleet-ca.crt'))).toBe(true);
    // Nothing of a device: no state, no key, no certificate.
    expect(existsSync(join(root, 'var/lib/fleetlet'))).toBe(false);
    expect(`${result.stdout}${result.stderr}`).not.toContain(ENROL_TOKEN);
    const doctor = runCli(['doctor', '--root', root, '--json']);
    const results = JSON.parse(doctor.stdout) as { check: string; status: string; summary: string }[];
    expect(results).toContainEqual({ check: 'client-certificate', status: 'pass', summary: 'devices flashed from this image enrol at first boot with https://hub.example.test' });
  });

  it('needs --hub, --enrol-token-file and --ca-file together, and an https hub (exit 64, naming the flag)', () => {
    const dir = scratch();
    const inputs = imageInputs(dir);
    writeFileSync(join(dir, 'enrol-token'), `${ENROL_TOKEN}\n`, { mode: 0o600 });
    const base = cliArgs(arm64Image(), inputs);
    const noHub = runCli([...base, '--enrol-token-file', join(dir, 'enrol-token')]);
    expect(noHub.code).toBe(64);
    expect(noHub.stderr).toContain('--enrol-token-file needs --hub URL');
    const noCa = runCli([...base, '--enrol-token-file', join(dir, 'enrol-token'), '--hub', 'https://hub.example.test']);
    expect(noCa.code).toBe(64);
    expect(noCa.stderr).toContain('--hub needs --ca-file FILE');
    const plain = runCli([...base, '--enrol-token-file', join(dir, 'enrol-token'), '--hub', 'http://hub.example.test', '--ca-file', join(dir, 'fleet-ca.crt')]);
    expect(plain.code).toBe(64);
    expect(plain.stderr).toContain('--hub http://hub.example.test: expected an https:// URL');
  });
});

describeArm64('fleetlet provision: what was written is known', () => {
  it('--dry-run lists exactly the paths a real run writes, and writes nothing', () => {
    const inputs = imageInputs(scratch());
    const root = arm64Image();
    const before = snapshot(root);
    const dry = runCli([...cliArgs(root, inputs), '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(snapshot(root)).toEqual(before);
    const real = runCli(cliArgs(root, inputs));
    expect(real.code, real.stderr).toBe(0);
    const added = [...snapshot(root).keys()].filter((path) => !before.has(path)).sort();
    expect(written(dry.stdout, 'would write').sort()).toEqual(added);
    expect(written(real.stdout).sort()).toEqual(added);
    expect(added).toContain('/etc/fleetlet/provision-manifest.json');
  });

  it('writes a manifest that --verify accepts, and that fails after one file is changed', () => {
    const root = arm64Image();
    expect(runCli(cliArgs(root, imageInputs(scratch()))).code).toBe(0);
    const manifest = JSON.parse(readFileSync(join(root, 'etc/fleetlet/provision-manifest.json'), 'utf8')) as {
      fleetletVersion: string; files: { path: string; mode?: string; sha256?: string; link?: string }[];
    };
    expect(manifest.fleetletVersion).toBe(VERSION);
    expect(manifest.files.find((file) => file.path === '/etc/fleetlet/k3s-token')).toEqual({
      path: '/etc/fleetlet/k3s-token', mode: '0600', sha256: createHash('sha256').update(`${TOKEN}\n`).digest('hex'),
    });
    const ok = runCli(['provision', '--verify', '--root', root]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`${manifest.files.length} files match the manifest (fleetlet ${VERSION}`);

    writeFileSync(join(root, 'etc/fleetlet/config.yaml'), `${IMAGE_CONFIG}# edited\n`, { mode: 0o640 });
    const changed = runCli(['provision', '--verify', '--root', root]);
    expect(changed.code).toBe(1);
    expect(changed.stderr).toContain('/etc/fleetlet/config.yaml: content differs from the manifest (sha256)');
    expect(changed.stderr).not.toContain('k3s-token');
  });

  it('--verify names a mode that changed, a file removed, and an image that was never provisioned', () => {
    const root = arm64Image();
    expect(runCli(cliArgs(root, imageInputs(scratch()))).code).toBe(0);
    chmodSync(join(root, 'etc/fleetlet/k3s-token'), 0o644);
    rmSync(join(root, 'etc/fleetlet/trust/fleet-ca.crt'));
    const result = runCli(['provision', '--verify', '--root', root]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('/etc/fleetlet/k3s-token: mode 0644, the manifest says 0600');
    expect(result.stderr).toContain('/etc/fleetlet/trust/fleet-ca.crt: missing');
    const never = runCli(['provision', '--verify', '--root', arm64Image()]);
    expect(never.code).toBe(1);
    expect(never.stderr).toContain('provision-manifest.json is not in');
  });

  it('gives the same image, manifest included, when run twice', () => {
    const [inputs, root] = [imageInputs(scratch()), arm64Image()];
    expect(runCli(cliArgs(root, inputs)).code).toBe(0);
    const first = snapshot(root);
    expect(runCli(cliArgs(root, inputs)).code).toBe(0);
    expect(snapshot(root)).toEqual(first);
  });
});

describeArm64('fleetlet doctor --root on the image provision just wrote', () => {
  /** Runs doctor without blocking this process: the TLS endpoint it checks lives here and must keep answering. */
  function doctorAsync(root: string): Promise<{ code: number | null; stdout: string }> {
    const child = spawn(process.execPath, [FLEETLET_BUNDLE, 'doctor', '--root', root, '--json'], { env: { PATH: process.env.PATH! }, stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout })));
  }

  /** A TLS endpoint with a certificate of the fleet CA: the broker and the k3s server the image's config names. */
  async function fleetEndpoint(dir: string): Promise<{ ca: string; port: number; server: TlsServer }> {
    const ca = createCa(dir, 'fleet-ca');
    const pair = issueCert(ca, dir, 'broker', { server: true, altNames: ['IP:127.0.0.1'] });
    const server = createTlsServer({ cert: readFileSync(pair.cert), key: readFileSync(pair.key) }, (socket) => socket.end());
    server.on('tlsClientError', () => {});
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => void server.close());
    return { ca: ca.cert, port: (server.address() as { port: number }).port, server };
  }

  it('shows no FAIL about the image: its config, the files it names and its empty machine-id pass; kernel checks are skipped', async () => {
    const [dir, pki] = [scratch(), scratch()];
    const { ca, port } = await fleetEndpoint(pki);
    const config = `broker:\n  url: mqtts://127.0.0.1:${port}\n  tls:\n    caFile: /etc/fleetlet/trust/fleet-ca.crt\nk3s:\n  serverUrl: https://127.0.0.1:${port}\n  tokenFile: /etc/fleetlet/k3s-token\n`;
    const inputs = imageInputs(dir, config);
    const root = arm64Image();
    const provisioned = runCli(['provision', '--root', root, '--binary', inputs.binary!, '--config', inputs.config!, '--trust-anchor', ca, '--token-file', inputs.tokenFile]);
    expect(provisioned.code, provisioned.stderr).toBe(0);

    const doctor = await doctorAsync(root);
    const results = JSON.parse(doctor.stdout) as { check: string; status: string; summary: string }[];
    expect(results.filter((r) => r.status === 'fail')).toEqual([]);
    expect(doctor.code).toBe(0);
    const of = (check: string) => results.filter((r) => r.check === check);
    expect(of('config')[0]).toMatchObject({ status: 'pass', summary: `${join(root, 'etc/fleetlet/config.yaml')} valid` });
    expect(of('platform')[0]).toMatchObject({ status: 'pass', summary: 'image for linux arm64, Debian GNU/Linux 12 (bookworm)' });
    expect(of('node-name')).toContainEqual(expect.objectContaining({ status: 'pass', summary: expect.stringContaining('/etc/machine-id is empty') }));
    expect(of('k3s-token')[0]).toMatchObject({ status: 'pass', summary: expect.stringContaining('agent token') });
    expect(of('broker')[0]).toMatchObject({ status: 'pass', summary: `127.0.0.1:${port}: TLS verified with the image's CA; whether the broker accepts the device is checked on the device` });
    for (const check of ['cgroups', 'kernel-modules', 'netfilter', 'swap', 'disk', 'clock']) expect(of(check), check).toEqual([expect.objectContaining({ status: 'skip' })]);
  });

  it('fails an image whose /etc/machine-id is set: every device flashed from it would share it', async () => {
    const root = arm64Image();
    expect(runCli([...cliArgs(root, imageInputs(scratch())), '--dry-run']).code).toBe(0);
    writeFileSync(join(root, 'etc/machine-id'), '9e8d7c6b5a4f30211f2e3d4c5b6a7988\n');
    const doctor = runCli(['doctor', '--root', root, '--json']);
    const results = JSON.parse(doctor.stdout) as { check: string; status: string; summary: string }[];
    expect(results).toContainEqual(expect.objectContaining({ check: 'node-name', status: 'fail', summary: expect.stringContaining('every device flashed from it would share it') }));
    expect(doctor.code).toBe(1);
  });
});
