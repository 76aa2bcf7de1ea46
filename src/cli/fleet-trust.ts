import { Option, type Command } from 'commander';
import { UsageError } from '../lib/errors.js';
import { sha256OfFile } from '../lib/files.js';
import { addKey, describeTrust, initTrust, readTrustDocument, renewTrust, revokeKey, rotateRoot, signRelease } from '../fleet/trust-admin.js';
import type { CliIo } from './program.js';
import { EXIT } from './exit-codes.js';

type Guard = <A extends unknown[]>(action: (...args: A) => Promise<void>) => (...args: A) => Promise<void>;

const documentOption = () => new Option('--document <file>', 'the trust document file').env('FLEET_TRUST_DOCUMENT').makeOptionMandatory();
const rootKeyOption = () => new Option('--root-key <file>', 'the fleet root private key (mode 0600; keep it offline)').env('FLEET_ROOT_KEY').makeOptionMandatory();
const list = (text: string | undefined, fallback: string[]) => (text === undefined ? fallback : text.split(',').map((s) => s.trim()).filter(Boolean));

/**
 * `fleetlet fleet trust ...` (the root signs the trust document) and `fleetlet fleet release sign` (a release key
 * signs a build for agent.upgrade). Every change prints the new version; `send trust.update` delivers it.
 */
export function registerTrustCommands(fleet: Command, io: CliIo, setExitCode: (code: number) => void, guard: Guard): void {
  const trust = fleet.command('trust').description('the root-signed trust document: operator keys with scopes, release keys, revocations');
  const done = (lines: string[]) => {
    io.stdout(`${lines.join('\n')}\n`);
    setExitCode(EXIT.OK);
  };
  const delivery = (file: string) => `deliver it: fleetlet fleet send trust.update --key ROOT_OR_OPERATOR_KEY --group GROUP --arg-json document=${file}`;

  trust
    .command('init')
    .description('make the root key (0600, never over an existing file) and version 1 of the trust document')
    .addOption(documentOption())
    .addOption(rootKeyOption())
    .action(guard(async (options: { document: string; rootKey: string }) => {
      const made = await initTrust(options.document, options.rootKey);
      done([
        `wrote root key ${options.rootKey} (mode 0600): keep it offline; it signs every version of the trust document`,
        `wrote ${options.document} (version 1, no keys yet)`,
        "add to each device's config (the bootstrap root):",
        'commands:',
        `  trustRoot: ${made.rootPublicKey}`,
      ]);
    }));

  trust
    .command('add-key')
    .description('add (or change) an operator key with its scopes, or a release key; bumps the version')
    .argument('<id>', 'key id (what `fleet keygen` named it)')
    .requiredOption('--public-key <base64>', 'the public key `fleet keygen` printed')
    .option('--types <list>', 'comma-separated command types it may sign, or *', '*')
    .option('--targets <list>', 'comma-separated device:<id>, group:<name>, or *', '*')
    .option('--expires <date>', 'ISO 8601 date after which its commands are refused (key_expired)')
    .option('--release', 'a release key: it signs fleetlet builds for agent.upgrade, not commands')
    .addOption(documentOption())
    .addOption(rootKeyOption())
    .action(guard(async (id: string, options: { publicKey: string; types: string; targets: string; expires?: string; release?: boolean; document: string; rootKey: string }) => {
      const expiresAt = options.expires === undefined ? undefined : Date.parse(options.expires);
      if (expiresAt !== undefined && !Number.isFinite(expiresAt)) throw new UsageError(`--expires expects an ISO 8601 date, got "${options.expires}"`);
      const signed = await addKey(options.document, options.rootKey, {
        id,
        publicKey: options.publicKey,
        ...(options.release ? { release: true } : { scopes: { types: list(options.types, ['*']), targets: list(options.targets, ['*']) } }),
        ...(expiresAt !== undefined ? { expiresAt } : {}),
      });
      done([`${options.document}: version ${signed.document.version}, ${options.release ? 'release' : 'operator'} key ${id} added`, delivery(options.document)]);
    }));

  trust
    .command('revoke')
    .description('take a key back: its commands are refused by name (revoked_key); bumps the version')
    .argument('<id>', 'key id')
    .addOption(documentOption())
    .addOption(rootKeyOption())
    .action(guard(async (id: string, options: { document: string; rootKey: string }) => {
      const signed = await revokeKey(options.document, options.rootKey, id);
      done([`${options.document}: version ${signed.document.version}, ${id} revoked`, delivery(options.document)]);
    }));

  trust
    .command('renew')
    .description('set when the document expires (after it, devices refuse every operator key until a newer one); bumps the version')
    .requiredOption('--until <date>', 'ISO 8601 date, or "never"')
    .addOption(documentOption())
    .addOption(rootKeyOption())
    .action(guard(async (options: { until: string; document: string; rootKey: string }) => {
      const until = options.until === 'never' ? undefined : Date.parse(options.until);
      if (until !== undefined && !Number.isFinite(until)) throw new UsageError(`--until expects an ISO 8601 date or never, got "${options.until}"`);
      const signed = await renewTrust(options.document, options.rootKey, until);
      done([`${options.document}: version ${signed.document.version}, ${until === undefined ? 'no expiry' : `expires ${new Date(until).toISOString()}`}`, delivery(options.document)]);
    }));

  trust
    .command('rotate-root')
    .description('hand the trust to a new root key (make it with `fleet keygen`): signed by the old root and the new')
    .requiredOption('--new-root-key <file>', 'the new root private key (mode 0600)')
    .addOption(documentOption())
    .addOption(rootKeyOption())
    .action(guard(async (options: { newRootKey: string; document: string; rootKey: string }) => {
      const signed = await rotateRoot(options.document, options.rootKey, options.newRootKey);
      done([
        `${options.document}: version ${signed.document.version}, root ${signed.document.root.publicKey}`,
        delivery(options.document),
        `then sign further versions with --root-key ${options.newRootKey}, and set commands.trustRoot to the new root in new device images`,
      ]);
    }));

  trust
    .command('show')
    .description('print the trust document: version, root, keys with scopes and expiry, revocations')
    .addOption(documentOption())
    .option('--json', 'the signed document as JSON')
    .action(guard(async (options: { document: string; json?: boolean }) => {
      const signed = readTrustDocument(options.document);
      done(options.json ? [JSON.stringify(signed, null, 2)] : describeTrust(signed));
    }));

  fleet
    .command('release')
    .description('release keys: sign a fleetlet build for agent.upgrade')
    .command('sign')
    .description('print the release signature (over version and sha256) that agent.upgrade carries as releaseSignature')
    .addOption(new Option('--key <file>', 'release private key (mode 0600)').env('FLEET_RELEASE_KEY').makeOptionMandatory())
    .option('--key-id <id>', 'key id (default: key file name without .key)')
    .requiredOption('--release-version <version>', 'the fleetlet version of the build')
    .option('--sha256 <hex>', 'sha256 of the binary')
    .option('--file <binary>', 'the binary itself (its sha256 is computed)')
    .action(guard(async (options: { key: string; keyId?: string; releaseVersion: string; sha256?: string; file?: string }) => {
      if ((options.sha256 === undefined) === (options.file === undefined)) throw new UsageError('give --sha256 or --file, one of them');
      const sha256 = options.sha256 ?? (await sha256OfFile(options.file!));
      if (!/^[a-f0-9]{64}$/.test(sha256)) throw new UsageError('--sha256 expects 64 lowercase hex characters');
      const signature = signRelease(options.key, options.keyId, { version: options.releaseVersion, sha256 });
      done([JSON.stringify(signature), `use it: fleetlet fleet send agent.upgrade ... --arg version=${options.releaseVersion} --arg sha256=${sha256} --arg 'releaseSignature=${JSON.stringify(signature)}'`]);
    }));
}
