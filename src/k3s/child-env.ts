/**
 * What a k3s child (the agent, `k3s --version`) may see of fleetlet's environment. fleetlet's own environment can
 * hold its secrets (FLEETLET_BROKER_AUTH_PASSWORD, FLEETLET_K3S_TOKEN), and k3s runs as root for a long time and
 * execs many programs of its own (containerd, shims, CNI plugins) that inherit what it has. So k3s gets an
 * allow-list, never fleetlet's environment minus some names.
 */

/** Passed by exact name: the search path, locale, home and time zone, and proxies as k3s and containerd read them. */
const PASSED_NAMES: ReadonlySet<string> = new Set([
  'PATH',
  'HOME',
  'LANG',
  'LANGUAGE',
  'TZ',
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'NO_PROXY',
  'http_proxy',
  'https_proxy',
  'no_proxy',
  // k3s hands these to containerd only, so that image pulls can use a proxy the kubelet does not (k3s docs, "Configuring an HTTP proxy").
  'CONTAINERD_HTTP_PROXY',
  'CONTAINERD_HTTPS_PROXY',
  'CONTAINERD_NO_PROXY',
]);

/** Prefixes passed whole: the locale categories. */
const PASSED_PREFIXES = ['LC_'] as const;

/**
 * Never passed, even when k3s.passEnv names them: fleetlet's own settings and secrets; K3S_* (k3s would read a stray
 * K3S_URL or K3S_TOKEN over fleetlet's config); systemd's notification and watchdog variables, which address
 * fleetlet, not k3s (k3s would send READY=1 in fleetlet's name).
 */
const NEVER_PASSED_PREFIXES = ['FLEETLET_', 'K3S_', 'NOTIFY_SOCKET', 'WATCHDOG_'] as const;

export function neverPassed(name: string): boolean {
  return NEVER_PASSED_PREFIXES.some((prefix) => name.startsWith(prefix));
}

/** Whether `name` matches an entry of k3s.passEnv: an exact name, or a prefix ending in "*". */
function namedIn(name: string, passEnv: readonly string[]): boolean {
  return passEnv.some((entry) => (entry.endsWith('*') ? name.startsWith(entry.slice(0, -1)) : name === entry));
}

/**
 * The environment of a k3s child: the allow-listed variables of `base` (plus those k3s.passEnv names), then the
 * K3S_* variables fleetlet sets on purpose (`own`), which hold no secret: the join token goes through --token-file.
 */
export function k3sChildEnvironment(
  base: Record<string, string | undefined>,
  own: Record<string, string> = {},
  passEnv: readonly string[] = [],
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(base)) {
    if (value === undefined || neverPassed(name)) continue;
    if (PASSED_NAMES.has(name) || PASSED_PREFIXES.some((prefix) => name.startsWith(prefix)) || namedIn(name, passEnv)) env[name] = value;
  }
  return { ...env, ...own };
}
