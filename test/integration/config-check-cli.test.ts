import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createCa, issueCert } from '../helpers/certs.js';
import { runCli, startCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/paths.js';

/**
 * Every bad config must exit 78 (EX_CONFIG) and name the key, where its value came from, and what was expected.
 * Each case runs the real CLI: `fleetlet config check FILE`.
 */
const { dir, cleanup } = tempDir();
afterAll(cleanup);

const OK_BROKER = 'broker:\n  url: mqtts://broker.example:8883\n';
let counter = 0;

interface Case {
  name: string;
  yaml: string;
  env?: Record<string, string>;
  args?: string[];
  dropIns?: Record<string, string>;
  files?: Record<string, { content: string; mode?: number } | 'dir'>;
  /** Lines expected in stderr; FILE stands for the config file path, DIR for its folder. */
  expect: string[];
  /** Text that must not appear anywhere in the output (secrets). */
  never?: string[];
}

const cases: Case[] = [
  {
    name: 'broker url with a non-MQTT scheme',
    yaml: 'broker:\n  url: http://broker.example\n',
    expect: ['broker.url (FILE:2): expected an mqtt:// or mqtts:// URL with a host, got "http://broker.example"'],
  },
  {
    name: 'broker section missing',
    yaml: 'device:\n  id: pi-01\n',
    expect: ['broker (not set): required: expected a mapping, but it is not set'],
  },
  {
    name: 'broker url missing',
    yaml: 'broker:\n  topicRoot: fleet\n',
    expect: ['broker.url (FILE:1): required: expected a string, but it is not set'],
  },
  {
    name: 'unknown top-level key with a hint',
    yaml: `${OK_BROKER}brokr:\n  url: x\n`,
    expect: ['brokr (FILE:3): unknown key; did you mean "broker"?'],
  },
  {
    name: 'unknown nested key with a hint',
    yaml: `${OK_BROKER}device:\n  lables:\n    site: a\n`,
    expect: ['device.lables (FILE:4): unknown key; did you mean "labels"?'],
  },
  {
    name: 'unknown key without a close match lists the known keys',
    yaml: `${OK_BROKER}log:\n  colour: red\n`,
    expect: ['log.colour (FILE:4): unknown key; expected one of: level'],
  },
  {
    name: 'device id with upper case',
    yaml: `${OK_BROKER}device:\n  id: Pi-01\n`,
    expect: ['device.id (FILE:4): expected a device id: 1-63 of a-z 0-9 _ -, starting with a letter or digit, got "Pi-01"'],
  },
  {
    name: 'device id that would inject a topic level',
    yaml: `${OK_BROKER}device:\n  id: pi/../other\n`,
    expect: ['device.id (FILE:4): expected a device id'],
  },
  {
    name: 'group with an MQTT wildcard',
    yaml: `${OK_BROKER}device:\n  groups: [lab, "#"]\n`,
    expect: ['device.groups.1 (FILE:4): expected a group name'],
  },
  {
    name: 'label value with a space',
    yaml: `${OK_BROKER}device:\n  labels:\n    site: north wing\n`,
    expect: ['device.labels.site (FILE:5): expected a Kubernetes label value'],
  },
  {
    name: 'interval as a word',
    yaml: `${OK_BROKER}telemetry:\n  intervalSeconds: thirty\n`,
    expect: ['telemetry.intervalSeconds (FILE:4): expected a number, got "thirty"'],
  },
  {
    name: 'interval below the minimum',
    yaml: `${OK_BROKER}telemetry:\n  intervalSeconds: 2\n`,
    expect: ['telemetry.intervalSeconds (FILE:4): expected at least 5, got 2'],
  },
  {
    name: 'keepalive not an integer',
    yaml: 'broker:\n  url: mqtts://b.example\n  keepaliveSeconds: 2.5\n',
    expect: ['broker.keepaliveSeconds (FILE:3): expected an integer, got 2.5'],
  },
  {
    name: 'unknown log level',
    yaml: `${OK_BROKER}log:\n  level: loud\n`,
    expect: ['log.level (FILE:4): expected one of: trace, debug, info, warn, error, fatal, silent, got "loud"'],
  },
  {
    name: 'k3s server over plain http',
    yaml: `${OK_BROKER}k3s:\n  serverUrl: http://10.0.0.1:6443\n`,
    expect: ['k3s.serverUrl (FILE:4): expected an https:// URL (k3s only supports https), got "http://10.0.0.1:6443"'],
  },
  {
    name: 'node ip that is not an address',
    yaml: `${OK_BROKER}k3s:\n  nodeIp: [192.168.1.20, eth0]\n`,
    expect: ['k3s.nodeIp.1 (FILE:4): expected an IPv4 or IPv6 address, got "eth0"'],
  },
  {
    name: 'taint without an effect',
    yaml: `${OK_BROKER}k3s:\n  nodeTaints: ["dedicated=edge"]\n`,
    expect: ['k3s.nodeTaints.0 (FILE:4): expected key[=value]:Effect, got "dedicated=edge"'],
  },
  {
    name: 'k3s version without the +k3s suffix',
    yaml: `${OK_BROKER}k3s:\n  version: "1.36.3"\n`,
    expect: ['k3s.version (FILE:4): expected a k3s version like v1.36.3+k3s1, got "1.36.3"'],
  },
  {
    name: 'relative state dir',
    yaml: `${OK_BROKER}stateDir: var/lib/fleetlet\n`,
    expect: ['stateDir (FILE:3): expected an absolute path, got "var/lib/fleetlet"'],
  },
  {
    name: 'token and tokenFile both given',
    yaml: `${OK_BROKER}k3s:\n  token: K10abc::server:s3cr3t-token\n  tokenFile: DIR/token\n`,
    files: { token: { content: 'x\n', mode: 0o600 } },
    expect: ['k3s.token (FILE:4): give either token or tokenFile, not both (k3s.tokenFile is set at FILE:5)'],
    never: ['s3cr3t-token'],
  },
  {
    name: 'token file that does not exist',
    yaml: `${OK_BROKER}k3s:\n  tokenFile: DIR/missing-token\n`,
    expect: ['k3s.tokenFile (FILE:4): cannot read DIR/missing-token: no such file'],
  },
  {
    name: 'token file that is a directory',
    yaml: `${OK_BROKER}k3s:\n  tokenFile: DIR/token-dir\n`,
    files: { 'token-dir': 'dir' },
    expect: ['k3s.tokenFile (FILE:4): DIR/token-dir is not a regular file'],
  },
  {
    name: 'empty password file',
    yaml: 'broker:\n  url: mqtts://b.example\n  auth:\n    username: dev\n    passwordFile: DIR/empty-password\n',
    files: { 'empty-password': { content: '\n', mode: 0o600 } },
    expect: ['broker.auth.passwordFile (FILE:5): DIR/empty-password is empty'],
  },
  {
    name: 'empty inline secret is not echoed',
    yaml: `${OK_BROKER}k3s:\n  token: ""\n`,
    expect: ['k3s.token (FILE:4): expected a non-empty secret'],
  },
  {
    name: 'CA bundle that does not exist',
    yaml: 'broker:\n  url: mqtts://b.example\n  tls:\n    caFile: DIR/nope-ca.pem\n',
    expect: ['broker.tls.caFile (FILE:4): cannot read DIR/nope-ca.pem: no such file'],
  },
  {
    name: 'malformed YAML',
    yaml: 'broker:\n  url: mqtts://b.example\n device: x\n',
    expect: ['(root) (FILE:3:1): malformed YAML: All mapping items must start at the same column'],
  },
  {
    name: 'duplicate keys',
    yaml: 'broker:\n  url: mqtts://a.example\n  url: mqtts://b.example\n',
    expect: ['(root) (FILE:3:3): malformed YAML: Map keys must be unique'],
  },
  {
    name: 'a list at the top level',
    yaml: '- broker\n- device\n',
    expect: ['(root) (FILE:1): expected a YAML mapping of keys at the top level'],
  },
  {
    name: 'plain mqtt without opting in',
    yaml: 'broker:\n  url: mqtt://broker.example:1883\n',
    expect: ['broker.url (FILE:2): plain mqtt:// sends everything unencrypted; use mqtts://, or set broker.allowPlaintext: true'],
  },
  {
    name: 'a k3s artifact mirror over plain http without opting in',
    yaml: `${OK_BROKER}k3s:\n  artifactUrl: http://mirror.example/k3s\n`,
    expect: [
      'k3s.artifactUrl (FILE:4): expected an https:// URL (the k3s it names runs as root); for a mirror without TLS set k3s.allowInsecureMirror: true, got "http://mirror.example/k3s"',
    ],
  },
  {
    name: 'a k3s channel over plain http without opting in',
    yaml: OK_BROKER,
    env: { FLEETLET_K3S_CHANNEL_URL: 'http://mirror.example/channels' },
    expect: [
      'k3s.channelUrl (env FLEETLET_K3S_CHANNEL_URL): expected an https:// URL (the k3s it names runs as root); for a mirror without TLS set k3s.allowInsecureMirror: true, got "http://mirror.example/channels"',
    ],
  },
  {
    name: 'bad number in an env var',
    yaml: OK_BROKER,
    env: { FLEETLET_TELEMETRY_INTERVAL_SECONDS: 'abc' },
    expect: ['telemetry.intervalSeconds (env FLEETLET_TELEMETRY_INTERVAL_SECONDS): expected a number, got "abc"'],
  },
  {
    name: 'misspelt env var',
    yaml: OK_BROKER,
    env: { FLEETLET_BROKER_URLL: 'mqtts://x' },
    expect: ['(root) (env FLEETLET_BROKER_URLL): unknown variable; did you mean FLEETLET_BROKER_URL?'],
  },
  {
    name: 'env var map that is not JSON',
    yaml: OK_BROKER,
    env: { FLEETLET_DEVICE_LABELS: '{site: a' },
    expect: ['device.labels (env FLEETLET_DEVICE_LABELS): expected a JSON object like {"key":"value"}, got "{site: a"'],
  },
  {
    name: 'env var boolean that is not one',
    yaml: OK_BROKER,
    env: { FLEETLET_K3S_WITH_NODE_ID: 'maybe' },
    expect: ['k3s.withNodeId (env FLEETLET_K3S_WITH_NODE_ID): expected a boolean, got "maybe"'],
  },
  {
    name: '--set with an unknown key',
    yaml: OK_BROKER,
    args: ['--set', 'telemetry.intervall=10'],
    expect: ['telemetry.intervall (flag --set telemetry.intervall): unknown key "intervall"; did you mean "intervalSeconds"?'],
  },
  {
    name: 'a problem in a drop-in names the drop-in',
    yaml: OK_BROKER,
    dropIns: { '20-site.yaml': 'device:\n  id: ok-id\n  groups: "lab"\n' },
    expect: ['device.groups (DIR/config.d/20-site.yaml:3): expected a list, got "lab"'],
  },
  // What the agent itself refuses at start (the k3s supervisor: "k3s could not be started: <the same sentence>").
  {
    name: 'k3s enabled without a server to join',
    yaml: OK_BROKER,
    expect: ['k3s.serverUrl (k3s agent arguments): k3s.serverUrl is not set: the agent needs a server to join'],
  },
  {
    name: 'k3s extraArgs with a flag k3s agent does not have',
    yaml: `${OK_BROKER}k3s:\n  serverUrl: https://10.0.0.1:6443\n  token: K10abc::node:pw\n  extraArgs: ["--no-such-flag=1"]\n`,
    expect: ['k3s.extraArgs (k3s agent arguments): k3s.extraArgs: "no-such-flag" is not a flag of k3s agent'],
  },
  {
    name: 'k3s extraArgs that would put the join token on the command line',
    yaml: `${OK_BROKER}k3s:\n  serverUrl: https://10.0.0.1:6443\n  token: K10abc::node:pw\n  extraArgs: ["--token=K10abc::node:very-secret"]\n`,
    expect: ['k3s.extraArgs (k3s agent arguments): k3s.extraArgs: --token is set by fleetlet from its own config (or would expose a secret)'],
    never: ['very-secret'],
  },
  {
    name: 'enrolment over plain http to another machine',
    yaml: `${OK_BROKER}enrolment:\n  hubUrl: http://hub.example\n  allowInsecureLoopback: true\n`,
    expect: ['enrolment.hubUrl (FILE:4): expected an https:// URL (the bootstrap token and the certificate cross it)'],
  },
  {
    name: 'enrolment without the fleet CA',
    yaml: `device:\n  id: pi-01\n${OK_BROKER}enrolment:\n  hubUrl: https://hub.example\n`,
    expect: ['enrolment.caFile (config): enrolment needs the fleet CA: set enrolment.caFile or broker.tls.caFile'],
  },
  {
    name: 'enrolment beside a hand-made client certificate',
    yaml: `device:\n  id: pi-01\n${OK_BROKER}  tls:\n    certFile: DIR/device.pem\nenrolment:\n  hubUrl: https://hub.example\n  caFile: DIR/ca.pem\n`,
    files: { 'device.pem': { content: 'certificate' }, 'ca.pem': { content: 'ca' } },
    expect: ['broker.tls.certFile (config): with enrolment.hubUrl the device makes its own key and certificate: leave broker.tls.certFile and keyFile unset'],
  },
];

describe('fleetlet config check: bad configs exit 78 with precise messages', () => {
  it.each(cases)('$name', (testCase) => {
    const caseDir = join(dir, `case-${++counter}`);
    mkdirSync(caseDir, { recursive: true });
    const fill = (text: string) => text.replaceAll('DIR', caseDir).replaceAll('FILE', join(caseDir, 'config.yaml'));
    for (const [name, file] of Object.entries(testCase.files ?? {})) {
      if (file === 'dir') mkdirSync(join(caseDir, name));
      else {
        writeFileSync(join(caseDir, name), file.content);
        if (file.mode !== undefined) chmodSync(join(caseDir, name), file.mode);
      }
    }
    if (testCase.dropIns) {
      mkdirSync(join(caseDir, 'config.d'));
      for (const [name, text] of Object.entries(testCase.dropIns)) writeFileSync(join(caseDir, 'config.d', name), text);
    }
    writeFileSync(join(caseDir, 'config.yaml'), fill(testCase.yaml));

    const result = runCli(['config', 'check', join(caseDir, 'config.yaml'), ...(testCase.args ?? [])], testCase.env);

    expect(result.stderr).toContain('invalid configuration');
    for (const line of testCase.expect) expect(result.stderr).toContain(`  ${fill(line)}`);
    for (const secret of testCase.never ?? []) expect(result.stdout + result.stderr).not.toContain(secret);
    expect(result.code).toBe(78);
  });

  it('reports every problem of a config in one run', () => {
    const file = join(dir, 'many.yaml');
    writeFileSync(file, 'broker:\n  url: ftp://x\ndevice:\n  id: A\n  nmae: x\nlog:\n  level: loud\n');
    const result = runCli(['config', 'check', file]);
    expect(result.code).toBe(78);
    expect(result.stderr).toContain('4 problems');
    for (const key of ['broker.url', 'device.id', 'device.nmae', 'log.level']) expect(result.stderr).toContain(`  ${key} (`);
  });

  it('accepts a good config, warns about a secret file others can read, and exits 0', () => {
    const token = join(dir, 'readable-token');
    writeFileSync(token, 'K10abc::server:password\n');
    chmodSync(token, 0o644);
    const file = join(dir, 'good.yaml');
    writeFileSync(file, `${OK_BROKER}k3s:\n  serverUrl: https://10.0.0.1:6443\n  tokenFile: ${token}\n`);
    const result = runCli(['config', 'check', file]);
    expect(result.stderr).toContain(`k3s.tokenFile: secret file ${token} is readable by group or others (mode 0644); run: chmod 600 ${token}`);
    expect(result.stdout).toContain('configuration ok');
    expect(result.stdout + result.stderr).not.toContain('K10abc');
    expect(result.code).toBe(0);
  });

  it('accepts a plain-http k3s mirror once allowInsecureMirror names it, and warns', () => {
    const file = join(dir, 'insecure-mirror.yaml');
    const token = join(dir, 'insecure-mirror-token');
    writeFileSync(token, 'K10abc::node:password\n', { mode: 0o600 });
    writeFileSync(
      file,
      `${OK_BROKER}k3s:\n  serverUrl: https://10.0.0.1:6443\n  tokenFile: ${token}\n  artifactUrl: http://10.0.0.9/k3s\n  channelUrl: http://10.0.0.9/channels\n  allowInsecureMirror: true\n`,
    );
    const result = runCli(['config', 'check', file]);
    expect(result.stderr).toContain('k3s.channelUrl and k3s.artifactUrl use plain http:// (k3s.allowInsecureMirror)');
    expect(result.stdout).toContain('configuration ok');
    expect(result.code).toBe(0);
  });

  it('refuses a client certificate issued to another device, with the words the agent refuses it with', async () => {
    const certDir = join(dir, 'other-device-cert');
    mkdirSync(certDir, { recursive: true });
    const ca = createCa(certDir, 'fleet-ca');
    const other = issueCert(ca, certDir, 'pi-other');
    const file = join(certDir, 'config.yaml');
    const tls = `  tls:\n    caFile: ${ca.cert}\n    certFile: ${other.cert}\n    keyFile: ${other.key}\n`;
    writeFileSync(file, `device:\n  id: pi-01\n${OK_BROKER}${tls}k3s:\n  enabled: false\nstateDir: ${join(certDir, 'state')}\n`);
    const refusal = `broker.tls.certFile (${other.cert}): the certificate is issued to "pi-other", not to this device "pi-01"`;

    const check = runCli(['config', 'check', file]);
    expect(check.stderr).toContain(`  ${refusal}`);
    expect(check.code).toBe(78);

    const agent = startCli(['agent', '--config', file]);
    expect(await agent.exited).toBe(78);
    const fatal = agent.output().split('\n').find((line) => line.includes('"level":"fatal"'));
    expect((JSON.parse(fatal!) as { msg: string }).msg).toContain(refusal);
  });

  it('refuses a config file that does not exist when it was named', () => {
    const result = runCli(['config', 'check', join(dir, 'absent.yaml')]);
    expect(result.stderr).toContain(`(root) (${join(dir, 'absent.yaml')}): config file not found`);
    expect(result.code).toBe(78);
  });
});
