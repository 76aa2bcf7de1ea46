import { join } from 'node:path';
import { hasControlCharacter } from '../lib/control-characters.js';
import { writeFileAtomic } from '../lib/files.js';
import type { AgentInvocation } from './args.js';
import { AgentArgsError } from './errors.js';

/**
 * The join token as k3s reads it (--token-file): 0600 in fleetlet's 0700 work dir. Not K3S_TOKEN: a variable is
 * readable in /proc/<pid>/environ as long as k3s runs, and every program k3s starts inherits it.
 */
export const TOKEN_FILE = 'join-token';

/** The invocation's arguments, with --token-file naming a fresh copy of the token it carries. */
export async function argsWithTokenFile(workDir: string, invocation: AgentInvocation): Promise<string[]> {
  if (!invocation.token) return invocation.args;
  // The config refuses such a token; one set later (k3s.configure) is checked here, before it is written.
  if (hasControlCharacter(invocation.token.reveal())) throw new AgentArgsError('the join token holds a control character (a NUL, newline...); k3s was not started');
  const file = join(workDir, TOKEN_FILE);
  // Rewritten before every start: the token may have changed (k3s.configure) since the last one.
  await writeFileAtomic(file, `${invocation.token.reveal()}\n`, { mode: 0o600 });
  return [...invocation.args, '--token-file', file];
}
