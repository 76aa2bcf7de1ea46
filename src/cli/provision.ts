import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parse } from 'yaml';
import { ConfigSchema } from '../config/schema.js';
import { installFromFolder } from '../k3s/airgap.js';
import { installFromBundle } from '../k3s/bundle.js';
import type { K3sArch } from '../k3s/release.js';
import { EMBEDDED_SQLITE_ADDON } from '../lib/embedded-addon.js';
import { ConfigError, FleetletError } from '../lib/errors.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { SYSTEMD_UNIT, UNIT_NAME } from './provision-unit.js';

export class ProvisionError extends FleetletError {
  readonly severity = 'fatal';
}

export interface ProvisionOptions {
  /** The root filesystem to write into: a mounted image, or "/" when installing on the running device. */
  root: string;
  /** The fleetlet binary to install; the running single binary when unset. */
  binary?: string;
  config?: string;
  trustAnchors: string[];
  /** A k3s release for the image's arch (binary, sha256sum-<arch>.txt, images): a folder, or a plain tar of one. */
  airgap?: string;
  enable: boolean;
  /** Installing on a device that already has its identity (install.sh), rather than into a golden image. */
  allowIdentity: boolean;
}

export interface ProvisionReport {
  written: string[];
}

export const BINARY_PATH = '/usr/local/bin/fleetlet';
export const CONFIG_PATH = '/etc/fleetlet/config.yaml';
export const TRUST_DIR = '/etc/fleetlet/trust';
export const UNIT_PATH = `/etc/systemd/system/${UNIT_NAME}`;
export const ENABLE_LINK = `/etc/systemd/system/multi-user.target.wants/${UNIT_NAME}`;

/**
 * Writes fleetlet into a root filesystem: binary, config, trust anchors, unit and its enable link, and optionally
 * an air-gap k3s. It never writes a device identity: every device makes its own on first boot, so that devices
 * flashed from one image do not share one. An identity already in the image is refused (see identityIn).
 */
export async function provision(options: ProvisionOptions): Promise<ProvisionReport> {
  const root = options.root;
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new ProvisionError(`root ${root} is not a directory`);
  if (!options.allowIdentity) {
    const found = identityIn(root);
    if (found.length > 0) {
      throw new ProvisionError(
        `${root} already holds a device identity, which every device flashed from it would share:\n  ${found.join('\n  ')}\n` +
          'remove these files from the image (or pass --allow-identity when installing on the device itself)',
      );
    }
  }
  const written: string[] = [];
  const binary = options.binary ?? (EMBEDDED_SQLITE_ADDON ? process.execPath : undefined);
  if (!binary) throw new ProvisionError('give --binary: the fleetlet binary for the device (e.g. fleetlet-linux-arm64)');
  const config = options.config ? readImageConfig(options.config) : undefined;

  installFile(binary, join(root, BINARY_PATH), 0o755);
  written.push(BINARY_PATH);
  if (options.config) {
    installFile(options.config, join(root, CONFIG_PATH), 0o640);
    written.push(CONFIG_PATH);
  }
  for (const anchor of options.trustAnchors) {
    const target = join(TRUST_DIR, basename(anchor));
    installFile(anchor, join(root, target), 0o644);
    written.push(target);
  }
  writeAtomically(join(root, UNIT_PATH), SYSTEMD_UNIT, 0o644);
  written.push(UNIT_PATH);
  if (options.enable) {
    const link = join(root, ENABLE_LINK);
    mkdirSync(dirname(link), { recursive: true });
    rmSync(link, { force: true });
    // What `systemctl enable` creates; absolute, so it resolves inside the booted device.
    symlinkSync(UNIT_PATH, link);
    written.push(ENABLE_LINK);
  }
  if (options.airgap) {
    const k3s = config?.k3s ?? ConfigSchema.shape.k3s.parse(undefined);
    const install = statSync(options.airgap).isDirectory() ? installFromFolder : installFromBundle;
    const result = await install(options.airgap, {
      binaryPath: join(root, k3s.binaryPath),
      dataDir: join(root, k3s.dataDir),
      arch: k3sArchOf(binary),
      checkDiskSpace: async () => {},
    });
    written.push(k3s.binaryPath, ...result.images.map((image) => image.slice(root.length)));
  }
  return { written };
}

/** Files that make a device itself: cloned into many devices, they make the server reject all but one. */
export function identityIn(root: string): string[] {
  const found: string[] = [];
  for (const path of ['/etc/rancher/node/password', '/etc/rancher/node/id']) {
    if (existsSync(join(root, path))) found.push(path);
  }
  const stateDir = join(root, '/var/lib/fleetlet');
  if (existsSync(stateDir) && readdirSync(stateDir).length > 0) found.push('/var/lib/fleetlet/ (not empty)');
  const machineId = join(root, '/etc/machine-id');
  if (existsSync(machineId) && readFileSync(machineId, 'utf8').trim() !== '') found.push('/etc/machine-id (not empty)');
  return found;
}

/** Validates the config against the schema; secret files are not read, they live in the image, not here. */
function readImageConfig(file: string) {
  const result = ConfigSchema.safeParse(parse(readFileSync(file, 'utf8')) ?? {});
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((issue) => ({ path: issue.path.join('.'), source: file, message: issue.message })));
  }
  if (result.data.device.id) {
    throw new ConfigError([{ path: 'device.id', source: file, message: 'an image must not name the device: each device derives its own id' }]);
  }
  return result.data;
}

function installFile(source: string, target: string, mode: number): void {
  mkdirSync(dirname(target), { recursive: true });
  const partial = `${target}.partial-${process.pid}`;
  copyFileSync(source, partial);
  chmodSync(partial, mode);
  renameSync(partial, target);
}

function writeAtomically(target: string, content: string, mode: number): void {
  mkdirSync(dirname(target), { recursive: true });
  const partial = `${target}.partial-${process.pid}`;
  writeFileSync(partial, content, { mode });
  renameSync(partial, target);
}

const K3S_ARCH_BY_ELF: Record<number, K3sArch> = { 62: 'amd64', 183: 'arm64', 40: 'arm' };

/** The image's arch is the arch of the fleetlet binary going into it, not the arch of this machine. */
function k3sArchOf(binary: string): K3sArch {
  const header = Buffer.alloc(20);
  const fd = openSync(binary, 'r');
  try {
    readSync(fd, header, 0, 20, 0);
  } finally {
    closeSync(fd);
  }
  const arch = header.readUInt32BE(0) === 0x7f454c46 ? K3S_ARCH_BY_ELF[header.readUInt16LE(18)] : undefined;
  if (!arch) throw new ProvisionError(`${binary} is not a linux amd64, arm64 or armv7 executable`);
  return arch;
}

/** `fleetlet provision`: prints what was written; a refused image or config is a usage of the wrong input. */
type CommandOutput = { stdout: (text: string) => void; stderr: (text: string) => void };

export async function runProvision(options: ProvisionOptions, io: CommandOutput): Promise<number> {
  try {
    const report = await provision(options);
    io.stdout(`${report.written.map((path) => `wrote ${path}`).join('\n')}\n`);
    return EXIT.OK;
  } catch (err) {
    if (!(err instanceof FleetletError)) throw err;
    io.stderr(`fleetlet provision: ${err.message}\n`);
    return exitCodeFor(err);
  }
}
