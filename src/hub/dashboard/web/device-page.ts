import type { DeviceDetail, EventList, History, PresenceHistory, ResultList } from '../../../protocol/hub-api.js';
import { changedDevice } from '../../../protocol/changed-device.js';
import { getJson, NotAvailable, NotLoggedIn, sendJson } from './api.js';
import { canChange, type App, type Page } from './app.js';
import { healthBadge, k3sText, severityBadge, stateBadge } from './badges.js';
import { drawCharts } from './charts.js';
import { h, replace, type Child } from './dom.js';
import { ago, bytes, figure, time } from './format.js';
import { presenceList } from './presence-list.js';

/**
 * The device page: what the hub knows of one device, its charts over a chosen range, its events, command results and
 * boot/presence history.
 */
const RANGES = [
  { label: '1 hour', hours: 1 },
  { label: '6 hours', hours: 6 },
  { label: '24 hours', hours: 24 },
  { label: '7 days', hours: 24 * 7 },
  { label: '30 days', hours: 24 * 30 },
] as const;
const RELOAD_DEBOUNCE_MS = 1000;

export function devicePage(app: App, deviceId: string): Page {
  const id = encodeURIComponent(deviceId);
  const summary = h('div', { class: 'device-summary' }, h('p', { class: 'muted' }, 'Loading...'));
  const charts = h('div', { class: 'charts' });
  const timeline = h('div', { class: 'timeline' });
  const results = h('div', { class: 'results' });
  const presence = h('div', { class: 'presence' });
  const identity = h('div', { class: 'device-identity' });
  // Up to 6 hours the hub answers from raw samples; longer ranges read rollups, which lag by up to one retention run.
  let rangeHours = 6;
  let destroyCharts = () => {};
  const range = h('select', { 'aria-label': 'Range' }, RANGES.map((r) => h('option', { value: String(r.hours), selected: r.hours === rangeHours }, r.label)));
  range.addEventListener('change', () => {
    rangeHours = Number(range.value);
    loadCharts().catch(failed);
  });
  const element = h(
    'section',
    { class: 'device-page' },
    h('p', {}, h('a', { href: '#/' }, '← Fleet')),
    summary,
    h('h2', {}, 'Charts ', h('label', { class: 'inline' }, 'over the last ', range)),
    charts,
    h('div', { class: 'two' }, h('div', {}, h('h2', {}, 'Events'), timeline), h('div', {}, h('h2', {}, 'Command results'), results)),
    h('h2', {}, 'Boot and presence history'),
    presence,
    identity,
  );

  function failed(err: unknown): void {
    if (err instanceof NotLoggedIn) return app.loggedOut();
    const text = err instanceof NotAvailable ? `The hub knows no device "${deviceId}".` : `Could not load: ${err instanceof Error ? err.message : String(err)}`;
    replace(summary, h('p', { class: 'error' }, text));
  }

  async function loadDetail(): Promise<void> {
    const detail = await getJson<DeviceDetail>(`/api/v1/devices/${id}`);
    replace(summary, detailView(app, detail, () => void loadDetail().catch(failed)));
    replace(identity, identityView(detail));
  }

  async function loadCharts(): Promise<void> {
    const to = new Date();
    const from = new Date(to.getTime() - rangeHours * 3600_000);
    const history = await getJson<History>(`/api/v1/devices/${id}/history?from=${from.toISOString()}&to=${to.toISOString()}`);
    destroyCharts();
    replace(charts, history.points.length === 0 ? h('p', { class: 'muted' }, 'No samples in this range.') : null);
    if (history.truncated) charts.appendChild(h('p', { class: 'muted' }, 'More samples than shown: choose a shorter range.'));
    destroyCharts = history.points.length > 0 ? drawCharts(charts, history) : () => {};
    charts.dataset.step = history.step;
  }

  async function loadLogs(): Promise<void> {
    const [events, commandResults, presenceHistory] = await Promise.all([
      getJson<EventList>(`/api/v1/events?device=${id}&limit=100`),
      getJson<ResultList>(`/api/v1/results?device=${id}&limit=100`),
      getJson<PresenceHistory>(`/api/v1/devices/${id}/presence?limit=50`),
    ]);
    replace(presence, presenceList(presenceHistory));
    replace(timeline, events.events.length === 0 ? h('p', { class: 'muted' }, 'No events.') : h('ol', { class: 'events' }, events.events.map(eventView)));
    replace(results, commandResults.results.length === 0 ? h('p', { class: 'muted' }, 'No command results.') : h('ol', { class: 'events' }, commandResults.results.map(resultView)));
  }

  let reload: ReturnType<typeof setTimeout> | undefined;
  const unsubscribe = app.onChange((change) => {
    if (changedDevice(change) !== deviceId || reload !== undefined) return;
    reload = setTimeout(() => {
      reload = undefined;
      Promise.all([loadDetail(), loadLogs()]).catch(failed);
    }, RELOAD_DEBOUNCE_MS);
  });
  Promise.all([loadDetail(), loadCharts(), loadLogs()]).catch(failed);
  return {
    element,
    dispose: () => {
      unsubscribe();
      clearTimeout(reload);
      destroyCharts();
    },
  };
}

function detailView(app: App, d: DeviceDetail, reload: () => void): HTMLElement {
  const status = d.status as { uptimeSeconds?: number; memory?: { totalBytes: number; availableBytes: number }; disks?: { name: string; freeBytes: number; totalBytes: number }[] } | null;
  const conflict = d.identityConflict ? identityConflictView(app, d, reload) : null;
  return h(
    'div',
    {},
    h('h1', {}, d.name ?? d.deviceId, ' ', stateBadge(d), ' ', healthBadge(d.health)),
    conflict,
    h(
      'dl',
      { class: 'facts' },
      fact('Device id', d.deviceId),
      fact('Last seen', `${time(d.lastSeen)} (${ago(d.lastSeen)})`),
      fact('First seen', time(d.firstSeen)),
      fact('Presence', `${d.presence.at ? `${d.state} since ${time(d.presence.at)}` : d.state}${d.presence.reason ? ` (${d.presence.reason})` : ''}`),
      fact('Boot', d.presence.bootSequence === null ? '-' : `#${d.presence.bootSequence}`),
      fact('fleetlet', d.fleetletVersion ?? '-'),
      fact('k3s', `${d.k3sVersion ?? '-'}, ${k3sText(d)}`),
      fact('CPU', figure(d.vitals?.cpuPercent, ' %')),
      fact('Memory used', `${figure(d.vitals?.memoryUsedPercent, ' %')}${status?.memory ? ` of ${bytes(status.memory.totalBytes)}` : ''}`),
      fact('Temperature', figure(d.vitals?.temperatureC, ' °C', 1)),
      fact('Disks', (status?.disks ?? []).map((disk) => `${disk.name}: ${bytes(disk.freeBytes)} free of ${bytes(disk.totalBytes)}`).join('; ') || '-'),
      fact('Outbox backlog', figure(d.vitals?.outboxBacklog, ' reports')),
      fact('Labels', Object.entries(d.labels).map(([k, v]) => `${k}=${v}`).join(', ') || '-'),
      fact('Groups', d.groups.join(', ') || '-'),
    ),
    d.openConditions.length > 0
      ? h('div', {}, h('h2', {}, 'Open conditions'), h('ul', {}, d.openConditions.map((c) => h('li', {}, severityBadge(c.severity), ` ${c.kind}${c.key ? ` (${c.key})` : ''} since ${time(c.raisedAt)}`))))
      : null,
  );
}

/** What the device says it is: its inventory as sent, and every machine fingerprint its id was seen with. */
function identityView(d: DeviceDetail): HTMLElement {
  return h(
    'div',
    {},
    h('h2', {}, 'Inventory'),
    d.inventory ? h('dl', { class: 'facts inventory' }, Object.entries(d.inventory).flatMap(([k, v]) => fact(k, inventoryValue(v)))) : h('p', { class: 'muted' }, 'No inventory yet.'),
    h('h2', {}, 'Identity fingerprints'),
    h(
      'table',
      { class: 'plain' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Fingerprint'), h('th', {}, 'First seen'), h('th', {}, 'Last seen'), h('th', {}, 'Switches'))),
      h('tbody', {}, d.fingerprints.map((f) => h('tr', {}, h('td', { class: 'mono' }, f.fingerprint), h('td', {}, time(f.firstSeen)), h('td', {}, time(f.lastSeen)), h('td', {}, f.switches)))),
    ),
  );
}

/** A person decides about an identity conflict; only an operator may clear it (the API refuses a viewer anyway). */
function identityConflictView(app: App, d: DeviceDetail, reload: () => void): HTMLElement {
  const box = h('div', { class: 'banner health-critical', role: 'alert' }, `Identity conflict since ${time(d.identityConflictAt)}: another machine reports as this device. `);
  if (canChange(app)) {
    const clear = h('button', { type: 'button', class: 'danger' }, 'Clear identity conflict');
    clear.addEventListener('click', () => {
      if (!confirm(`Clear the identity conflict of ${d.deviceId}?`)) return;
      sendJson('DELETE', `/api/v1/devices/${encodeURIComponent(d.deviceId)}/identity-conflict`)
        .then(reload)
        .catch((err: unknown) => box.appendChild(h('span', {}, ` ${err instanceof Error ? err.message : String(err)}`)));
    });
    box.appendChild(clear);
  }
  return box;
}

function fact(term: string, value: Child): HTMLElement[] {
  return [h('dt', {}, term), h('dd', {}, value)];
}

function inventoryValue(value: unknown): string {
  if (value === null || value === undefined) return '-';
  if (Array.isArray(value)) return value.map(inventoryValue).join(', ');
  if (typeof value === 'object') return Object.entries(value).map(([k, v]) => `${k}: ${inventoryValue(v)}`).join(', ');
  return String(value);
}

function eventView(e: EventList['events'][number]): HTMLElement {
  return h(
    'li',
    { class: 'event' },
    h('div', {}, severityBadge(e.severity), ' ', h('strong', {}, e.kind), e.key ? ` (${e.key})` : '', ` ${e.state} · `, h('time', { datetime: e.occurredAt }, time(e.occurredAt))),
    h('p', {}, e.message),
    e.remedy ? h('p', { class: 'remedy' }, h('strong', {}, 'What to do: '), e.remedy) : null,
  );
}

function resultView(r: ResultList['results'][number]): HTMLElement {
  const result = r.result as { detail?: string; step?: string; data?: { source?: string; lines?: unknown } };
  const lines = Array.isArray(result.data?.lines) ? (result.data.lines as unknown[]).map(String) : undefined;
  const level = r.status === 'failed' || r.status === 'rejected' ? 'critical' : r.status === 'succeeded' ? 'ok' : 'warning';
  return h(
    'li',
    { class: 'event' },
    h('div', {}, h('span', { class: `badge health-${level}` }, r.status), ' ', h('strong', {}, r.commandType ?? 'command'), ` ${r.commandId ?? ''} · `, h('time', { datetime: r.at }, time(r.at))),
    r.reason || result.detail ? h('p', {}, [r.reason, result.detail].filter(Boolean).join(': ')) : null,
    lines ? h('details', {}, h('summary', {}, `${lines.length} log line(s)${result.data?.source ? ` from ${result.data.source}` : ''}`), h('pre', { class: 'log' }, lines.join('\n'))) : null,
  );
}
