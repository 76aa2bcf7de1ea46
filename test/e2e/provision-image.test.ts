import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';
import { REQUIRE_BINARIES, builtBinaries } from './binaries.js';

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
// provision runs the arm64 binary's --version under qemu-user: seconds, not milliseconds.
const SLOW = 180_000;
const arm64 = builtBinaries().find((binary) => binary.arch === 'arm64')!;
const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const hasQemu = spawnSync('qemu-aarch64-static', ['--version']).error === undefined;

describe.skipIf((!arm64.present || !hasQemu) && !REQUIRE_BINARIES)('provision a golden arm64 image with the built binary', { timeout: SLOW }, () => {
  const { dir, cleanup } = tempDir('fleetlet-e2e-provision-');
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startMosquitto();
  });
  afterAll(async () => {
    await broker?.close();
    cleanup();
  });

  it('checks the binary under qemu, writes the image with its manifest, and the image verifies and passes its doctor', () => {
    const root = join(dir, 'rootfs');
    mkdirSync(join(root, 'etc'), { recursive: true });
    mkdirSync(join(root, 'lib'), { recursive: true });
    writeFileSync(join(root, 'etc/os-release'), 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n');
    writeFileSync(join(root, 'etc/machine-id'), '');
    writeFileSync(join(root, 'lib/ld-linux-aarch64.so.1'), '');
    const config = join(dir, 'config.yaml');
    // A real broker to reach (plain mqtt, which doctor warns about) and no k3s server: nothing outside the image fails.
    writeFileSync(config, `broker:\n  url: ${broker.url}\n  allowPlaintext: true\nk3s:\n  enabled: false\n`);

    const provisioned = runCli(['provision', '--root', root, '--binary', arm64.path, '--config', config], {}, SLOW);
    expect(provisioned.stderr).toBe('');
    expect(provisioned.code).toBe(0);
    // Compared by hash: a deep equal of two 90 MB buffers takes minutes.
    expect(sha256(join(root, 'usr/local/bin/fleetlet'))).toBe(sha256(arm64.path));
    const manifest = JSON.parse(readFileSync(join(root, 'etc/fleetlet/provision-manifest.json'), 'utf8')) as { fleetletVersion: string };
    expect(manifest.fleetletVersion).toBe(VERSION);

    expect(runCli(['provision', '--verify', '--root', root], {}, SLOW)).toMatchObject({ code: 0 });
    const doctor = runCli(['doctor', '--root', root, '--json'], {}, SLOW);
    const results = JSON.parse(doctor.stdout) as { check: string; status: string }[];
    expect(results.filter((r) => r.status === 'fail')).toEqual([]);
    expect(doctor.code).toBe(0);
  });
});
