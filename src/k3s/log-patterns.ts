import type { K3sEventKind } from './events.js';

/**
 * Known k3s agent failures recognised in its log (strings from k3s-facts.md), each with what a person should do.
 * k3s retries most of them forever without exiting, so the log is the only place they show.
 */
export interface LogProblem {
  kind: Extract<
    K3sEventKind,
    'k3s.password_rejected' | 'k3s.cgroup_missing' | 'k3s.server_unreachable' | 'k3s.token_rejected' | 'k3s.certificate_error'
  >;
  remedy: string;
}

const PATTERNS: readonly { test: RegExp; problem: LogProblem }[] = [
  {
    test: /Node password rejected/,
    problem: {
      kind: 'k3s.password_rejected',
      remedy:
        "the server holds another password for this node name. Either another device uses the same name (set k3s.nodeName, or k3s.withNodeId: true), or this device lost its password. An operator fixes it on the server: `kubectl delete node <name>` (its node-password secret goes with it) or `kubectl -n kube-system delete secret <name>.node-password.k3s`; the agent then registers on its next retry.",
    },
  },
  {
    test: /failed to find memory cgroup|Failed to find memory cgroup/i,
    problem: {
      kind: 'k3s.cgroup_missing',
      remedy:
        'the kernel runs without the memory cgroup. Append " cgroup_memory=1 cgroup_enable=memory" to the single line of /boot/firmware/cmdline.txt (/boot/cmdline.txt on Debian 11 and older Pi OS), then reboot.',
    },
  },
  {
    test: /not authorized|token CA hash does not match|token must not be empty|invalid token format/,
    problem: {
      kind: 'k3s.token_rejected',
      remedy: 'the server refused the join token: check k3s.token / k3s.tokenFile against the server\'s /var/lib/rancher/k3s/server/node-token.',
    },
  },
  {
    test: /x509:|certificate (?:has expired|signed by unknown authority|is not valid)|tls: failed to verify/,
    problem: {
      kind: 'k3s.certificate_error',
      remedy: 'TLS to the server failed: check the device clock (timedatectl) and that k3s.serverUrl names the server the certificate was issued for.',
    },
  },
  {
    test: /Failed to validate connection to cluster|connection refused|no route to host|i\/o timeout|Remotedialer proxy error/,
    problem: {
      kind: 'k3s.server_unreachable',
      remedy: 'the agent cannot reach k3s.serverUrl: check the network, DNS and that port 6443 on the server is reachable from this device.',
    },
  },
];

/** Lines that show the agent is joined and working, besides kubelet healthz. */
const READY_PATTERN = /"Successfully registered node"|Remotedialer connected to proxy|k3s agent is up and running/;

export function classifyLine(line: string): LogProblem | undefined {
  return PATTERNS.find((pattern) => pattern.test.test(line))?.problem;
}

export function isReadyLine(line: string): boolean {
  return READY_PATTERN.test(line);
}
