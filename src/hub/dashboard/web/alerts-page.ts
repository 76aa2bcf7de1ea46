import type { AlertItem, AlertList } from '../../../protocol/hub-alerts-api.js';
import { getJson, NotAvailable, NotLoggedIn } from './api.js';
import type { App, Page } from './app.js';
import { severityBadge } from './badges.js';
import { h, replace } from './dom.js';
import { ago, time } from './format.js';

/** Open and resolved alerts, from GET /api/v1/alerts; a hub without the alert engine answers 404, said in words. */
export function alertsPage(app: App): Page {
  const open = h('div', {}, h('p', { class: 'muted' }, 'Loading...'));
  const resolved = h('div', {});
  const element = h('section', { class: 'alerts-page' }, h('h1', {}, 'Alerts'), h('h2', {}, 'Open'), open, h('h2', {}, 'Resolved'), resolved);

  async function load(): Promise<void> {
    const [openList, resolvedList] = await Promise.all([getJson<AlertList>('/api/v1/alerts?state=open&limit=500'), getJson<AlertList>('/api/v1/alerts?state=resolved&limit=100')]);
    replace(open, alertTable(openList.alerts, 'No open alert.'));
    replace(resolved, alertTable(resolvedList.alerts, 'No resolved alert.'));
  }

  const reload = () =>
    load().catch((err: unknown) => {
      if (err instanceof NotLoggedIn) return app.loggedOut();
      replace(open, h('p', { class: 'notice' }, err instanceof NotAvailable ? 'Alerts are not available on this hub.' : `Could not load the alerts: ${String(err)}`));
      replace(resolved);
    });
  const timer = setInterval(() => void reload(), 15_000);
  void reload();
  return { element, dispose: () => clearInterval(timer) };
}

function alertTable(alerts: AlertItem[], empty: string): HTMLElement {
  if (alerts.length === 0) return h('p', { class: 'muted' }, empty);
  return h(
    'table',
    { class: 'plain' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Severity'), h('th', {}, 'Rule'), h('th', {}, 'Subject'), h('th', {}, 'Summary'), h('th', {}, 'Opened'), h('th', {}, 'Updated / resolved'))),
    h(
      'tbody',
      {},
      alerts.map((a) =>
        h(
          'tr',
          {},
          h('td', {}, severityBadge(a.severity)),
          h('td', {}, a.rule),
          h('td', {}, a.deviceId ? h('a', { href: `#/devices/${encodeURIComponent(a.deviceId)}` }, a.deviceId) : a.rolloutId ? h('a', { href: `#/rollouts/${encodeURIComponent(a.rolloutId)}` }, a.subject) : a.subject),
          h('td', {}, a.summary, a.remedy ? h('p', { class: 'remedy' }, h('strong', {}, 'What to do: '), a.remedy) : null),
          h('td', {}, time(a.openedAt)),
          h('td', {}, a.resolvedAt ? `resolved ${time(a.resolvedAt)}` : `updated ${ago(a.updatedAt)}`),
        ),
      ),
    ),
  );
}
