import { type Check, pass, warn } from './check.js';

/**
 * What kind of k3s join token a device holds, from its form alone (k3s pkg/clientaccess/token.go):
 * `K10<ca-hash>::<user>:<password>` names its user (`server` or `node`), `K10<ca-hash>::<id>.<secret>` and
 * `<id>.<secret>` are bootstrap tokens; anything else tells nothing about its power, like a bare password.
 */
export type K3sTokenKind = 'server' | 'agent' | 'bootstrap' | 'password';

const BOOTSTRAP_TOKEN = /^[a-z0-9]{6}\.[a-z0-9]{16}$/;

export function k3sTokenKind(token: string): K3sTokenKind {
  const full = /^K10[^:]*::(.*)$/s.exec(token);
  const rest = full ? full[1]! : token;
  if (BOOTSTRAP_TOKEN.test(rest)) return 'bootstrap';
  // Only the full form carries a user; a bare token is one password, colons and all.
  const user = full ? /^([^:]+):./s.exec(rest)?.[1] : undefined;
  if (user === 'server') return 'server';
  if (user === 'node') return 'agent';
  return 'password';
}

const SUMMARIES: Record<Exclude<K3sTokenKind, 'server'>, string> = {
  agent: 'the k3s token is an agent token (K10<hash>::node:...): it can join nodes, not administer the cluster',
  bootstrap: 'the k3s token is a bootstrap token: it can only join nodes (and expires, if made with --ttl)',
  password: 'the k3s token does not show whose it is (a bare password): doctor cannot tell an agent token from the server token; make sure it is the agent token',
};

/**
 * Whoever holds the server token is cluster admin, and a device's SD card can be read by anyone who takes it.
 * Only the token's kind is reported: never the token, its CA hash or its password.
 */
export const checkK3sToken: Check = (context) => {
  const k3s = context.config?.k3s;
  if (!k3s?.enabled || !k3s.token) return [];
  const kind = k3sTokenKind(k3s.token.reveal().trim());
  if (kind !== 'server') return [pass('k3s-token', SUMMARIES[kind])];
  const where = k3s.tokenFile ?? 'k3s.token';
  return [
    warn(
      'k3s-token',
      `${where} holds the k3s SERVER token (K10<hash>::server:...): whoever reads it from this device administers the whole cluster`,
      `give devices the agent token instead: set agent-token-file on the server, then copy /var/lib/rancher/k3s/server/agent-token ` +
        `(or a bootstrap token from: k3s token create --ttl 24h) into ${k3s.tokenFile ?? '/etc/fleetlet/k3s-token'} (mode 0600), ` +
        `and rotate the server token (k3s token rotate) if this device may have been exposed`,
    ),
  ];
};
