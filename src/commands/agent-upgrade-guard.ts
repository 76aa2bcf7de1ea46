import { chmod, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The self-update's safety net. A new fleetlet binary gets one start to prove itself healthy; the revert must not
 * depend on it working at all, so it is done by this POSIX shell script, which the service runs before every start
 * (systemd: ExecStartPre=-/bin/sh <stateDir>/upgrade-guard.sh <stateDir>/agent-upgrade.state). On a start while a
 * trial is open and already used, it puts `<binary>.previous` back and marks the trial reverted.
 */
export const GUARD_FILE = 'upgrade-guard.sh';
export const MARKER_FILE = 'agent-upgrade.state';
export const SEEN_FILE = 'upgrade-guard.seen';

export const GUARD_SCRIPT = `#!/bin/sh
# fleetlet upgrade guard: reverts a self-update that did not confirm itself healthy on its first start.
marker="$1"
# Proof for the agent that this guard runs before it (systemd gives every process of one start the same id).
[ -n "$INVOCATION_ID" ] && echo "$INVOCATION_ID" > "$(dirname "$marker")/${SEEN_FILE}"
[ -f "$marker" ] || exit 0
value() { sed -n "s/^$1=//p" "$marker"; }
[ "$(value state)" = "trial" ] || exit 0
attempts=$(value attempts)
binary=$(value binary)
rewrite() { sed "$1" "$marker" > "$marker.tmp" && mv -f "$marker.tmp" "$marker" && sync; }
if [ "\${attempts:-0}" -ge 1 ]; then
  if [ -f "$binary.previous" ]; then
    ln -f "$binary.previous" "$binary.revert-tmp" && mv -f "$binary.revert-tmp" "$binary" && sync
  fi
  rewrite 's/^state=.*/state=reverted/'
  echo "fleetlet upgrade guard: the new binary did not confirm itself; previous binary restored" >&2
  exit 0
fi
rewrite "s/^attempts=.*/attempts=$((\${attempts:-0} + 1))/"
exit 0
`;

export type TrialState = 'trial' | 'confirmed' | 'reverted';

export interface TrialMarker {
  state: TrialState;
  attempts: number;
  binary: string;
  commandId: string;
  fromVersion: string;
  toVersion: string;
  newSha: string;
}

export function markerPath(stateDir: string): string {
  return join(stateDir, MARKER_FILE);
}

export async function writeGuard(stateDir: string): Promise<string> {
  const path = join(stateDir, GUARD_FILE);
  await writeFile(`${path}.tmp`, GUARD_SCRIPT, { mode: 0o700 });
  await chmod(`${path}.tmp`, 0o700);
  await rename(`${path}.tmp`, path);
  return path;
}

/** key=value lines, so that the shell guard can read and rewrite it with sed. Values never contain newlines. */
export async function writeMarker(stateDir: string, marker: TrialMarker): Promise<void> {
  const lines = Object.entries(marker).map(([key, value]) => `${key}=${String(value).replace(/[\r\n]/g, '')}`);
  const path = markerPath(stateDir);
  await writeFile(`${path}.tmp`, `${lines.join('\n')}\n`, { mode: 0o600 });
  await rename(`${path}.tmp`, path);
}

export async function readMarker(stateDir: string): Promise<TrialMarker | undefined> {
  let text: string;
  try {
    text = await readFile(markerPath(stateDir), 'utf8');
  } catch {
    return undefined;
  }
  const values = new Map(text.split('\n').filter(Boolean).map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
  const state = values.get('state');
  if (state !== 'trial' && state !== 'confirmed' && state !== 'reverted') return undefined;
  return {
    state,
    attempts: Number(values.get('attempts') ?? 0),
    binary: values.get('binary') ?? '',
    commandId: values.get('commandId') ?? '',
    fromVersion: values.get('fromVersion') ?? '',
    toVersion: values.get('toVersion') ?? '',
    newSha: values.get('newSha') ?? '',
  };
}

/**
 * Whether the guard ran before this start of the agent: without it a new binary that cannot start would never be
 * reverted, so a self-update is refused until the service runs it.
 */
export async function guardRanForThisStart(stateDir: string, invocationId: string | undefined): Promise<boolean> {
  if (!invocationId) return false;
  try {
    return (await readFile(join(stateDir, SEEN_FILE), 'utf8')).trim() === invocationId;
  } catch {
    return false;
  }
}

/** The line the service unit needs; named in the refusal so that an operator can fix it. */
export function guardUnitLine(stateDir: string): string {
  return `ExecStartPre=-/bin/sh ${join(stateDir, GUARD_FILE)} ${join(stateDir, MARKER_FILE)}`;
}
