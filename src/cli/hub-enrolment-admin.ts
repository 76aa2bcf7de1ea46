import { Option, type Command } from 'commander';
import { UsageError } from '../lib/errors.js';
import { createBootstrapToken, listBootstrapTokens, revokeBootstrapToken } from '../hub/enrolment/bootstrap-tokens.js';
import { EnrolmentAuthority } from '../hub/enrolment/enrolment-authority.js';
import { createFleetCa, importFleetCa, loadFleetCa } from '../hub/enrolment/fleet-ca.js';
import { decideEnrolment, listEnrolmentRequests } from '../hub/enrolment/pending.js';
import { releaseDevice, revokeDevice } from '../hub/enrolment/revocation.js';
import type { Config } from '../config/schema.js';
import { RevokedConnectionCloser } from '../hub/enrolment/connection-takeover.js';
import { hubBrokerOptions } from '../hub/ingest/broker-options.js';
import { createLogger } from '../lib/logger.js';
import { EXIT } from './exit-codes.js';
import { guarded } from './fleet.js';
import { hubCommand, withConfig, withHubDatabase } from './hub-admin.js';
import type { CliIo } from './program.js';

const DEFAULT_CA_DIR = '/etc/fleetlet-hub/ca';
const ACTOR = 'cli';

/**
 * `fleetlet hub ca|enrol-token|enrolment|device ...`: the fleet CA and enrolment, run on the hub's server against the
 * database its config names. Tokens are printed once, alone on stdout, so `> token-file` captures exactly them.
 */
export function registerHubEnrolmentCommands(program: Command, io: CliIo, setExitCode: (code: number) => void): void {
  const hub = hubCommand(program);
  const action = <A extends unknown[]>(run: (...args: A) => Promise<void>) => guarded(io, setExitCode, run);

  const ca = hub.command('ca').description("the fleet's certificate authority, which signs device certificates");
  ca.command('init')
    .description('make a new fleet CA (ECDSA P-256; the key mode 0600), or import an existing one with --cert and --key')
    .option('--dir <dir>', 'where ca.crt and ca.key are written', DEFAULT_CA_DIR)
    .option('--name <cn>', "the CA's common name", 'fleetlet fleet CA')
    .option('--days <days>', "the CA certificate's lifetime", '3650')
    .option('--cert <file>', 'import: the existing CA certificate (PEM)')
    .option('--key <file>', 'import: its private key (PEM, P-256)')
    .action(action(async (options: { dir: string; name: string; days: string; cert?: string; key?: string }) => {
      if ((options.cert === undefined) !== (options.key === undefined)) throw new UsageError('give --cert and --key together');
      const days = wholeNumber('--days', options.days, 1, 36_500);
      const files = options.cert && options.key
        ? await importFleetCa(options.dir, { certFile: options.cert, keyFile: options.key })
        : await createFleetCa(options.dir, { commonName: options.name, days, now: new Date() });
      io.stdout(
        [
          `fleet CA in ${files.certFile} (give it to the broker as cafile, and to devices) and ${files.keyFile} (0600, the hub's only)`,
          'add to the hub config:',
          '  hub:',
          '    enrolment:',
          `      caCertFile: ${files.certFile}`,
          `      caKeyFile: ${files.keyFile}`,
          '',
        ].join('\n'),
      );
      setExitCode(EXIT.OK);
    }));

  const token = hub.command('enrol-token').description('bootstrap tokens: each can enrol devices and do nothing else');
  withConfig(token.command('create').description('make a bootstrap token; it is shown once and stored only as a hash'))
    .option('--name <name>', 'what the token is for (e.g. batch-2026-11)', 'bootstrap')
    .option('--uses <n>', 'how many devices it may enrol', '1')
    .option('--expires <duration>', 'how long it is valid: 30m, 12h, 7d', '7d')
    .option('--auto-approve', 'issue certificates at once, without an operator approving each device')
    .option('--manual', 'put each device on the pending list (the default unless hub.enrolment.approval is auto)')
    .action(action(async (options: { name: string; uses: string; expires: string; autoApprove?: boolean; manual?: boolean }, command: Command) => {
      if (options.autoApprove && options.manual) throw new UsageError('give --auto-approve or --manual, not both');
      const uses = wholeNumber('--uses', options.uses, 1, 1_000_000);
      const expiresInMs = durationMs(options.expires);
      await withHubDatabase(command, io, setExitCode, async (db, config) => {
        const autoApprove = options.autoApprove ?? (options.manual ? false : config.hub.enrolment.approval === 'auto');
        const created = await createBootstrapToken(db, { name: options.name, uses, expiresInMs, autoApprove }, ACTOR, Date.now());
        io.stdout(`${created.token}\n`);
        io.stderr(
          `bootstrap token ${created.id} "${options.name}": ${uses} use(s), until ${new Date(Date.now() + expiresInMs).toISOString()}, ${autoApprove ? 'auto-approve' : 'each device waits for: fleetlet hub enrolment approve ID'}; shown once: store it now (mode 0600)\n`,
        );
      });
    }));
  withConfig(token.command('list').description('the bootstrap tokens (never the tokens themselves)'))
    .option('--json', 'machine-readable output')
    .action(action(async (options: { json?: boolean }, command: Command) => {
      await withHubDatabase(command, io, setExitCode, async (db) => {
        const tokens = await listBootstrapTokens(db);
        if (options.json) return io.stdout(`${JSON.stringify(tokens, null, 2)}\n`);
        const now = Date.now();
        io.stdout(
          tokens
            .map((t) => {
              const state = t.revoked ? 'revoked' : t.expiresAtMs <= now ? 'expired' : t.uses >= t.maxUses ? 'used up' : 'valid';
              return `${t.id}\t${t.name}\t${t.uses}/${t.maxUses} used\t${state}\tuntil ${new Date(t.expiresAtMs).toISOString()}\t${t.autoApprove ? 'auto-approve' : 'manual'}\n`;
            })
            .join('') || 'no bootstrap tokens\n',
        );
      });
    }));
  withConfig(token.command('revoke').description('stop a bootstrap token from enrolling anything more'))
    .argument('<id-or-name>', 'its id, or its name (every token of that name)')
    .action(action(async (idOrName: string, _options: unknown, command: Command) => {
      await withHubDatabase(command, io, setExitCode, async (db) => {
        const count = await revokeBootstrapToken(db, idOrName, ACTOR, Date.now());
        io.stdout(`revoked ${count} bootstrap token(s) "${idOrName}"\n`);
      });
    }));

  const enrolment = hub.command('enrolment').description("devices asking to enrol: the pending list and the operator's decision");
  withConfig(enrolment.command('list').description('enrolment requests, newest first'))
    .addOption(new Option('--status <status>', 'only these').choices(['pending', 'approved', 'denied', 'issued']))
    .option('--json', 'machine-readable output')
    .action(action(async (options: { status?: string; json?: boolean }, command: Command) => {
      await withHubDatabase(command, io, setExitCode, async (db) => {
        const requests = await listEnrolmentRequests(db, { status: options.status });
        if (options.json) return io.stdout(`${JSON.stringify(requests, null, 2)}\n`);
        io.stdout(
          requests
            .map((r) => `${r.id}\t${r.deviceId}\t${r.status}\ttoken ${r.tokenName ?? '?'}\tfrom ${r.remoteAddr ?? '?'}\t${new Date(r.createdAtMs).toISOString()}\n`)
            .join('') || 'no enrolment requests\n',
        );
      });
    }));
  for (const decision of ['approve', 'deny'] as const) {
    withConfig(enrolment.command(decision).description(decision === 'approve' ? 'let a pending device have its certificate' : 'refuse a pending device'))
      .argument('<id>', 'the request id (fleetlet hub enrolment list)')
      .action(action(async (id: string, _options: unknown, command: Command) => {
        const requestId = wholeNumber('<id>', id, 1, Number.MAX_SAFE_INTEGER);
        await withHubDatabase(command, io, setExitCode, async (db) => {
          const decided = await decideEnrolment(db, requestId, decision, ACTOR, null, Date.now());
          io.stdout(`${decided.deviceId}: ${decided.status}\n`);
        });
      }));
  }

  const device = hub.command('device').description('enrolled devices: revocation');
  withConfig(device.command('revoke').description('revoke a device: its certificates go on the CRL the broker reads, its renewal credential stops working'))
    .argument('<device-id>', 'the device')
    .action(action(async (deviceId: string, _options: unknown, command: Command) => {
      await withHubDatabase(command, io, setExitCode, async (db, config) => {
        const { caCertFile, caKeyFile } = config.hub.enrolment;
        if (!caCertFile || !caKeyFile) throw new UsageError('hub.enrolment.caCertFile and caKeyFile are not set: this hub issues no certificates');
        const issuer = await loadFleetCa({ certFile: caCertFile, keyFile: caKeyFile });
        const now = Date.now();
        const revoked = await revokeDevice(db, deviceId, ACTOR, null, now);
        const entries = await new EnrolmentAuthority({ hub: db, issuer, config: config.hub.enrolment }).writeRevocationList(now);
        io.stdout(
          [
            `revoked ${deviceId}: ${revoked.certificates} certificate(s); the CRL ${config.hub.enrolment.crlPath} lists ${entries}`,
            `the broker refuses it once it read the CRL again (systemctl reload mosquitto; see the operator guide)`,
            `remove its k3s node: kubectl delete node ${revoked.nodeRemoval}`,
            '',
          ].join('\n'),
        );
        await closeOpenConnection(config, deviceId, io);
      });
    }));
  withConfig(device.command('release').description('let a revoked device id enrol again, with a new key and a bootstrap token'))
    .argument('<device-id>', 'the device')
    .action(action(async (deviceId: string, _options: unknown, command: Command) => {
      await withHubDatabase(command, io, setExitCode, async (db) => {
        await releaseDevice(db, deviceId, ACTOR, null, Date.now());
        io.stdout(`released ${deviceId}: it may enrol again with a bootstrap token\n`);
      });
    }));
}

/** Waits hub.enrolment.disconnectAfterRevokeSeconds for the broker to reread the CRL, then ends the device's open connection. */
async function closeOpenConnection(config: Config, deviceId: string, io: CliIo): Promise<void> {
  const delaySeconds = config.hub.enrolment.disconnectAfterRevokeSeconds;
  if (delaySeconds === 0) return;
  io.stderr(`in ${delaySeconds} s, once the broker reread the CRL, its open connection is ended (hub.enrolment.disconnectAfterRevokeSeconds)\n`);
  await new Promise((resolve) => setTimeout(resolve, delaySeconds * 1000));
  const closer = new RevokedConnectionCloser({ brokerUrl: config.broker.url, base: hubBrokerOptions(config.broker), delaySeconds, logger: createLogger({ level: 'silent' }) });
  try {
    await closer.takeOver(deviceId);
    io.stdout(`ended ${deviceId}'s broker connection, if it had one\n`);
  } catch (err) {
    io.stderr(`could not reach the broker to end ${deviceId}'s connection (${(err as Error).message}); it ends when the device disconnects\n`);
  }
}

function wholeNumber(flag: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) throw new UsageError(`${flag} expects a whole number from ${min} to ${max}, not "${value}"`);
  return n;
}

/** `30m`, `12h`, `7d` (at most a year: a bootstrap token is not a long-lived credential). */
export function durationMs(value: string): number {
  const match = /^(\d{1,4})([mhd])$/.exec(value);
  const ms = match ? Number(match[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 'm' | 'h' | 'd'] : NaN;
  if (!(ms >= 60_000 && ms <= 366 * 86_400_000)) throw new UsageError(`--expires expects a duration such as 30m, 12h or 7d (at most 366d), not "${value}"`);
  return ms;
}
