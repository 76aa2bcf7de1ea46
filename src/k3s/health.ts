/** Kubelet's healthz: the agent's readiness signal (k3s only prints "up and running" under systemd notify). */
export const DEFAULT_HEALTHZ_URL = 'http://127.0.0.1:10248/healthz';

/** k3s binds kubelet healthz to 127.0.0.1; `--kubelet-arg=healthz-port=N` moves its port, and fleetlet follows. */
export function kubeletHealthzUrl(kubeletArgs: readonly string[]): string {
  const port = kubeletArgs.map((arg) => /^healthz-port=(\d{1,5})$/.exec(arg)?.[1]).find((found) => found !== undefined);
  return port && Number(port) > 0 && Number(port) < 65536 ? `http://127.0.0.1:${Number(port)}/healthz` : DEFAULT_HEALTHZ_URL;
}

export async function probeHealthz(url: string, timeoutMs: number): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const body = (await response.text()).slice(0, 64);
    return response.status === 200 && body.trim() === 'ok';
  } catch {
    return false;
  }
}
