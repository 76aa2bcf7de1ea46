// The "Event kinds" section of docs/protocol.md, from the one table of kinds in src/protocol/event.ts.
import { EVENT_KINDS, eventKindSpec, type EventKind } from '../src/protocol/event.js';

const cell = (text: string): string => text.replaceAll('|', '\\|');

export function eventKindsSection(): string {
  const rows = (Object.keys(EVENT_KINDS) as EventKind[]).map((kind) => {
    const { severity, sentence, remedy } = eventKindSpec(kind);
    return `| \`${kind}\` | ${severity} | ${cell(sentence)} | ${cell(remedy ?? '')} |`;
  });
  return [
    '## Event kinds',
    '',
    'The kinds a device sends on `{root}/devices/{id}/events`. The severity is that of a `raised` or `occurred` event;',
    'a `cleared` one is `info`. A producer that knows more sends its own `message` and `remedy` (the log line k3s',
    'complained with, which disk is low); otherwise the event carries the meaning and remedy below. A receiver should',
    'accept any kind of the schema\'s shape: a newer agent may send kinds this list does not have yet.',
    '',
    '| kind | severity | meaning | remedy |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}
