import { describe, expect, it } from 'vitest';
import { compareVersions } from '../../src/commands/versions.js';

describe('compareVersions', () => {
  it('orders k3s versions by their numbers, not as text', () => {
    expect(compareVersions('v1.36.3+k3s1', 'v1.36.3+k3s1')).toBe(0);
    expect(compareVersions('v1.36.10+k3s1', 'v1.36.9+k3s1')).toBe(1);
    expect(compareVersions('v1.36.3+k3s2', 'v1.36.3+k3s1')).toBe(1);
    expect(compareVersions('v1.9.0+k3s1', 'v1.10.0+k3s1')).toBe(-1);
  });

  it('orders fleetlet versions', () => {
    expect(compareVersions('0.1.1', '0.1.0')).toBe(1);
    expect(compareVersions('1.0.0', '0.99.99')).toBe(1);
    expect(compareVersions('0.2.0', '0.10.0')).toBe(-1);
  });
});
