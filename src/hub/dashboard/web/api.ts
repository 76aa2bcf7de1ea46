/**
 * Requests to the hub's API from the page: same origin, with the session cookie the login set. The browser adds the
 * Origin header to every POST and DELETE, which the API checks for cookie sessions.
 */
export class NotLoggedIn extends Error {}
/** The hub answers 404 for this path: the feature is not part of this hub (or the thing is gone). */
export class NotAvailable extends Error {}

export async function getJson<T>(path: string): Promise<T> {
  return parse<T>(await fetch(path, { headers: { accept: 'application/json' }, credentials: 'same-origin' }));
}

export async function sendJson<T>(method: 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, credentials: 'same-origin', headers: { accept: 'application/json' } };
  if (body !== undefined) {
    init.headers = { accept: 'application/json', 'content-type': 'application/json' };
    init.body = JSON.stringify(body);
  }
  return parse<T>(await fetch(path, init));
}

async function parse<T>(res: Response): Promise<T> {
  const body = (await res.json().catch(() => ({}))) as { error?: string };
  if (res.status === 401) throw new NotLoggedIn(body.error ?? 'not logged in');
  if (res.status === 404) throw new NotAvailable(body.error ?? 'not found');
  if (!res.ok) throw new Error(body.error ?? `the hub answered ${res.status}`);
  return body as T;
}
