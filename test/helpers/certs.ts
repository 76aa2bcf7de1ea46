import { execFileSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Certificates made with openssl at test time, so no key material is ever committed. */
export interface KeyPair {
  cert: string;
  key: string;
}

export interface IssueOptions {
  /** Subject alternative names, e.g. ['IP:127.0.0.1', 'DNS:broker.test'] for a server. */
  altNames?: string[];
  /** Issue a certificate whose validity ended a day ago. */
  expired?: boolean;
  server?: boolean;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

export function createCa(dir: string, name: string): KeyPair {
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  openssl(['req', '-x509', ...EC_KEY, '-keyout', pair.key, '-out', pair.cert, '-subj', `/CN=${name}`, '-days', '2'], dir);
  chmodSync(pair.key, 0o600);
  return pair;
}

export function issueCert(ca: KeyPair, dir: string, commonName: string, options: IssueOptions = {}): KeyPair {
  const base = join(dir, `${commonName}${options.expired ? '-expired' : ''}-${Math.random().toString(36).slice(2, 8)}`);
  const pair = { cert: `${base}.crt`, key: `${base}.key` };
  openssl(['req', ...EC_KEY, '-keyout', pair.key, '-out', `${base}.csr`, '-subj', `/CN=${commonName}`], dir);
  chmodSync(pair.key, 0o600);
  const extensions = [
    `extendedKeyUsage = ${options.server ? 'serverAuth' : 'clientAuth'}`,
    ...(options.altNames?.length ? [`subjectAltName = ${options.altNames.join(', ')}`] : []),
  ];
  writeFileSync(`${base}.ext`, `${extensions.join('\n')}\n`);
  openssl(
    ['x509', '-req', '-in', `${base}.csr`, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', pair.cert,
      '-days', options.expired ? '-1' : '2', '-extfile', `${base}.ext`],
    dir,
  );
  return pair;
}
