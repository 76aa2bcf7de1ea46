/**
 * Every flag of `k3s agent` (pkg/cli/cmds/agent.go, log.go, root.go and config.go at k3s v1.36.3+k3s1), with its
 * short aliases and whether it takes a value. urfave/cli rejects anything else with "flag provided but not
 * defined" and k3s exits 1, so extra args are checked against this list before k3s ever sees them.
 */
export interface AgentFlag {
  aliases?: readonly string[];
  /** Boolean switches take no value. */
  bool?: boolean;
}

export const K3S_AGENT_FLAGS: Readonly<Record<string, AgentFlag>> = {
  config: { aliases: ['c'] },
  debug: { bool: true },
  v: {},
  vmodule: {},
  log: { aliases: ['l'] },
  alsologtostderr: { bool: true },
  token: { aliases: ['t'] },
  'token-file': {},
  server: { aliases: ['s'] },
  'data-dir': { aliases: ['d'] },
  'node-name': {},
  'with-node-id': { bool: true },
  'node-label': {},
  'node-taint': {},
  'image-credential-provider-bin-dir': {},
  'image-credential-provider-config': {},
  selinux: { bool: true },
  'lb-server-port': {},
  'protect-kernel-defaults': { bool: true },
  'container-runtime-endpoint': {},
  'default-runtime': {},
  'image-service-endpoint': {},
  'pause-image': {},
  snapshotter: {},
  'private-registry': {},
  'disable-default-registry-endpoint': { bool: true },
  'nonroot-devices': { bool: true },
  'airgap-extra-registry': {},
  'node-ip': { aliases: ['i'] },
  'bind-address': {},
  'node-external-ip': {},
  'node-internal-dns': {},
  'node-external-dns': {},
  'resolv-conf': {},
  'flannel-iface': {},
  'flannel-conf': {},
  'flannel-cni-conf': {},
  'kubelet-arg': {},
  'kube-proxy-arg': {},
  'enable-pprof': { bool: true },
  rootless: { bool: true },
  'prefer-bundled-bin': { bool: true },
  docker: { bool: true },
  'vpn-auth': {},
  'vpn-auth-file': {},
  'disable-apiserver-lb': { bool: true },
  help: { aliases: ['h'], bool: true },
};

/**
 * Flags extra-args may not set: fleetlet sets them from its own config (a second value would silently win or
 * conflict, as --log, which fleetlet sets for k3s's own log rotation), or they would put a secret on the command line.
 */
export const MANAGED_FLAGS: ReadonlySet<string> = new Set([
  'server',
  'token',
  'token-file',
  'data-dir',
  'node-name',
  'with-node-id',
  'node-label',
  'node-taint',
  'node-ip',
  'node-external-ip',
  'disable-apiserver-lb',
  'lb-server-port',
  'kubelet-arg',
  'log',
  'vpn-auth',
  'config',
  'help',
]);

/** The canonical name for a flag or alias, or undefined when `k3s agent` does not know it. */
export function canonicalFlag(name: string): string | undefined {
  if (K3S_AGENT_FLAGS[name]) return name;
  return Object.entries(K3S_AGENT_FLAGS).find(([, flag]) => flag.aliases?.includes(name))?.[0];
}
