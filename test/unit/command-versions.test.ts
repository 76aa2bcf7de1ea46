import { describe, expect, it } from 'vitest';
import { compareVersions } from '../../src/commands/versions.js';

/** Every pair of a list given in ascending order must compare as its positions do. */
function expectAscending(versions: string[]): void {
  for (let i = 0; i < versions.length; i++) {
    for (let j = 0; j < versions.length; j++) {
      expect(compareVersions(versions[i]!, versions[j]!), `${versions[i]} vs ${versions[j]}`).toBe(Math.sign(i - j));
    }
  }
}

describe('compareVersions', () => {
  it('orders k3s versions by their numbers, not as text', () => {
    expect(compareVersions('v1.36.3+k3s1', 'v1.36.3+k3s1')).toBe(0);
    expect(compareVersions('v1.36.10+k3s1', 'v1.36.9+k3s1')).toBe(1);
    expect(compareVersions('v1.36.3+k3s2', 'v1.36.3+k3s1')).toBe(1);
    expect(compareVersions('v1.9.0+k3s1', 'v1.10.0+k3s1')).toBe(-1);
  });

  it('orders k3s rebuilds by their k3sN suffix, also past 9, and release candidates before the release', () => {
    expectAscending(['v1.30.0-rc1+k3s1', 'v1.30.0-rc2+k3s1', 'v1.30.0+k3s1', 'v1.30.0+k3s2', 'v1.30.0+k3s10', 'v1.30.1+k3s1']);
  });

  it('orders fleetlet versions', () => {
    expect(compareVersions('0.1.1', '0.1.0')).toBe(1);
    expect(compareVersions('1.0.0', '0.99.99')).toBe(1);
    expect(compareVersions('0.2.0', '0.10.0')).toBe(-1);
  });

  it('puts a prerelease before its release: 1.2.3-rc.1 < 1.2.3', () => {
    expect(compareVersions('1.2.3-rc.1', '1.2.3')).toBe(-1);
    expect(compareVersions('1.2.3', '1.2.3-rc.1')).toBe(1);
    expect(compareVersions('1.2.3-rc.1', '1.2.2')).toBe(1);
  });

  it('follows the precedence example of SemVer 2.0.0 section 11', () => {
    expectAscending([
      '1.0.0-alpha',
      '1.0.0-alpha.1',
      '1.0.0-alpha.beta',
      '1.0.0-beta',
      '1.0.0-beta.2',
      '1.0.0-beta.11',
      '1.0.0-rc.1',
      '1.0.0',
      '2.0.0',
      '2.1.0',
      '2.1.1',
    ]);
  });

  it('compares identifiers as numbers when both are digits (without a double\'s limit), as ASCII text otherwise', () => {
    expect(compareVersions('1.0.0-rc.10', '1.0.0-rc.9')).toBe(1);
    expect(compareVersions('1.0.0-rc10', '1.0.0-rc9')).toBe(-1);
    expect(compareVersions('1.0.0-Beta', '1.0.0-alpha')).toBe(-1);
    expect(compareVersions('1.0.0-9', '1.0.0-a')).toBe(-1);
    expect(compareVersions('9007199254740993.0.0', '9007199254740992.0.0')).toBe(1);
  });

  it('ignores build metadata other than k3sN', () => {
    expect(compareVersions('1.2.3+build.5', '1.2.3+build.4')).toBe(0);
    expect(compareVersions('1.2.3+sha.abc', '1.2.3')).toBe(0);
    expect(compareVersions('1.2.3-rc.1+x', '1.2.3-rc.1+y')).toBe(0);
  });

  it('still orders versions that are not SemVer-shaped by their numbers', () => {
    expect(compareVersions('v1.36', 'v1.36.1')).toBe(-1);
    expect(compareVersions('v1.36.3_k3s10', 'v1.36.3_k3s9')).toBe(1);
    expect(compareVersions('2.31', '2.31.0')).toBe(0);
  });
});
