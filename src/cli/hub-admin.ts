import { readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { Option, type Command } from 'commander';
import { DEFAULT_CONFIG_PATH } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { UsageError } from '../lib/errors.js';
import { sqliteNativeBinding } from '../lib/native-addon.js';
import { openHubDatabase, readPasswordFile, type HubDatabase } from '../hub/db/open.js';
import { addOperator, checkRole, createApiToken } from '../hub/auth/accounts.js';
import { EXIT } from './exit-codes.js';
import { guarded } from './fleet.js';
import { loadSelectedConfig } from './load-selected-config.js';
import type { CliIo } from './program.js';

const MAX_PASSWORD_INPUT = 4096;
const collect = (value: string, previous: string[]) => [...previous, value];

/** The `hub` command group, made by whichever registration comes first. */
export function hubCommand(program: Command): Command {
  return program.commands.find((c) => c.name() === 'hub') ?? program.command('hub').description('the cloud side: the hub service and its accounts');
}

/** The options every hub admin command takes: the config that names the hub database. */
export function withConfig(command: Command): Command {
  return command
    .addOption(new Option('-c, --config <path>', 'config file (its hub: section)').env('FLEETLET_CONFIG').default(DEFAULT_CONFIG_PATH))
    .option('--set <key=value>', 'override a config key (repeatable)', collect, []);
}

/**
 * `fleetlet hub user add` and `fleetlet hub token create`: accounts of the hub's HTTP API, written straight into the
 * hub database the config names. A password never comes from argv (every user can read a command line): it is
 * read from --password-file or piped on stdin.
 */
export function registerHubAdminCommands(program: Command, io: CliIo, setExitCode: (code: number) => void): void {
  const hub = hubCommand(program);

  const user = hub.command('user').description('operator accounts of the hub API');
  withConfig(user.command('add').description('add an account; the password is read from --password-file or stdin, never from the command line'))
    .argument('<name>', 'user name (a-z 0-9 . _ -)')
    .addOption(new Option('--role <role>', 'viewer reads; operator may also change things').choices(['viewer', 'operator']).makeOptionMandatory())
    .option('--password-file <file>', 'file holding the password (else it is read from stdin)')
    .action(guarded(io, setExitCode, async (name: string, options: { role: string; passwordFile?: string }, command: Command) => {
      const password = options.passwordFile ? readPasswordInput(options.passwordFile) : await readPasswordFromStdin();
      await withHubDatabase(command, io, setExitCode, async (db) => {
        await addOperator(db, name, checkRole(options.role), password, Date.now());
        io.stdout(`added ${options.role} "${name}"\n`);
      });
    }));

  const token = hub.command('token').description('API tokens for scripts');
  withConfig(token.command('create').description('make an API token for a user; it is shown once and stored only as a hash'))
    .argument('<name>', 'what the token is for (e.g. grafana)')
    .requiredOption('--user <name>', 'the account the token acts as')
    .addOption(new Option('--role <role>', "at most the account's role (default: the account's)").choices(['viewer', 'operator']))
    .option('--expires-days <days>', 'days until the token expires (default: never)')
    .action(guarded(io, setExitCode, async (name: string, options: { user: string; role?: string; expiresDays?: string }, command: Command) => {
      const expiresInDays = options.expiresDays === undefined ? undefined : Number(options.expiresDays);
      if (expiresInDays !== undefined && (!Number.isInteger(expiresInDays) || expiresInDays < 1 || expiresInDays > 3650)) {
        throw new UsageError('--expires-days expects a whole number of days from 1 to 3650');
      }
      await withHubDatabase(command, io, setExitCode, async (db) => {
        const created = await createApiToken(
          db,
          { username: options.user, name, ...(options.role ? { role: checkRole(options.role) } : {}), ...(expiresInDays ? { expiresInDays } : {}) },
          Date.now(),
        );
        // The token alone on stdout, so that `... > token-file` captures exactly it; the note goes to stderr.
        io.stdout(`${created.token}\n`);
        io.stderr(`token "${name}" for ${options.user} (${created.role}); shown once: store it now (mode 0600)\n`);
      });
    }));
}

/** Opens the hub database of the config that `command`'s --config/--set select, and runs `use` with it and that config. */
export async function withHubDatabase(
  command: Command,
  io: CliIo,
  setExitCode: (code: number) => void,
  use: (db: HubDatabase, config: Config) => Promise<void>,
): Promise<void> {
  const options = command.opts<{ config: string; set: string[] }>();
  const loaded = loadSelectedConfig({ path: options.config, explicit: command.getOptionValueSource('config') !== 'default', sets: options.set }, io);
  if (!loaded) return setExitCode(EXIT.CONFIG);
  const { database } = loaded.config.hub;
  const db = await openHubDatabase({
    file: database.file,
    maxConnections: 2,
    ...(database.url ? { url: database.url } : {}),
    ...(database.passwordFile ? { password: readPasswordFile(database.passwordFile) } : {}),
    nativeBinding: database.url ? undefined : sqliteNativeBinding(dirname(database.file), io.env),
  });
  try {
    await use(db, loaded.config);
    setExitCode(EXIT.OK);
  } finally {
    await db.close();
  }
}

function readPasswordInput(file: string): string {
  try {
    if (statSync(file).size > MAX_PASSWORD_INPUT) throw new UsageError(`${file} is larger than ${MAX_PASSWORD_INPUT} bytes`);
    return firstLine(readFileSync(file, 'utf8'));
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/** The first line piped on stdin; a terminal is refused, since what is typed there would be shown. */
async function readPasswordFromStdin(): Promise<string> {
  if (process.stdin.isTTY) throw new UsageError('pipe the password on stdin or give --password-file (a terminal would show it)');
  let text = '';
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    text += chunk.toString('utf8');
    if (text.length > MAX_PASSWORD_INPUT) throw new UsageError(`the password on stdin is longer than ${MAX_PASSWORD_INPUT} bytes`);
  }
  return firstLine(text);
}

function firstLine(text: string): string {
  const line = text.split(/\r?\n/)[0] ?? '';
  if (line.length === 0) throw new UsageError('no password given');
  return line;
}
