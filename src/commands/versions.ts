/**
 * Orders fleetlet versions (1.2.3, 1.2.3-rc.1) and k3s versions (v1.36.3+k3s1) by SemVer 2.0.0 precedence: the
 * numbers, then a prerelease sorts before its release (1.2.3-rc.1 < 1.2.3), its dot-separated identifiers
 * compared numerically when both are digits, as text otherwise, and digits before text. Build metadata does not
 * count, except k3s's own `+k3sN`, which numbers rebuilds of one upstream version and so orders them.
 */
export function compareVersions(a: string, b: string): number {
  const [x, y] = [parseVersion(a), parseVersion(b)];
  if (!x || !y) return compareNumbers(a, b);
  for (let i = 0; i < 3; i++) {
    const order = compareDigits(x.core[i]!, y.core[i]!);
    if (order !== 0) return order;
  }
  const prerelease = comparePrereleases(x.prerelease, y.prerelease);
  if (prerelease !== 0) return prerelease;
  if (x.k3sBuild !== undefined && y.k3sBuild !== undefined) return compareDigits(x.k3sBuild, y.k3sBuild);
  return 0;
}

interface Version {
  core: [string, string, string];
  prerelease: string[];
  k3sBuild: string | undefined;
}

const SEMVER = /^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$/;

function parseVersion(text: string): Version | undefined {
  const match = SEMVER.exec(text);
  if (!match) return undefined;
  return {
    core: [match[1]!, match[2]!, match[3]!],
    prerelease: match[4]?.split('.') ?? [],
    k3sBuild: /^k3s(\d+)$/.exec(match[5] ?? '')?.[1],
  };
}

function comparePrereleases(x: string[], y: string[]): number {
  if (x.length === 0 || y.length === 0) return Math.sign(y.length - x.length); // a release follows its prereleases
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const order = compareIdentifiers(x[i]!, y[i]!);
    if (order !== 0) return order;
  }
  return Math.sign(x.length - y.length);
}

function compareIdentifiers(x: string, y: string): number {
  const [xDigits, yDigits] = [/^\d+$/.test(x), /^\d+$/.test(y)];
  if (xDigits && yDigits) return compareDigits(x, y);
  if (xDigits !== yDigits) return xDigits ? -1 : 1;
  return x < y ? -1 : x > y ? 1 : 0; // ASCII order: identifiers are [0-9A-Za-z-] only
}

/** Decimal strings of any length, compared as numbers without the precision limit of a double. */
function compareDigits(x: string, y: string): number {
  const [p, q] = [x.replace(/^0+(?=\d)/, ''), y.replace(/^0+(?=\d)/, '')];
  if (p.length !== q.length) return Math.sign(p.length - q.length);
  return p < q ? -1 : p > q ? 1 : 0;
}

/** Versions that are not SemVer-shaped (a k3s binary may print anything): their numbers, left to right. */
function compareNumbers(a: string, b: string): number {
  const parts = (v: string) => v.match(/\d+/g) ?? [];
  const [x, y] = [parts(a), parts(b)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const order = compareDigits(x[i] ?? '0', y[i] ?? '0');
    if (order !== 0) return order;
  }
  return 0;
}
