import type { DeviceDetail, DeviceList, DeviceSummary, StreamChange } from '../../../protocol/hub-api.js';
import { getJson, NotLoggedIn } from './api.js';
import type { App, Page } from './app.js';
import { h, replace } from './dom.js';
import { FleetTable, sortValue, type SortKey } from './fleet-table.js';

/**
 * The fleet page: every device, loaded once (pages of 500 from /api/v1/devices) and kept current from the live
 * stream; filtering, search and sorting happen in the page, on data already there, so they cost no request.
 */
const PAGE = 500;
/** Devices that reported are read again (their vitals changed) in one batch at most this often. */
const REFRESH_MS = 2000;
const REFRESH_MAX = 50;

interface Filter {
  search: string;
  state: string;
  health: string;
  version: string;
}

export function fleetPage(app: App): Page {
  const devices = new Map<string, DeviceSummary>();
  const filter: Filter = { search: '', state: '', health: '', version: '' };
  let sort: { key: SortKey; descending: boolean } = { key: 'name', descending: false };
  const stale = new Set<string>();
  const table = new FleetTable(sort, (next) => {
    sort = next;
    update();
  });
  const status = h('p', { class: 'muted', role: 'status' }, 'Loading devices...');
  const counts = h('div', { class: 'counts', 'aria-label': 'Counts' });
  const search = h('input', { type: 'search', placeholder: 'Search id, name, label, group', 'aria-label': 'Search devices' });
  const stateSelect = select('State', ['', 'online', 'offline', 'unknown']);
  const healthSelect = select('Health', ['', 'ok', 'warning', 'critical']);
  const versionSelect = select('fleetlet version', ['']);
  search.addEventListener('input', () => ((filter.search = search.value.trim().toLowerCase()), update()));
  stateSelect.addEventListener('change', () => ((filter.state = stateSelect.value), update()));
  healthSelect.addEventListener('change', () => ((filter.health = healthSelect.value), update()));
  versionSelect.addEventListener('change', () => ((filter.version = versionSelect.value), update()));
  const element = h(
    'section',
    { class: 'fleet-page' },
    h('h1', {}, 'Fleet'),
    counts,
    h('div', { class: 'filters' }, search, labelled('State', stateSelect), labelled('Health', healthSelect), labelled('fleetlet', versionSelect)),
    status,
    table.element,
  );

  function update(): void {
    const shown = [...devices.values()].filter((d) => matches(d, filter));
    const direction = sort.descending ? -1 : 1;
    shown.sort((a, b) => (compare(sortValue(a, sort.key), sortValue(b, sort.key)) || compare(a.deviceId, b.deviceId)) * direction);
    table.show(shown);
    replace(status, `${shown.length} of ${devices.size} devices shown`);
    drawCounts();
  }

  function drawCounts(): void {
    const byState = countBy([...devices.values()], (d) => d.state);
    const byVersion = countBy([...devices.values()], (d) => d.fleetletVersion ?? 'unknown');
    const chip = (text: string, n: number, className: string, apply: () => void) => {
      const button = h('button', { type: 'button', class: `chip ${className}` }, h('strong', {}, n), ` ${text}`);
      button.addEventListener('click', apply);
      return button;
    };
    replace(
      counts,
      h('span', { class: 'chip total' }, h('strong', {}, devices.size), ' devices'),
      ['online', 'offline', 'unknown']
        .filter((s) => byState.has(s))
        .map((s) => chip(s, byState.get(s)!, `state-${s}`, () => ((stateSelect.value = s), (filter.state = s), update()))),
      [...byVersion]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 6)
        .map(([version, n]) => chip(`on ${version}`, n, 'version', () => ((versionSelect.value = version), (filter.version = version), update()))),
    );
    const versions = ['', ...[...byVersion.keys()].sort()];
    if (versions.join('\n') !== [...versionSelect.options].map((o) => o.value).join('\n')) {
      replace(versionSelect, versions.map((v) => h('option', { value: v }, v || 'any')));
      versionSelect.value = filter.version;
    }
  }

  const failed = (err: unknown) => {
    if (err instanceof NotLoggedIn) return app.loggedOut();
    replace(status, `Could not load the devices: ${err instanceof Error ? err.message : String(err)}`);
  };

  async function load(): Promise<void> {
    const first = await getJson<DeviceList>(`/api/v1/devices?limit=${PAGE}`);
    const rest = await Promise.all(
      Array.from({ length: Math.ceil(first.total / PAGE) - 1 }, (_, i) => getJson<DeviceList>(`/api/v1/devices?limit=${PAGE}&offset=${(i + 1) * PAGE}`)),
    );
    for (const page of [first, ...rest]) for (const d of page.devices) devices.set(d.deviceId, d);
    update();
    element.dataset.loaded = 'true';
  }

  function onChange(change: StreamChange): void {
    if (change.type === 'event' || change.type === 'alert.opened' || change.type === 'alert.resolved') return;
    const device = devices.get(change.deviceId);
    if (!device) {
      stale.add(change.deviceId);
      return;
    }
    if (change.type === 'device.offline') devices.set(change.deviceId, { ...device, state: 'offline' });
    else if (change.type === 'device.online') devices.set(change.deviceId, { ...device, state: 'online' });
    else {
      devices.set(change.deviceId, { ...device, lastSeen: change.lastSeen });
      stale.add(change.deviceId);
    }
    update();
  }

  /** Reads the devices that reported again, for their new vitals and health; a new device is added this way. */
  async function refresh(): Promise<void> {
    const ids = [...stale].slice(0, REFRESH_MAX);
    for (const id of ids) stale.delete(id);
    const details = await Promise.all(ids.map((id) => getJson<DeviceDetail>(`/api/v1/devices/${encodeURIComponent(id)}`).catch(() => undefined)));
    for (const detail of details) if (detail) devices.set(detail.deviceId, summaryOf(detail));
    if (details.length > 0) update();
  }

  const unsubscribe = app.onChange(onChange);
  const refreshTimer = setInterval(() => void refresh().catch(failed), REFRESH_MS);
  // Relative times ("offline 3 min") move on without any change.
  const clockTimer = setInterval(update, 30_000);
  load().catch(failed);
  return {
    element,
    dispose: () => {
      unsubscribe();
      clearInterval(refreshTimer);
      clearInterval(clockTimer);
    },
  };

  function select(label: string, values: string[]): HTMLSelectElement {
    return h('select', { 'aria-label': label }, values.map((v) => h('option', { value: v }, v || 'any')));
  }
}

function labelled(text: string, control: HTMLElement): HTMLElement {
  return h('label', { class: 'inline' }, `${text} `, control);
}

function matches(device: DeviceSummary, filter: Filter): boolean {
  if (filter.state && device.state !== filter.state) return false;
  if (filter.health && device.health !== filter.health) return false;
  if (filter.version && (device.fleetletVersion ?? 'unknown') !== filter.version) return false;
  if (!filter.search) return true;
  const haystack = [
    device.deviceId,
    device.name ?? '',
    ...Object.entries(device.labels).map(([k, v]) => `${k}=${v}`),
    ...device.groups,
  ]
    .join(' ')
    .toLowerCase();
  return filter.search.split(/\s+/).every((word) => haystack.includes(word));
}

/** Names and versions in natural order: "Device 2" before "Device 10", "0.9.0" before "0.10.0". */
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

function compare(x: string | number, y: string | number): number {
  if (typeof x === 'number' && typeof y === 'number') return x - y;
  return collator.compare(String(x), String(y));
}

function countBy<T>(items: T[], key: (item: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
}

function summaryOf(detail: DeviceDetail): DeviceSummary {
  const { deviceId, name, state, lastSeen, fleetletVersion, k3sVersion, k3sState, k3sHealthy, health, labels, groups, identityConflict, vitals } = detail;
  return { deviceId, name, state, lastSeen, fleetletVersion, k3sVersion, k3sState, k3sHealthy, health, labels, groups, identityConflict, vitals };
}
