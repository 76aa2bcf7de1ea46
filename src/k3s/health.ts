/** Kubelet's healthz: the agent's readiness signal (k3s only prints "up and running" under systemd notify). */
export const DEFAULT_HEALTHZ_URL = 'http://127.0.0.1:10248/healthz';

export async function probeHealthz(url: string, timeoutMs: number): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const body = (await response.text()).slice(0, 64);
    return response.status === 200 && body.trim() === 'ok';
  } catch {
    return false;
  }
}
