import type { HubRolloutDetail, HubRolloutList, HubRolloutSummary } from '../../../protocol/hub-rollouts-api.js';
import { getJson, NotAvailable, NotLoggedIn, sendJson } from './api.js';
import { canChange, type App, type Page } from './app.js';
import { h, replace } from './dom.js';
import { duration, time } from './format.js';

/**
 * Rollouts run by the hub (GET /api/v1/rollouts, /api/v1/rollouts/ID): plan, batches, each device's outcome and
 * timing, why one halted; pause, resume and abort for operators. A hub without rollouts answers 404, said in words.
 */
export function rolloutsPage(app: App, rolloutId: string | undefined): Page {
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading...'));
  const element = h('section', { class: 'rollouts-page' }, h('h1', {}, rolloutId ? `Rollout ${rolloutId}` : 'Rollouts'), body);

  async function load(): Promise<void> {
    if (rolloutId === undefined) {
      const list = await getJson<HubRolloutList>('/api/v1/rollouts');
      replace(body, list.rollouts.length === 0 ? h('p', { class: 'muted' }, 'No rollouts.') : listView(list.rollouts));
    } else {
      const detail = await getJson<HubRolloutDetail>(`/api/v1/rollouts/${encodeURIComponent(rolloutId)}`);
      replace(body, detailView(app, detail, reload));
    }
  }

  const reload = () =>
    load().catch((err: unknown) => {
      if (err instanceof NotLoggedIn) return app.loggedOut();
      const text = err instanceof NotAvailable ? (rolloutId ? `${err.message}.` : 'Rollouts are not available on this hub.') : `Could not load: ${String(err)}`;
      replace(body, h('p', { class: 'notice' }, text));
    });
  const timer = setInterval(() => void reload(), 5000);
  void reload();
  return { element, dispose: () => clearInterval(timer) };
}

function progress(r: HubRolloutSummary): string {
  const done = (r.counts.succeeded ?? 0) + (r.counts.failed ?? 0) + (r.counts.regressed ?? 0);
  return `${done} of ${r.devices} done, ${(r.counts.failed ?? 0) + (r.counts.regressed ?? 0)} failed; batch ${r.currentBatch + 1} of ${r.batchCount}`;
}

function listView(rollouts: HubRolloutSummary[]): HTMLElement {
  return h(
    'table',
    { class: 'plain' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Rollout'), h('th', {}, 'State'), h('th', {}, 'What'), h('th', {}, 'Progress'), h('th', {}, 'Started'))),
    h(
      'tbody',
      {},
      rollouts.map((r) =>
        h(
          'tr',
          {},
          h('td', {}, h('a', { href: `#/rollouts/${encodeURIComponent(r.rolloutId)}` }, r.rolloutId)),
          h('td', {}, stateBadge(r.state), r.stateReason ? h('small', {}, ` ${r.stateReason}`) : null),
          h('td', {}, `${r.kind}: ${r.description}`),
          h('td', {}, progress(r)),
          h('td', {}, `${time(r.createdAt)} by ${r.createdBy}`),
        ),
      ),
    ),
  );
}

function stateBadge(state: HubRolloutSummary['state']): HTMLElement {
  const level = state === 'halted' || state === 'aborted' || state === 'expired' ? 'critical' : state === 'paused' ? 'warning' : 'ok';
  return h('span', { class: `badge health-${level}` }, state);
}

function detailView(app: App, r: HubRolloutDetail, reload: () => Promise<void>): HTMLElement {
  const threshold = 'count' in r.maxFailures ? `${r.maxFailures.count} device(s)` : `${r.maxFailures.percent} %`;
  return h(
    'div',
    {},
    h('p', {}, h('a', { href: '#/rollouts' }, '← Rollouts')),
    h('p', {}, stateBadge(r.state), ` ${r.kind}: ${r.description}`),
    r.stateReason ? h('p', { class: 'banner health-warning' }, r.stateReason) : null,
    canChange(app) ? actions(r, reload) : null,
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'Progress'),
      h('dd', {}, progress(r)),
      h('dt', {}, 'Plan'),
      h('dd', {}, `${r.batchCount} batch(es)${r.canaries ? ', the first of canaries' : ''}; halts beyond ${threshold} failed; a device has ${duration(r.deviceTimeoutSeconds)} to answer, then is watched ${duration(r.watchSeconds)}`),
      h('dt', {}, 'Deadline'),
      h('dd', {}, time(r.deadline)),
      h('dt', {}, 'Started'),
      h('dd', {}, `${time(r.createdAt)} by ${r.createdBy}`),
    ),
    r.batches.map((b) =>
      h(
        'details',
        { open: b.state === 'running' },
        h('summary', {}, `Batch ${b.index + 1}: ${b.state}, ${b.devices.length} device(s)${b.startedAt ? `, started ${time(b.startedAt)}` : ''}${b.finishedAt ? `, finished ${time(b.finishedAt)}` : ''}`),
        h(
          'table',
          { class: 'plain' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Device'), h('th', {}, 'Outcome'), h('th', {}, 'Sent'), h('th', {}, 'Took'), h('th', {}, 'Detail'))),
          h(
            'tbody',
            {},
            b.devices.map((d) =>
              h(
                'tr',
                {},
                h('td', {}, h('a', { href: `#/devices/${encodeURIComponent(d.deviceId)}` }, d.deviceId)),
                h('td', {}, h('span', { class: `badge outcome-${d.outcome}` }, d.outcome)),
                h('td', {}, time(d.sentAt)),
                h('td', {}, d.sentAt && d.finishedAt ? duration((Date.parse(d.finishedAt) - Date.parse(d.sentAt)) / 1000) : '-'),
                h('td', {}, d.detail ?? ''),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

/** Pause, resume, abort: shown to operators only; the API refuses a viewer whatever the page shows. */
function actions(r: HubRolloutDetail, reload: () => Promise<void>): HTMLElement {
  const error = h('span', { class: 'error', role: 'alert' });
  const button = (action: 'pause' | 'resume' | 'abort', enabled: boolean) => {
    const b = h('button', { type: 'button', class: action === 'abort' ? 'danger' : '', disabled: !enabled }, action[0]!.toUpperCase() + action.slice(1));
    b.addEventListener('click', () => {
      if (action === 'abort' && !confirm(`Abort rollout ${r.rolloutId} for good?`)) return;
      sendJson('POST', `/api/v1/rollouts/${encodeURIComponent(r.rolloutId)}/${action}`, {})
        .then(reload)
        .catch((err: unknown) => replace(error, err instanceof Error ? err.message : String(err)));
    });
    return b;
  };
  const live = r.state === 'running' || r.state === 'paused' || r.state === 'halted';
  return h('p', { class: 'actions' }, button('pause', r.state === 'running'), button('resume', r.state === 'paused' || r.state === 'halted'), button('abort', live), error);
}
