import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { FLEETLET_BUNDLE, REPO_ROOT, tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { bundleLauncher } from '../helpers/elf-programs.js';

const INSTALL_SH = join(REPO_ROOT, 'packaging/install.sh');
/** An agent token, the kind a device gets (the server's /var/lib/rancher/k3s/server/agent-token). */
const TOKEN = `K10${'5e'.repeat(32)}::node:agent-secret-0123456789abcdef`;
const SERVER_TOKEN = `K10${'5e'.repeat(32)}::server:cluster-admin-secret-0123456789`;
// CI installs shellcheck and strace (and has script, from util-linux); elsewhere the checks that need them are skipped.
const REQUIRE_TOOLS = process.env.TEST_REQUIRE_INSTALL_TOOLS === '1';
const has = (tool: string) => spawnSync(tool, ['--version']).error === undefined;

function scratch(): string {
  const { dir, cleanup } = tempDir('fleetlet-install-');
  onTestFinished(cleanup);
  return dir;
}

/** The binary install.sh installs here: an executable of this machine running the bundle, which the single binary embeds. */
const { dir: inputs, cleanup: cleanupInputs } = tempDir('fleetlet-install-inputs-');
const binary = bundleLauncher(inputs, 'fleetlet-linux-x64');
const ca = join(inputs, 'fleet-ca.crt');
writeFileSync(ca, '-----BEGIN CERTIFICATE-----\n(test)\n-----END CERTIFICATE-----\n');

let server: Server;
let base: string;
let closedPort: number;
beforeAll(async () => {
  closedPort = await freePort();
  const gz = gzipSync(readFileSync(binary));
  const xz = execFileSync('xz', ['-9', '--stdout', binary]);
  server = createServer((req, res) => {
    if (req.url === '/fleetlet-linux-x64.gz') res.end(gz);
    else if (req.url === '/fleetlet-linux-x64.xz') res.end(xz);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => {
  server.close();
  cleanupInputs();
});

/** Runs install.sh asynchronously: the download server lives in this process and must keep answering. */
function install(args: string[], env: Record<string, string> = {}, wrap: string[] = []): Promise<{ code: number | null; output: string }> {
  const [command, ...prefix] = wrap.length > 0 ? [...wrap, 'sh'] : ['sh'];
  const child = spawn(command!, [...prefix, INSTALL_SH, ...args], {
    env: { PATH: process.env.PATH!, HOME: inputs, FLEETLET_ARCH: 'x86_64', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, output })));
}

const deviceArgs = (root: string) => [
  '--broker', `mqtts://127.0.0.1:${closedPort}`,
  '--ca', ca,
  '--server', `https://127.0.0.1:${closedPort}`,
  '--name', 'Kitchen Pi',
  '--root', root,
];
const mode = (file: string) => statSync(file).mode & 0o777;

/** A PATH with every program of this one except xz and its aliases: a device without the xz-utils package. */
function pathWithoutXz(): string {
  const bin = join(scratch(), 'bin');
  mkdirSync(bin);
  const linked = new Set(['xz', 'unxz', 'xzcat']);
  for (const dir of process.env.PATH!.split(':')) {
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names.filter((n) => !linked.has(n))) {
      linked.add(name);
      symlinkSync(join(dir, name), join(bin, name));
    }
  }
  return bin;
}

describe('packaging/install.sh', () => {
  it('is POSIX sh and passes shellcheck', () => {
    expect(spawnSync('sh', ['-n', INSTALL_SH]).status).toBe(0);
    if (!has('shellcheck') && !REQUIRE_TOOLS) return;
    const check = spawnSync('shellcheck', ['--shell=sh', INSTALL_SH], { encoding: 'utf8' });
    expect(check.stdout).toBe('');
    expect(check.status).toBe(0);
  });

  it('installs from a local file: binary, config from flags, token file 0600, CA, unit; then runs doctor', async () => {
    const root = scratch();
    const result = await install(['--binary', binary, ...deviceArgs(root)], { K3S_TOKEN: TOKEN });
    expect(result.code, result.output).toBe(0);
    expect(mode(join(root, 'usr/local/bin/fleetlet'))).toBe(0o755);
    expect(readFileSync(join(root, 'etc/fleetlet/k3s-token'), 'utf8')).toBe(`${TOKEN}\n`);
    expect(mode(join(root, 'etc/fleetlet/k3s-token'))).toBe(0o600);
    expect(readFileSync(join(root, 'etc/fleetlet/trust/fleet-ca.crt'), 'utf8')).toBe(readFileSync(ca, 'utf8'));
    expect(readlinkSync(join(root, 'etc/systemd/system/multi-user.target.wants/fleetlet.service'))).toBe('/etc/systemd/system/fleetlet.service');
    const config = readFileSync(join(root, 'etc/fleetlet/config.yaml'), 'utf8');
    expect(config).toContain(`url: "mqtts://127.0.0.1:${closedPort}"`);
    expect(config).toContain('caFile: "/etc/fleetlet/trust/fleet-ca.crt"');
    expect(config).toContain('tokenFile: /etc/fleetlet/k3s-token');
    expect(config).toContain('name: "Kitchen Pi"');
    expect(result.output).toContain('checking this device:');
    // Only the unreachable broker and server fail: the root's own files, its empty machine-id and this machine's
    // kernel are no failures of the installed root.
    expect(result.output.match(/^FAIL {2}\S+/gm)).toEqual(['FAIL  broker', 'FAIL  k3s-server']);
    expect(result.output).toMatch(/PASS {2}config/);
    expect(result.output).not.toContain(TOKEN);

    // The written config is valid once its files are where the device will have them.
    const check = spawnSync(process.execPath, [FLEETLET_BUNDLE, 'config', 'check', join(root, 'etc/fleetlet/config.yaml'),
      '--set', `k3s.tokenFile=${join(root, 'etc/fleetlet/k3s-token')}`, '--set', `broker.tls.caFile=${ca}`],
      { encoding: 'utf8', env: { PATH: process.env.PATH! } });
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
  });

  it('keeps its own FLEETLET_* inputs away from fleetlet, which would refuse them as unknown config', async () => {
    const root = scratch();
    const result = await install(['--binary', binary, '--broker', `mqtts://127.0.0.1:${closedPort}`, '--root', root], {
      FLEETLET_DEVICE_NAME: 'From Env',
    });
    expect(result.code, result.output).toBe(0);
    expect(readFileSync(join(root, 'etc/fleetlet/config.yaml'), 'utf8')).toContain('name: "From Env"');
    expect(result.output).toMatch(/PASS {2}config/);
    expect(result.output).toContain(`TLS with 127.0.0.1:${closedPort} failed: ECONNREFUSED`);
  });

  it('never puts the token on a command line of any process it starts', async () => {
    if (!has('strace') && !REQUIRE_TOOLS) return;
    const root = scratch();
    const trace = join(scratch(), 'execve.log');
    const result = await install(['--binary', binary, ...deviceArgs(root)], { K3S_TOKEN: TOKEN }, ['strace', '-f', '-s', '65536', '-e', 'trace=execve', '-o', trace]);
    expect(result.code, result.output).toBe(0);
    const calls = readFileSync(trace, 'utf8');
    expect(calls).toContain('provision'); // the trace did see the processes
    expect(calls).not.toContain(TOKEN);
  });

  it('with --enrol-token-file and --hub: the token 0600 and an enrolment drop-in, never on a command line or in its output', async () => {
    const root = scratch();
    const enrolToken = `enrol-${'c'.repeat(40)}`;
    const tokenFile = join(scratch(), 'enrol-token');
    writeFileSync(tokenFile, `${enrolToken}\n`, { mode: 0o600 });
    const args = ['--binary', binary, '--broker', `mqtts://127.0.0.1:${closedPort}`, '--ca-file', ca, '--hub', 'https://hub.example.test', '--enrol-token-file', tokenFile, '--root', root];
    const traced = has('strace') || REQUIRE_TOOLS;
    const trace = join(scratch(), 'execve.log');
    const result = await install(args, {}, traced ? ['strace', '-f', '-s', '65536', '-e', 'trace=execve', '-o', trace] : []);
    expect(result.code, result.output).toBe(0);
    expect(readFileSync(join(root, 'etc/fleetlet/enrol-token'), 'utf8')).toBe(`${enrolToken}\n`);
    expect(mode(join(root, 'etc/fleetlet/enrol-token'))).toBe(0o600);
    expect(readFileSync(join(root, 'etc/fleetlet/config.d/50-enrolment.yaml'), 'utf8')).toContain('hubUrl: https://hub.example.test');
    expect(readFileSync(join(root, 'etc/fleetlet/config.yaml'), 'utf8')).toContain('caFile: "/etc/fleetlet/trust/fleet-ca.crt"');
    // The root here is checked as an image: it holds the token and enrols when it first runs.
    expect(result.output).toMatch(/PASS {2}client-certificate devices flashed from this image enrol at first boot with https:\/\/hub.example.test/);
    expect(result.output).not.toMatch(/PASS {2}broker/);
    expect(result.output).not.toContain(enrolToken);
    if (traced) {
      const calls = readFileSync(trace, 'utf8');
      expect(calls).toContain('--enrol-token-file');
      expect(calls).not.toContain(enrolToken);
    }
  });

  it('refuses --hub without a token file or a CA, and a hub over plain http', async () => {
    const tokenFile = join(scratch(), 'enrol-token');
    writeFileSync(tokenFile, 'token\n', { mode: 0o600 });
    const broker = ['--binary', binary, '--broker', `mqtts://127.0.0.1:${closedPort}`, '--root', scratch()];
    const noToken = await install([...broker, '--ca-file', ca, '--hub', 'https://hub.example.test']);
    expect(noToken.code).toBe(1);
    expect(noToken.output).toContain('--hub needs --enrol-token-file FILE');
    const noCa = await install([...broker, '--hub', 'https://hub.example.test', '--enrol-token-file', tokenFile]);
    expect(noCa.code).toBe(1);
    expect(noCa.output).toContain('enrolment needs --ca-file FILE');
    const plain = await install([...broker, '--ca-file', ca, '--hub', 'http://hub.example.test', '--enrol-token-file', tokenFile]);
    expect(plain.code).toBe(1);
    expect(plain.output).toContain('--hub must be an https:// URL');
  });

  it('downloads from a URL with %ARCH%, verifies the sha256, and refuses a mismatch', async () => {
    const url = `${base}/fleetlet-linux-%ARCH%.gz`;
    const sha = createHash('sha256').update(gzipSync(readFileSync(binary))).digest('hex');
    const good = scratch();
    const ok = await install(['--url', url, '--sha256', sha, ...deviceArgs(good)], { K3S_TOKEN: TOKEN });
    expect(ok.code, ok.output).toBe(0);
    expect(readFileSync(join(good, 'usr/local/bin/fleetlet'), 'utf8')).toBe(readFileSync(binary, 'utf8'));

    const bad = scratch();
    const refused = await install(['--url', url, '--sha256', '0'.repeat(64), ...deviceArgs(bad)], { K3S_TOKEN: TOKEN });
    expect(refused.code).toBe(1);
    expect(refused.output).toContain('does not match');
    expect(existsSync(join(bad, 'usr'))).toBe(false);
  });

  it('unpacks an .xz release, the format releases ship in', async () => {
    const url = `${base}/fleetlet-linux-%ARCH%.xz`;
    const sha = createHash('sha256').update(execFileSync('xz', ['-9', '--stdout', binary])).digest('hex');
    const root = scratch();
    const ok = await install(['--url', url, '--sha256', sha, ...deviceArgs(root)], { K3S_TOKEN: TOKEN });
    expect(ok.code, ok.output).toBe(0);
    expect(readFileSync(join(root, 'usr/local/bin/fleetlet'), 'utf8')).toBe(readFileSync(binary, 'utf8'));
  });

  it('on a device without xz, takes the .gz beside an .xz URL, verified with --gz-sha256', async () => {
    const url = `${base}/fleetlet-linux-%ARCH%.xz`;
    const xzSha = createHash('sha256').update(execFileSync('xz', ['-9', '--stdout', binary])).digest('hex');
    const gzSha = createHash('sha256').update(gzipSync(readFileSync(binary))).digest('hex');
    const PATH = pathWithoutXz();
    expect(spawnSync('sh', ['-c', 'command -v xz'], { env: { PATH } }).status).not.toBe(0);

    const root = scratch();
    const ok = await install(['--url', url, '--sha256', xzSha, '--gz-sha256', gzSha, ...deviceArgs(root)], { K3S_TOKEN: TOKEN, PATH });
    expect(ok.code, ok.output).toBe(0);
    expect(ok.output).toContain(`downloading ${base}/fleetlet-linux-x64.gz`);
    expect(readFileSync(join(root, 'usr/local/bin/fleetlet'), 'utf8')).toBe(readFileSync(binary, 'utf8'));

    // The .gz is checked against its own hash, not the .xz's.
    const bad = scratch();
    const mismatch = await install(['--url', url, '--sha256', xzSha, '--gz-sha256', xzSha, ...deviceArgs(bad)], { K3S_TOKEN: TOKEN, PATH });
    expect(mismatch.code).toBe(1);
    expect(mismatch.output).toContain('does not match');
    expect(existsSync(join(bad, 'usr'))).toBe(false);

    // With xz installed the .xz is what is downloaded, whatever --gz-sha256 says.
    const withXz = await install(['--url', url, '--sha256', xzSha, '--gz-sha256', '0'.repeat(64), ...deviceArgs(scratch())], { K3S_TOKEN: TOKEN });
    expect(withXz.code, withXz.output).toBe(0);
    expect(withXz.output).toContain(`downloading ${base}/fleetlet-linux-x64.xz`);
  });

  it('on a device without xz and no --gz-sha256, refuses an .xz URL saying what to do, before downloading', async () => {
    const root = scratch();
    const sha = createHash('sha256').update(execFileSync('xz', ['-9', '--stdout', binary])).digest('hex');
    const refused = await install(['--url', `${base}/fleetlet-linux-%ARCH%.xz`, '--sha256', sha, ...deviceArgs(root)], {
      K3S_TOKEN: TOKEN,
      PATH: pathWithoutXz(),
    });
    expect(refused.code).toBe(1);
    expect(refused.output).toContain('apt-get install xz-utils, or give --gz-sha256');
    expect(refused.output).not.toContain('downloading');
    expect(existsSync(join(root, 'usr'))).toBe(false);
  });

  it('refuses a token given as an argument, and a k3s server without a token', async () => {
    const root = scratch();
    expect((await install(['--binary', binary, '--token', TOKEN, ...deviceArgs(root)])).output).toContain('the token is never an argument');
    const missing = await install(['--binary', binary, ...deviceArgs(root)]);
    expect(missing.code).toBe(1);
    expect(missing.output).toContain('k3s needs a join token');
  });

  it('refuses a --sha256 that is not exactly 64 hex characters, before downloading anything', async () => {
    const url = `${base}/fleetlet-linux-%ARCH%.gz`;
    const sha = createHash('sha256').update(gzipSync(readFileSync(binary))).digest('hex');
    for (const bad of [sha.slice(1), `${sha}0`, `${sha.slice(2)}zz`, `${sha}  /etc/passwd\n${sha}`, `-${sha.slice(1)}`]) {
      const root = scratch();
      const refused = await install(['--url', url, '--sha256', bad, ...deviceArgs(root)], { K3S_TOKEN: TOKEN });
      expect(refused.code, bad).toBe(1);
      expect(refused.output).toContain('--sha256 must be 64 hex characters');
      const refusedGz = await install(['--url', url, '--sha256', sha, '--gz-sha256', bad, ...deviceArgs(root)], { K3S_TOKEN: TOKEN });
      expect(refusedGz.code, bad).toBe(1);
      expect(refusedGz.output).toContain('--gz-sha256 must be 64 hex characters');
      expect(refused.output).not.toContain('downloading');
      expect(existsSync(join(root, 'usr'))).toBe(false);
    }
    const upper = await install(['--url', url, '--sha256', sha.toUpperCase(), ...deviceArgs(scratch())], { K3S_TOKEN: TOKEN });
    expect(upper.code, upper.output).toBe(0);
  });

  it('reads the token from --token-file into a 0600 file, and never prints it', async () => {
    const root = scratch();
    const tokenFile = join(scratch(), 'agent-token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const result = await install(['--binary', binary, '--token-file', tokenFile, ...deviceArgs(root)]);
    expect(result.code, result.output).toBe(0);
    expect(readFileSync(join(root, 'etc/fleetlet/k3s-token'), 'utf8')).toBe(`${TOKEN}\n`);
    expect(mode(join(root, 'etc/fleetlet/k3s-token'))).toBe(0o600);
    expect(result.output).not.toContain('agent-secret');
    const missing = await install(['--binary', binary, '--token-file', join(root, 'absent'), ...deviceArgs(scratch())]);
    expect(missing.code).toBe(1);
    expect(missing.output).toContain('cannot read the token file');
  });

  it('asks for the token on a terminal without echoing it, and writes it 0600', async () => {
    if (!has('script') && !REQUIRE_TOOLS) return;
    const root = scratch();
    const command = ['sh', INSTALL_SH, '--binary', binary, ...deviceArgs(root)].map((arg) => `'${arg.replaceAll("'", "'\\''")}'`).join(' ');
    // script(1) gives install.sh a real terminal; what the terminal would show is what script prints.
    const child = spawn('script', ['-qec', command, '/dev/null'], {
      env: { PATH: process.env.PATH!, HOME: inputs, SHELL: '/bin/sh', FLEETLET_ARCH: 'x86_64' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let screen = '';
    let typed = false;
    const onOutput = (chunk: Buffer) => {
      screen += chunk.toString();
      if (!typed && screen.includes('(typing is not shown): ')) {
        typed = true;
        child.stdin.write(`${TOKEN}\n`);
      }
    };
    child.stdout.on('data', onOutput);
    child.stderr.on('data', onOutput);
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    expect(screen).toContain(`k3s agent token for https://127.0.0.1:${closedPort} (typing is not shown): `);
    expect(code, screen).toBe(0);
    expect(readFileSync(join(root, 'etc/fleetlet/k3s-token'), 'utf8')).toBe(`${TOKEN}\n`);
    expect(mode(join(root, 'etc/fleetlet/k3s-token'))).toBe(0o600);
    expect(screen).not.toContain('agent-secret');
  });

  it('warns when given the k3s server token, without printing it', async () => {
    const root = scratch();
    const result = await install(['--binary', binary, ...deviceArgs(root)], { K3S_TOKEN: SERVER_TOKEN });
    expect(result.code, result.output).toBe(0);
    expect(result.output).toContain('install.sh: warning: this is the k3s SERVER token');
    expect(result.output).not.toContain('cluster-admin-secret');
    const agent = await install(['--binary', binary, ...deviceArgs(scratch())], { K3S_TOKEN: TOKEN });
    expect(agent.output).not.toContain('SERVER token');
  });

  it('maps the machine to a binary arch and refuses armv6', async () => {
    const root = scratch();
    const url = `${base}/fleetlet-linux-%ARCH%.gz`;
    const arm = await install(['--url', url, '--sha256', '0'.repeat(64), ...deviceArgs(root)], { K3S_TOKEN: TOKEN, FLEETLET_ARCH: 'armv7l' });
    expect(arm.output).toContain(`${base}/fleetlet-linux-armv7.gz`);
    expect((await install(['--binary', binary, ...deviceArgs(root)], { K3S_TOKEN: TOKEN, FLEETLET_ARCH: 'armv6l' })).output).toContain('armv6');
  });
});
