import { restoreSnapshot, type RestoreReport } from '../store/snapshot.js';
import { readMarker, writeMarker } from './agent-upgrade-guard.js';

/**
 * Run at every agent start, before the state database is opened: after a reverted self-update, puts back the
 * database snapshot taken before the swap (with the rows the trial wrote that this binary can read), so that the
 * restored binary never meets a database migrated past what it knows. A no-op when no revert is pending.
 */
export async function restoreStateAfterRevert(stateDir: string, nativeBinding?: unknown): Promise<RestoreReport | undefined> {
  const marker = await readMarker(stateDir);
  if (marker?.state !== 'reverted' || !marker.snapshot) return undefined;
  const report = await restoreSnapshot(stateDir, nativeBinding);
  if (!report) return undefined;
  await writeMarker(stateDir, { ...marker, restored: report.salvaged.join(' ') || 'snapshot' });
  return report;
}
