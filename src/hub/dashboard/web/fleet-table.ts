import type { DeviceSummary } from '../../../protocol/hub-api.js';
import { healthBadge, k3sText, stateBadge } from './badges.js';
import { h, replace } from './dom.js';
import { ago, figure } from './format.js';

/**
 * The fleet as a table that draws only the rows in view (plus a margin): 2,000 or 20,000 devices cost the same
 * few dozen row elements, so filtering and live updates stay fast. Rows have one fixed height for that reason.
 */
export const ROW_HEIGHT = 44;
const MARGIN_ROWS = 10;

export type SortKey = 'name' | 'state' | 'lastSeen' | 'fleetletVersion' | 'k3sVersion' | 'health' | 'cpu' | 'memory' | 'temperature' | 'backlog';

const COLUMNS: { key: SortKey; title: string; className: string }[] = [
  { key: 'name', title: 'Device', className: 'c-name' },
  { key: 'state', title: 'State', className: 'c-state' },
  { key: 'health', title: 'Health', className: 'c-health' },
  { key: 'lastSeen', title: 'Last seen', className: 'c-seen' },
  { key: 'fleetletVersion', title: 'fleetlet', className: 'c-version' },
  { key: 'k3sVersion', title: 'k3s', className: 'c-k3s' },
  { key: 'cpu', title: 'CPU', className: 'c-num' },
  { key: 'memory', title: 'Memory', className: 'c-num' },
  { key: 'temperature', title: 'Temp.', className: 'c-num' },
  { key: 'backlog', title: 'Backlog', className: 'c-num' },
];

export class FleetTable {
  readonly element: HTMLElement;
  private readonly head: HTMLElement;
  private readonly viewport: HTMLElement;
  private readonly spacer: HTMLElement;
  private rows: DeviceSummary[] = [];
  private frame = 0;

  constructor(
    private sort: { key: SortKey; descending: boolean },
    private readonly onSort: (sort: { key: SortKey; descending: boolean }) => void,
  ) {
    this.head = h('div', { class: 'row head', role: 'row' });
    this.spacer = h('div', { class: 'spacer', role: 'rowgroup' });
    this.viewport = h('div', { class: 'viewport', tabindex: '0' }, this.spacer);
    this.viewport.addEventListener('scroll', () => this.schedule());
    this.element = h('div', { class: 'fleet-table', role: 'table', 'aria-label': 'Devices' }, this.head, this.viewport);
    this.drawHead();
  }

  show(rows: DeviceSummary[]): void {
    this.rows = rows;
    this.schedule();
  }

  /** Drawn in the next animation frame: several changes within one frame cost one drawing. */
  private schedule(): void {
    if (this.frame !== 0) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  private drawHead(): void {
    replace(
      this.head,
      COLUMNS.map((column) => {
        const current = this.sort.key === column.key;
        const button = h('button', { type: 'button' }, column.title, current ? (this.sort.descending ? ' ▼' : ' ▲') : '');
        button.addEventListener('click', () => {
          this.sort = { key: column.key, descending: current ? !this.sort.descending : false };
          this.drawHead();
          this.onSort(this.sort);
        });
        const sorted = current ? (this.sort.descending ? 'descending' : 'ascending') : undefined;
        return h('div', { class: `cell ${column.className}`, role: 'columnheader', 'aria-sort': sorted }, button);
      }),
    );
  }

  private draw(): void {
    const now = Date.now();
    this.spacer.style.height = `${this.rows.length * ROW_HEIGHT}px`;
    const first = Math.max(0, Math.floor(this.viewport.scrollTop / ROW_HEIGHT) - MARGIN_ROWS);
    const visible = Math.ceil((this.viewport.clientHeight || 600) / ROW_HEIGHT) + 2 * MARGIN_ROWS;
    const slice = this.rows.slice(first, first + visible);
    replace(this.spacer, slice.map((device, i) => this.row(device, first + i, now)));
    if (this.rows.length === 0) replace(this.spacer, h('p', { class: 'empty' }, 'No device matches.'));
  }

  private row(device: DeviceSummary, index: number, now: number): HTMLElement {
    const v = device.vitals;
    const labels = [...Object.entries(device.labels).map(([k, value]) => `${k}=${value}`), ...device.groups.map((g) => `group:${g}`)].join(' ');
    const row = h(
      'a',
      { class: 'row', role: 'row', href: `#/devices/${encodeURIComponent(device.deviceId)}`, 'data-device': device.deviceId },
      h('span', { class: 'cell c-name', role: 'cell' }, h('strong', {}, device.name ?? device.deviceId), h('small', {}, device.deviceId, labels ? ` · ${labels}` : '')),
      h('span', { class: 'cell c-state', role: 'cell' }, stateBadge(device, now)),
      h('span', { class: 'cell c-health', role: 'cell' }, healthBadge(device.health)),
      h('span', { class: 'cell c-seen', role: 'cell' }, ago(device.lastSeen, now)),
      h('span', { class: 'cell c-version', role: 'cell' }, device.fleetletVersion ?? '-'),
      h('span', { class: 'cell c-k3s', role: 'cell' }, device.k3sVersion ?? '-', h('small', { class: device.k3sHealthy === false ? 'bad' : '' }, k3sText(device))),
      h('span', { class: 'cell c-num', role: 'cell' }, figure(v?.cpuPercent, ' %')),
      h('span', { class: 'cell c-num', role: 'cell' }, figure(v?.memoryUsedPercent, ' %')),
      h('span', { class: 'cell c-num', role: 'cell' }, figure(v?.temperatureC, ' °C', 1)),
      h('span', { class: 'cell c-num', role: 'cell' }, figure(v?.outboxBacklog, '')),
    );
    row.style.top = `${index * ROW_HEIGHT}px`;
    return row;
  }
}

/** The value a column sorts by; missing values sort first ascending, as in the API. */
export function sortValue(device: DeviceSummary, key: SortKey): string | number {
  const v = device.vitals;
  switch (key) {
    case 'name':
      return (device.name ?? device.deviceId).toLowerCase();
    case 'state':
      return device.state;
    case 'lastSeen':
      return Date.parse(device.lastSeen);
    case 'health':
      return ['ok', 'warning', 'critical'].indexOf(device.health);
    case 'fleetletVersion':
      return device.fleetletVersion ?? '';
    case 'k3sVersion':
      return device.k3sVersion ?? '';
    case 'cpu':
      return v?.cpuPercent ?? -1;
    case 'memory':
      return v?.memoryUsedPercent ?? -1;
    case 'temperature':
      return v?.temperatureC ?? -1000;
    case 'backlog':
      return v?.outboxBacklog ?? -1;
  }
}
