import { K3S_VERSION_PATTERN } from '../protocol/version-patterns.js';
import { DownloadError, ReleaseNotFoundError, UnsupportedArchError } from './errors.js';
import { errorMessage } from '../lib/errors.js';

/**
 * Where k3s's release artifacts live and what they are called, as install.sh computes it (k3s-facts.md §4):
 * binary `${artifactUrl}/${version with + as %2B}/k3s${suffix}`, checksums `.../sha256sum-${arch}.txt`.
 */
export type K3sArch = 'amd64' | 'arm64' | 'arm';

export interface ReleaseArtifacts {
  arch: K3sArch;
  binaryName: string;
  checksumName: string;
  imageNames: string[];
}

/** Maps Node's process.arch or `uname -m` to k3s's names; anything else is refused like install.sh does. */
export function k3sArch(machine: string): K3sArch {
  if (machine === 'x64' || machine === 'amd64' || machine === 'x86_64') return 'amd64';
  if (machine === 'arm64' || machine === 'aarch64') return 'arm64';
  if (machine === 'arm' || machine.startsWith('armv')) return 'arm';
  throw new UnsupportedArchError(`unsupported architecture ${machine}: k3s ships amd64, arm64 and armhf builds`);
}

export function releaseArtifacts(arch: K3sArch): ReleaseArtifacts {
  const suffix = { amd64: '', arm64: '-arm64', arm: '-armhf' }[arch];
  return {
    arch,
    binaryName: `k3s${suffix}`,
    checksumName: `sha256sum-${arch}.txt`,
    imageNames: ['tar.zst', 'tar.gz', 'tar'].map((ext) => `k3s-airgap-images-${arch}.${ext}`),
  };
}

export function artifactUrl(baseUrl: string, version: string, file: string): string {
  return `${baseUrl.replace(/\/+$/, '')}/${encodeURIComponent(version)}/${file}`;
}

/** Largest checksum file accepted: the real ones are under 1 KiB. */
export const MAX_CHECKSUM_FILE_BYTES = 64 * 1024;

/** Parses `sha256sum` output ("<64 hex>  <name>" or "<64 hex> *<name>") into name -> lower-case hash. */
export function parseChecksums(text: string): Map<string, string> {
  const sums = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^([0-9a-fA-F]{64}) [ *](.+?)\s*$/.exec(line);
    if (match) sums.set(match[2]!, match[1]!.toLowerCase());
  }
  return sums;
}

export function expectedSha256(sums: Map<string, string>, file: string, checksumName: string): string {
  const sha = sums.get(file);
  if (!sha) throw new ReleaseNotFoundError(`${checksumName} has no entry for ${file}; refusing to install an unverified binary`);
  return sha;
}

export interface HttpGet {
  (url: string, init?: { redirect?: 'manual' | 'follow'; signal?: AbortSignal }): Promise<Response>;
}

/**
 * The channel server answers 302 to the release page of the channel's version; like install.sh, the version is
 * the last path segment of where it points. A pinned version skips the network.
 */
export async function resolveVersion(
  options: { version?: string | undefined; channel: string; channelUrl: string },
  get: HttpGet = fetch,
): Promise<string> {
  if (options.version) return options.version;
  const url = `${options.channelUrl.replace(/\/+$/, '')}/${options.channel}`;
  let response: Response;
  try {
    response = await get(url, { redirect: 'manual', signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    throw new DownloadError(`cannot reach the k3s channel server ${url}: ${errorMessage(err, { withCause: true })}`, { cause: err });
  }
  await response.body?.cancel();
  const location = response.status >= 300 && response.status < 400 ? response.headers.get('location') : null;
  if (!location) throw new ReleaseNotFoundError(`channel ${options.channel} at ${url} answered ${response.status}, not a redirect`);
  const segment = decodeURIComponent(new URL(location, url).pathname.split('/').filter(Boolean).pop() ?? '');
  if (!K3S_VERSION_PATTERN.test(segment)) {
    throw new ReleaseNotFoundError(`channel ${options.channel} points at ${location}, which names no k3s version`);
  }
  return segment;
}

/** Downloads a small text file (the checksum list) with a size bound. */
export async function fetchSmallText(url: string, maxBytes: number, get: HttpGet = fetch): Promise<string> {
  let response: Response;
  try {
    response = await get(url, { signal: AbortSignal.timeout(60_000) });
  } catch (err) {
    throw new DownloadError(`cannot download ${url}: ${errorMessage(err, { withCause: true })}`, { cause: err });
  }
  if (response.status === 404) {
    await response.body?.cancel();
    throw new ReleaseNotFoundError(`${url} does not exist (HTTP 404): is the version or the artifact URL wrong?`);
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new DownloadError(`downloading ${url} failed: HTTP ${response.status}`);
  }
  const text = Buffer.from(await readBounded(response, maxBytes, url)).toString('utf8');
  return text;
}

async function readBounded(response: Response, maxBytes: number, url: string): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of response.body ?? []) {
    total += (chunk as Uint8Array).byteLength;
    if (total > maxBytes) throw new ReleaseNotFoundError(`${url} is larger than ${maxBytes} bytes; not a checksum file`);
    chunks.push(chunk as Uint8Array);
  }
  return Buffer.concat(chunks);
}
