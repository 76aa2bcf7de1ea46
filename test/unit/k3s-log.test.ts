import { describe, expect, it } from 'vitest';
import { classifyLine, isReadyLine } from '../../src/k3s/log-patterns.js';
import { LogRing } from '../../src/k3s/log-ring.js';

// Lines as the real agent prints them (k3s-facts.md §2, §3, §5).
const LINES = {
  password:
    'time="2026-08-20T10:00:00Z" level=info msg="Waiting to retrieve agent configuration; server is not ready: /var/lib/rancher/k3s/agent/serving-kubelet.crt: Node password rejected, duplicate hostname or contents of \'/etc/rancher/node/password\' may not match server node-passwd entry, try enabling a unique node name with the --with-node-id flag"',
  oldPassword: 'time="2020-01-01T00:00:00Z" level=error msg="Failed to retrieve agent config: Node password rejected, duplicate hostname or contents of \'/etc/rancher/node/password\' may not match server node-passwd entry, try enabling a unique node name with the --with-node-id flag"',
  cgroupV1:
    'time="2026-08-20T10:00:00Z" level=fatal msg="Error: failed to find memory cgroup, you may need to add \\"cgroup_memory=1 cgroup_enable=memory\\" to your linux cmdline (/boot/cmdline.txt on a Raspberry Pi)"',
  cgroupV2: 'time="2026-08-20T10:00:00Z" level=fatal msg="Error: failed to find memory cgroup (v2)"',
  unreachable:
    'time="2026-08-20T10:00:00Z" level=error msg="Failed to validate connection to cluster at https://10.0.0.1:6443: failed to get CA certs: Get \\"https://10.0.0.1:6443/cacerts\\": dial tcp 10.0.0.1:6443: connect: connection refused"',
  token: 'time="2026-08-20T10:00:00Z" level=info msg="Waiting to retrieve agent configuration; server is not ready: failed to retrieve configuration from server: not authorized"',
  caHash:
    'time="2026-08-20T10:00:00Z" level=error msg="Failed to validate connection to cluster at https://10.0.0.1:6443: token CA hash does not match the Cluster CA certificate hash: 1b2c != 9f8e"',
  x509: 'time="2026-08-20T10:00:00Z" level=error msg="Failed to validate connection to cluster at https://10.0.0.1:6443: Get \\"https://10.0.0.1:6443/cacerts\\": tls: failed to verify certificate: x509: certificate has expired or is not yet valid"',
  registered: 'I0820 10:00:00.000000    1234 kubelet_node_status.go:75] "Successfully registered node" node="pi-01"',
  remotedialer: 'time="2026-08-20T10:00:00Z" level=info msg="Remotedialer connected to proxy" url="wss://10.0.0.1:6443/v1-k3s/connect"',
  starting: 'time="2026-08-20T10:00:00Z" level=info msg="Starting k3s agent v1.36.3+k3s1 (469d009f)"',
};

describe('k3s log classification', () => {
  it.each([
    ['password', 'k3s.password-rejected'],
    ['oldPassword', 'k3s.password-rejected'],
    ['cgroupV1', 'k3s.cgroup-missing'],
    ['cgroupV2', 'k3s.cgroup-missing'],
    ['unreachable', 'k3s.server-unreachable'],
    ['token', 'k3s.token-rejected'],
    ['caHash', 'k3s.token-rejected'],
    ['x509', 'k3s.certificate-error'],
  ] as const)('recognises %s', (line, kind) => {
    expect(classifyLine(LINES[line])?.kind).toBe(kind);
  });

  it('gives each failure a remedy a person can act on', () => {
    expect(classifyLine(LINES.cgroupV1)!.remedy).toContain('/boot/firmware/cmdline.txt');
    expect(classifyLine(LINES.password)!.remedy).toContain('node-password.k3s');
  });

  it('leaves ordinary lines alone and spots readiness', () => {
    expect(classifyLine(LINES.starting)).toBeUndefined();
    expect(classifyLine(LINES.registered)).toBeUndefined();
    expect(isReadyLine(LINES.registered)).toBe(true);
    expect(isReadyLine(LINES.remotedialer)).toBe(true);
    expect(isReadyLine(LINES.starting)).toBe(false);
  });
});

describe('log ring', () => {
  it('keeps the newest lines in order, bounded in count and length', () => {
    const ring = new LogRing(3, 10);
    for (const line of ['a', 'b', 'c', 'd', 'e']) ring.push(line);
    expect(ring.lines()).toEqual(['c', 'd', 'e']);
    expect(ring.lines(2)).toEqual(['d', 'e']);
    ring.push('x'.repeat(50));
    expect(ring.lines(1)[0]).toBe(`${'x'.repeat(10)}…`);
  });

  it('returns what it has before it is full', () => {
    const ring = new LogRing(5);
    ring.push('one');
    ring.push('two');
    expect(ring.lines()).toEqual(['one', 'two']);
  });
});
