import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../lib/files.js';

/**
 * The self-update's safety net. A new fleetlet binary gets one start to prove itself healthy; the revert must not
 * depend on it working at all, so it is done by this POSIX shell script, which the service runs before every start
 * (systemd: ExecStartPre=-/bin/sh <stateDir>/upgrade-guard.sh <stateDir>/agent-upgrade.state). On a start while a
 * trial is open and already used, it puts `<binary>.previous` back and marks the trial reverted.
 *
 * The guard belongs to the binary that was proven good: only a binary that is not on trial writes it (at its start,
 * or when it confirms itself), so a broken new build cannot replace the net that is meant to catch it. The old
 * binary's state database is put back by the old binary itself when it starts after a revert (see
 * store/snapshot.ts): that needs SQLite, which a device's shell does not have.
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
# sync after each rename: the revert must survive a power cut as much as the trial marker does.
rewrite() { sed "$1" "$marker" > "$marker.tmp" && sync && mv -f "$marker.tmp" "$marker" && sync; }
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

/**
 * The trial marker: key=value lines, so that the shell guard can read and rewrite it with sed. Values never contain
 * newlines. `snapshot` names the state database's copy taken before the swap; `unmet` says which health checks the
 * new binary had not passed when it was reverted; `restored` is set once the old binary put the snapshot back.
 */
export const TrialMarkerSchema = z.object({
  state: z.enum(['trial', 'confirmed', 'reverted']),
  attempts: z.coerce.number().int().min(0).default(0),
  binary: z.string(),
  commandId: z.string(),
  fromVersion: z.string(),
  toVersion: z.string(),
  newSha: z.string(),
  fromSha: z.string().default(''),
  snapshot: z.string().default(''),
  unmet: z.string().default(''),
  restored: z.string().default(''),
});
export type TrialMarker = z.output<typeof TrialMarkerSchema>;
export type TrialState = TrialMarker['state'];

export function markerPath(stateDir: string): string {
  return join(stateDir, MARKER_FILE);
}

/** Written durably (fsync of file and directory): the net must be there after a power cut. */
export async function writeGuard(stateDir: string): Promise<string> {
  const path = join(stateDir, GUARD_FILE);
  await writeFileAtomic(path, GUARD_SCRIPT, { mode: 0o700 });
  return path;
}

export async function writeMarker(stateDir: string, marker: TrialMarker): Promise<void> {
  const lines = Object.entries(marker).map(([key, value]) => `${key}=${String(value).replace(/[\r\n]/g, '')}`);
  await writeFileAtomic(markerPath(stateDir), `${lines.join('\n')}\n`, { mode: 0o600 });
}

export async function readMarker(stateDir: string): Promise<TrialMarker | undefined> {
  let text: string;
  try {
    text = await readFile(markerPath(stateDir), 'utf8');
  } catch {
    return undefined;
  }
  const values = Object.fromEntries(
    text
      .split('\n')
      .filter((line) => line.includes('='))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
  const parsed = TrialMarkerSchema.safeParse(values);
  return parsed.success ? parsed.data : undefined;
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
