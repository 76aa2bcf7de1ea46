import type { Config } from '../config/schema.js';
import type { Secret } from '../lib/secret.js';
import { AgentArgsError } from './errors.js';
import { canonicalFlag, K3S_AGENT_FLAGS, MANAGED_FLAGS } from './flags.js';

export type K3sConfig = Config['k3s'];

export interface AgentInvocation {
  args: string[];
  /** K3S_* variables fleetlet sets on purpose; never a secret (the child's environment is readable in /proc). */
  env: Record<string, string>;
  /**
   * The join token, when the config holds it: the supervisor writes it to a 0600 file in its work dir and adds
   * --token-file, so that it is in neither the command line nor the environment of k3s and of what k3s starts.
   */
  token?: Secret;
}

const DEFAULT_LB_SERVER_PORT = 6444;

/**
 * Builds the `k3s agent` command line from fleetlet's config. The join token travels in a file (`token`, or the
 * configured k3s.tokenFile by path), so `ps`, /proc/<pid>/cmdline and /proc/<pid>/environ never show it.
 */
export function buildAgentInvocation(k3s: K3sConfig): AgentInvocation {
  if (!k3s.serverUrl) throw new AgentArgsError('k3s.serverUrl is not set: the agent needs a server to join');
  if (!k3s.token && !k3s.tokenFile) throw new AgentArgsError('k3s.token or k3s.tokenFile is not set: the agent needs a join token');
  const args = ['agent', '--server', k3s.serverUrl, '--data-dir', k3s.dataDir];
  if (!k3s.token && k3s.tokenFile) args.push('--token-file', k3s.tokenFile);
  if (k3s.nodeName) args.push('--node-name', k3s.nodeName);
  if (k3s.withNodeId) args.push('--with-node-id');
  // Code-unit order, not localeCompare: the same argv under every locale, and no ICU collator loaded into the agent
  // (2-3 MiB of RSS measured on Node 24) just to sort ASCII label keys.
  for (const [key, value] of Object.entries(k3s.nodeLabels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    args.push('--node-label', `${key}=${value}`);
  }
  for (const taint of k3s.nodeTaints) args.push('--node-taint', taint);
  for (const ip of k3s.nodeIp) args.push('--node-ip', ip);
  for (const ip of k3s.nodeExternalIp) args.push('--node-external-ip', ip);
  if (k3s.disableApiserverLb) args.push('--disable-apiserver-lb');
  if (k3s.lbServerPort !== DEFAULT_LB_SERVER_PORT) args.push('--lb-server-port', String(k3s.lbServerPort));
  for (const kubeletArg of k3s.kubeletArgs) args.push('--kubelet-arg', checkKubeletArg(kubeletArg));
  for (const extra of k3s.extraArgs) args.push(...checkExtraArg(extra));
  return { args, env: {}, ...(k3s.token ? { token: k3s.token } : {}) };
}

/** k3s passes these to the kubelet as `--<name>=<value>`; a leading "--" would be doubled. */
function checkKubeletArg(arg: string): string {
  if (!/^[a-z0-9][a-z0-9-]*=/.test(arg)) {
    throw new AgentArgsError(`k3s.kubeletArgs entry "${arg}" must look like name=value (e.g. max-pods=200), without leading dashes`);
  }
  return arg;
}

/** Extra args are `--flag=value` or `--flag` (booleans), one flag per entry, checked against the real flag list. */
export function checkExtraArg(arg: string): string[] {
  const match = /^--?([a-z][a-z0-9-]*)(?:=(.*))?$/s.exec(arg);
  if (!match) throw new AgentArgsError(`k3s.extraArgs entry "${arg}" is not a flag; use --name=value or --name`);
  const name = canonicalFlag(match[1]!);
  if (!name) throw new AgentArgsError(`k3s.extraArgs: "${match[1]}" is not a flag of k3s agent (k3s would exit with "flag provided but not defined")`);
  if (MANAGED_FLAGS.has(name)) {
    throw new AgentArgsError(`k3s.extraArgs: --${name} is set by fleetlet from its own config (or would expose a secret); use the k3s.* keys`);
  }
  const flag = K3S_AGENT_FLAGS[name]!;
  const value = match[2];
  if (flag.bool) {
    if (value !== undefined && value !== 'true' && value !== 'false') throw new AgentArgsError(`k3s.extraArgs: --${name} takes true or false`);
    return [value === undefined ? `--${name}` : `--${name}=${value}`];
  }
  if (value === undefined) throw new AgentArgsError(`k3s.extraArgs: --${name} needs a value; write --${name}=<value>`);
  return [`--${name}=${value}`];
}

/**
 * The system-upgrade-controller treats a parent whose command line contains "k3s" as k3s itself and would
 * overwrite and kill it (k3s-facts.md §6). True when fleetlet's own command line would be mistaken that way.
 */
export function commandLineLooksLikeK3s(argv: readonly string[]): boolean {
  return argv.some((part) => part.includes('k3s'));
}
