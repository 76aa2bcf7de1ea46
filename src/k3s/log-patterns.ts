import { eventKindSpec } from '../protocol/event.js';
import type { K3sEventKind } from './events.js';

/**
 * Known k3s agent failures recognised in its log (strings from k3s-facts.md), each with what a person should do.
 * k3s retries most of them forever without exiting, so the log is the only place they show.
 */
export interface LogProblem {
  kind: Extract<
    K3sEventKind,
    'k3s.password-rejected' | 'k3s.cgroup-missing' | 'k3s.server-unreachable' | 'k3s.token-rejected' | 'k3s.certificate-error'
  >;
  remedy: string;
}

/** The remedy is the table's, so the status, the log and the event say the same. */
function problemOf(kind: LogProblem['kind']): LogProblem {
  return { kind, remedy: eventKindSpec(kind).remedy ?? '' };
}

const PATTERNS: readonly { test: RegExp; problem: LogProblem }[] = [
  { test: /Node password rejected/, problem: problemOf('k3s.password-rejected') },
  { test: /failed to find memory cgroup|Failed to find memory cgroup/i, problem: problemOf('k3s.cgroup-missing') },
  { test: /not authorized|token CA hash does not match|token must not be empty|invalid token format/, problem: problemOf('k3s.token-rejected') },
  { test: /x509:|certificate (?:has expired|signed by unknown authority|is not valid)|tls: failed to verify/, problem: problemOf('k3s.certificate-error') },
  { test: /Failed to validate connection to cluster|connection refused|no route to host|i\/o timeout|Remotedialer proxy error/, problem: problemOf('k3s.server-unreachable') },
];

/** Lines that show the agent is joined and working, besides kubelet healthz. */
const READY_PATTERN = /"Successfully registered node"|Remotedialer connected to proxy|k3s agent is up and running/;

export function classifyLine(line: string): LogProblem | undefined {
  return PATTERNS.find((pattern) => pattern.test.test(line))?.problem;
}

export function isReadyLine(line: string): boolean {
  return READY_PATTERN.test(line);
}
