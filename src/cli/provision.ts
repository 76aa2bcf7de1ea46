import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ConfigSchema } from '../config/schema.js';
import { installFromFolder } from '../k3s/airgap.js';
import { installFromBundle } from '../k3s/bundle.js';
import { EMBEDDED_SQLITE_ADDON } from '../lib/embedded-addon.js';
import { FleetletError, UsageError } from '../lib/errors.js';
import { writeFileAtomic } from '../lib/files.js';
import { FLEETLET_VERSION } from '../lib/version.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import type { ProvisionCliOptions } from './program.js';
import { ARCHES, checkBinary, imageArch } from './provision-binary.js';
import { describeFiles, verifyManifest, writeManifest } from './provision-manifest.js';
import { airgapPaths, MANIFEST_PATH, missingFiles, planWrites, type Plan, type PlannedFile } from './provision-plan.js';
import { enrolmentInputs, planEnrolment, type EnrolmentInputs } from './provision-enrolment.js';

export { BINARY_PATH, CONFIG_PATH, ENABLE_LINK, MANIFEST_PATH, TRUST_DIR, UNIT_PATH } from './provision-plan.js';

export class ProvisionError extends FleetletError {
  readonly severity = 'fatal';
}

export interface ProvisionOptions {
  /** The root filesystem to write into: a mounted image, or "/" when installing on the running device. */
  root: string;
  /** The fleetlet binary to install; the running single binary when unset. */
  binary?: string;
  /** The image's architecture when its loader does not tell (x64, arm64, armv7). */
  arch?: string;
  config?: string;
  trustAnchors: string[];
  /** Files the config names, copied into the image: config key (k3s.tokenFile...) -> file. */
  files?: Record<string, string>;
  /** A k3s release for the image's arch (binary, sha256sum-<arch>.txt, images): a folder, or a plain tar of one. */
  airgap?: string;
  enable: boolean;
  /** Installing on a device that already has its identity (install.sh), rather than into a golden image. */
  allowIdentity: boolean;
  /** Files the config names may be missing from the image (the device gets them later); they are warned about. */
  allowMissing?: boolean;
  /** Check everything and list what would be written, without writing. */
  dryRun?: boolean;
  /** The time recorded in the manifest. */
  now?: () => Date;
  /** The bootstrap token, hub and fleet CA for zero-touch enrolment at first boot. */
  enrolment?: EnrolmentInputs;
}

export interface ProvisionReport {
  written: string[];
  warnings: string[];
  /** The version the installed binary reported; undefined when it could not be run here. */
  version?: string;
}

/**
 * Writes fleetlet into a root filesystem: binary, config, the files it names, trust anchors, unit and its enable
 * link, optionally an air-gap k3s, and a manifest of all of it. Everything is checked before the first write: the
 * binary runs as fleetlet for the image's arch, and every file the config names is there. It never writes a device
 * identity: every device makes its own on first boot, so that devices flashed from one image do not share one.
 */
export async function provision(options: ProvisionOptions): Promise<ProvisionReport> {
  const root = options.root;
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new UsageError(`--root ${root}: not a directory`);
  if (!options.allowIdentity) refuseIdentity(root);
  const binary = options.binary ?? (EMBEDDED_SQLITE_ADDON ? process.execPath : undefined);
  if (!binary) throw new UsageError('--binary: give the fleetlet binary for the device (e.g. fleetlet-linux-arm64)');
  const arch = imageArch(root, options.arch);
  const enrolment = options.enrolment ? planEnrolment(options.enrolment) : undefined;
  const trustAnchors = [...options.trustAnchors];
  if (enrolment && !trustAnchors.some((anchor) => basename(anchor) === basename(enrolment.trustAnchor))) trustAnchors.push(enrolment.trustAnchor);
  const plan = planWrites({ root, binary, config: options.config, trustAnchors, files: options.files ?? {}, enable: options.enable });
  plan.files.push(...(enrolment?.files ?? []));
  const checked = checkBinary(binary, arch, root);
  const warnings = checked.notRun ? [checked.notRun] : [];

  const missing = missingFiles(root, plan).map(({ key, path }) => `${key}: ${path}`);
  if (missing.length > 0 && !options.allowMissing) {
    throw new ProvisionError(
      `the config names files that are not in the image:\n  ${missing.join('\n  ')}\n` +
        'copy them into the image, give them with --file KEY=FILE (--token-file FILE for k3s.tokenFile), ' +
        'or pass --allow-missing if the device gets them another way',
    );
  }
  warnings.push(...missing.map((entry) => `not in the image (--allow-missing): ${entry}`));
  if (plan.files.some((file) => file.secret) && process.getuid?.() !== 0) {
    warnings.push(`secret files are written 0600 but owned by uid ${process.getuid?.()}, not root: run provision as root`);
  }

  const k3s = plan.config?.k3s ?? ConfigSchema.shape.k3s.parse(undefined);
  const k3sArch = ARCHES[arch].k3s;
  const airgap = options.airgap ? airgapPaths(options.airgap, k3sArch, k3s) : [];
  const paths = [...plan.files.map((file) => file.path), ...(plan.link ? [plan.link.path] : []), ...airgap, MANIFEST_PATH];
  if (options.dryRun) return { written: paths, warnings, ...(checked.version ? { version: checked.version } : {}) };

  for (const file of plan.files) await writePlanned(root, file);
  if (plan.link) placeLink(root, plan.link);
  if (options.airgap) {
    const install = statSync(options.airgap).isDirectory() ? installFromFolder : installFromBundle;
    await install(options.airgap, { binaryPath: join(root, k3s.binaryPath), dataDir: join(root, k3s.dataDir), arch: k3sArch, checkDiskSpace: async () => {} });
  }
  await writeManifest(root, {
    fleetletVersion: checked.version ?? null,
    provisionedWith: FLEETLET_VERSION,
    writtenAt: (options.now ?? (() => new Date()))().toISOString(),
    files: await describeFiles(root, paths.slice(0, -1).map((path) => ({ path, link: path === plan.link?.path }))),
  });
  return { written: paths, warnings, ...(checked.version ? { version: checked.version } : {}) };
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

function refuseIdentity(root: string): void {
  const found = identityIn(root);
  if (found.length === 0) return;
  throw new ProvisionError(
    `${root} already holds a device identity, which every device flashed from it would share:\n  ${found.join('\n  ')}\n` +
      'remove these files from the image (or pass --allow-identity when installing on the device itself)',
  );
}

async function writePlanned(root: string, file: PlannedFile): Promise<void> {
  const target = join(root, file.path);
  mkdirSync(dirname(target), { recursive: true });
  const data = 'text' in file.source ? file.source.text : readFileSync(file.source.file);
  await writeFileAtomic(target, data, { mode: file.mode });
}

function placeLink(root: string, link: NonNullable<Plan['link']>): void {
  const path = join(root, link.path);
  mkdirSync(dirname(path), { recursive: true });
  rmSync(path, { force: true });
  symlinkSync(link.target, path);
}

type CommandOutput = { stdout: (text: string) => void; stderr: (text: string) => void };

/** `fleetlet provision`: prints what was (or, with --dry-run, would be) written; secrets are named, never shown. */
export async function runProvision(options: ProvisionOptions, io: CommandOutput): Promise<number> {
  try {
    const report = await provision(options);
    for (const warning of report.warnings) io.stderr(`fleetlet provision: warning: ${warning}\n`);
    const verb = options.dryRun ? 'would write' : 'wrote';
    io.stdout(`${report.written.map((path) => `${verb} ${path}`).join('\n')}\n`);
    return EXIT.OK;
  } catch (err) {
    return reportError(err, io);
  }
}

/** The command line's options, as provision takes them; `--file KEY=FILE` and `--token-file` name where each file goes. */
export async function runProvisionCli(options: ProvisionCliOptions, io: CommandOutput): Promise<number> {
  if (options.verify) return runProvisionVerify(options.root, io);
  const files: Record<string, string> = {};
  for (const pair of options.file) {
    const at = pair.indexOf('=');
    if (at <= 0 || at === pair.length - 1) {
      io.stderr(`fleetlet provision: --file expects KEY=FILE (e.g. broker.tls.keyFile=./device.key), got "${pair}"\n`);
      return EXIT.USAGE;
    }
    files[pair.slice(0, at)] = pair.slice(at + 1);
  }
  if (options.tokenFile) files['k3s.tokenFile'] = options.tokenFile;
  const { trustAnchor, file: _pairs, tokenFile: _token, verify: _verify, hub: _hub, enrolTokenFile: _enrol, caFile: _ca, ...rest } = options;
  let enrolment: EnrolmentInputs | undefined;
  try {
    enrolment = enrolmentInputs(options);
  } catch (err) {
    return reportError(err, io);
  }
  return runProvision({ ...rest, trustAnchors: trustAnchor, files, ...(enrolment ? { enrolment } : {}) }, io);
}

/** `fleetlet provision --verify`: checks the image against the manifest its provisioning wrote. */
export async function runProvisionVerify(root: string, io: CommandOutput): Promise<number> {
  try {
    const { manifest, problems } = await verifyManifest(root);
    if (problems.length > 0) {
      io.stderr(`fleetlet provision --verify: ${root} differs from its manifest:\n  ${problems.join('\n  ')}\n`);
      return EXIT.FAILURE;
    }
    io.stdout(`${root}: ${manifest.files.length} files match the manifest (fleetlet ${manifest.fleetletVersion ?? 'unknown'}, written ${manifest.writtenAt})\n`);
    return EXIT.OK;
  } catch (err) {
    return reportError(err, io);
  }
}

function reportError(err: unknown, io: CommandOutput): number {
  if (!(err instanceof FleetletError)) throw err;
  io.stderr(`fleetlet provision: ${err.message}\n`);
  return exitCodeFor(err);
}
