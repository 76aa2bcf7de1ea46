import type { DeviceSummary } from '../../../protocol/hub-api.js';
import { duration } from './format.js';
import { h } from './dom.js';

/** Health and state in colour AND in words: the colour class only repeats what the text says. */
export function healthBadge(health: string): HTMLElement {
  const known = health === 'ok' || health === 'warning' || health === 'critical' ? health : 'unknown';
  return h('span', { class: `badge health-${known}` }, health);
}

export function stateText(device: Pick<DeviceSummary, 'state' | 'lastSeen'>, now = Date.now()): string {
  if (device.state !== 'offline') return device.state;
  return `offline ${duration(Math.max(0, (now - Date.parse(device.lastSeen)) / 1000))}`;
}

export function stateBadge(device: Pick<DeviceSummary, 'state' | 'lastSeen'>, now = Date.now()): HTMLElement {
  return h('span', { class: `badge state-${device.state}` }, stateText(device, now));
}

export function k3sText(device: Pick<DeviceSummary, 'k3sHealthy' | 'k3sState'>): string {
  if (device.k3sHealthy === null) return device.k3sState ?? 'no report';
  return device.k3sHealthy ? 'healthy' : `unhealthy (${device.k3sState ?? '?'})`;
}

export function severityBadge(severity: string): HTMLElement {
  const level = severity === 'critical' ? 'critical' : severity === 'warning' ? 'warning' : 'ok';
  return h('span', { class: `badge health-${level}` }, severity);
}
