import type { PresenceHistory } from '../../../protocol/hub-api.js';
import { h } from './dom.js';
import { time } from './format.js';

type Entry = PresenceHistory['entries'][number];

const REASONS: Record<string, string> = {
  stopped: 'stopped cleanly',
  'connection-lost': 'connection lost (the broker delivered its last will)',
};

/**
 * The device's boot/presence history, newest first: each state in words (the badge's colour only repeats it), its
 * boot number, why it went offline, and when. A new boot sequence is said in words: fleetlet, or the whole device,
 * restarted in between.
 */
export function presenceList(history: PresenceHistory): HTMLElement {
  if (history.entries.length === 0) return h('p', { class: 'muted' }, 'No presence reported yet.');
  return h('ol', { class: 'events presence-history' }, history.entries.map(entryView));
}

function entryView(e: Entry): HTMLElement {
  // A last will carries the time its connection opened; the hub noticed the loss when the broker delivered it.
  const when = e.reason === 'connection-lost' ? e.receivedAt : e.at;
  return h(
    'li',
    { class: 'event', 'data-state': e.state, 'data-boot': String(e.bootSequence) },
    h(
      'div',
      {},
      h('span', { class: `badge state-${e.state}` }, e.state),
      ' ',
      h('strong', {}, `boot #${e.bootSequence}`),
      e.reason ? ` ${REASONS[e.reason] ?? e.reason}` : '',
      ' · ',
      h('time', { datetime: when }, time(when)),
    ),
    e.newBoot ? h('p', { class: 'remedy' }, `Restarted: a new boot (#${e.bootSequence}) after the one before; fleetlet or the device rebooted.`) : null,
  );
}
