import { describe, expect, it } from 'vitest';
import { UnsupportedArchError } from '../../src/k3s/errors.js';
import { kubeletHealthzUrl } from '../../src/k3s/health.js';
import { artifactUrl, k3sArch, parseChecksums, releaseArtifacts } from '../../src/k3s/release.js';

describe('k3s release artifacts', () => {
  it('maps machine names to k3s architectures as install.sh does', () => {
    expect(['x64', 'x86_64', 'amd64'].map(k3sArch)).toEqual(['amd64', 'amd64', 'amd64']);
    expect(['arm64', 'aarch64'].map(k3sArch)).toEqual(['arm64', 'arm64']);
    expect(['arm', 'armv7l', 'armv6l'].map(k3sArch)).toEqual(['arm', 'arm', 'arm']);
    expect(() => k3sArch('s390x')).toThrow(UnsupportedArchError);
    expect(() => k3sArch('riscv64')).toThrow(/unsupported architecture riscv64/);
  });

  it('names the binary, checksum file and image archives of each architecture', () => {
    expect(releaseArtifacts('amd64')).toMatchObject({ binaryName: 'k3s', checksumName: 'sha256sum-amd64.txt' });
    expect(releaseArtifacts('arm64')).toMatchObject({ binaryName: 'k3s-arm64', checksumName: 'sha256sum-arm64.txt' });
    expect(releaseArtifacts('arm')).toMatchObject({ binaryName: 'k3s-armhf', checksumName: 'sha256sum-arm.txt' });
    expect(releaseArtifacts('arm').imageNames).toContain('k3s-airgap-images-arm.tar.zst');
  });

  it('URL-encodes the + of the version like install.sh', () => {
    expect(artifactUrl('https://github.com/k3s-io/k3s/releases/download/', 'v1.36.3+k3s1', 'k3s-arm64')).toBe(
      'https://github.com/k3s-io/k3s/releases/download/v1.36.3%2Bk3s1/k3s-arm64',
    );
  });

  it('reads sha256sum lines in text and binary mode and ignores anything else', () => {
    const a = 'a'.repeat(64);
    const b = 'B'.repeat(64);
    const sums = parseChecksums(`${a}  k3s\n${b} *k3s-arm64\nnot a line\n${'c'.repeat(63)}  short\n`);
    expect([...sums]).toEqual([
      ['k3s', a],
      ['k3s-arm64', 'b'.repeat(64)],
    ]);
  });
});

describe('kubelet healthz address', () => {
  it('follows --kubelet-arg=healthz-port and defaults to 10248', () => {
    expect(kubeletHealthzUrl([])).toBe('http://127.0.0.1:10248/healthz');
    expect(kubeletHealthzUrl(['max-pods=50', 'healthz-port=20248'])).toBe('http://127.0.0.1:20248/healthz');
    expect(kubeletHealthzUrl(['healthz-port=0'])).toBe('http://127.0.0.1:10248/healthz');
  });
});
