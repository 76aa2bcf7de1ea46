import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { isErrno } from '../lib/errors.js';
import type { QueuedRecord } from './outbox.js';

/**
 * Status samples waiting in RAM (a tmpfs directory such as /run/fleetlet) instead of the state database, to spare the
 * SD card: a status committed alone costs about 20 KB of disk writes (docs/benchmarks.md, "Disk writes per status
 * record"). A file in tmpfs survives a crash or restart of fleetlet (SIGKILL, OOM, an upgrade) but not a power cut or
 * a reboot, which is the durability status had before minus its last minutes (see SqliteOutbox for the rules that
 * move samples from here to the database).
 *
 * One file per record, `<seq>.json`, written to a temp name and renamed: a kill never leaves half a record. No fsync:
 * tmpfs has no disk behind it.
 */
export interface SpooledRecord {
  queued: QueuedRecord;
  bytes: number;
  /** When it entered the spool (ms since epoch); the age decides when the spool goes to the database. */
  spooledAt: number;
}

const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;
const FILE_PATTERN = /^\d+\.json$/;

export class StatusSpool {
  private readonly records = new Map<number, SpooledRecord>();

  /** `dir` must be on tmpfs or ramfs (see statusSpoolDir); it is created 0700 if missing. */
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  get size(): number {
    return this.records.size;
  }

  add(record: SpooledRecord): void {
    const path = join(this.dir, `${record.queued.seq}.json`);
    const temp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
    writeFileSync(temp, JSON.stringify(record), { mode: 0o600 });
    renameSync(temp, path);
    this.records.set(record.queued.seq, record);
  }

  /** Removes the records with these seqs; returns those removed and the seqs that were not in the spool. */
  remove(seqs: readonly number[]): { removed: SpooledRecord[]; others: number[] } {
    const removed: SpooledRecord[] = [];
    const others: number[] = [];
    for (const seq of seqs) {
      const record = this.records.get(seq);
      if (!record) {
        others.push(seq);
        continue;
      }
      rmSync(join(this.dir, `${seq}.json`), { force: true });
      this.records.delete(seq);
      removed.push(record);
    }
    return { removed, others };
  }

  removeOldest(): SpooledRecord | undefined {
    const oldest = this.all()[0];
    if (oldest) this.remove([oldest.queued.seq]);
    return oldest;
  }

  /** Oldest first. */
  all(): SpooledRecord[] {
    return [...this.records.values()].sort((a, b) => a.queued.seq - b.queued.seq);
  }

  newest(): SpooledRecord | undefined {
    let newest: SpooledRecord | undefined;
    for (const record of this.records.values()) if (!newest || record.queued.seq > newest.queued.seq) newest = record;
    return newest;
  }

  oldestSpooledAt(): number | undefined {
    let oldest: number | undefined;
    for (const { spooledAt } of this.records.values()) oldest = Math.min(oldest ?? spooledAt, spooledAt);
    return oldest;
  }

  /** Records with seq > afterSeq, oldest first, at most `limit`. */
  after(afterSeq: number, limit: number): QueuedRecord[] {
    return this.all()
      .filter((record) => record.queued.seq > afterSeq)
      .slice(0, limit)
      .map((record) => record.queued);
  }

  /** Forgets every record (after they were committed to the database). */
  clear(): void {
    this.remove([...this.records.keys()]);
  }

  /** Removes the directory if nothing is left in it (a clean stop). */
  removeIfEmpty(): void {
    if (this.records.size > 0) return;
    try {
      rmdirSync(this.dir);
    } catch (err) {
      if (!isErrno(err, 'ENOENT') && !isErrno(err, 'ENOTEMPTY')) throw err;
    }
  }

  /**
   * What a previous process left (it was killed before it committed or acknowledged these), oldest first. Each file
   * is bounded by `maxRecordBytes`; an unreadable one is skipped and reported through `onBad`. The caller commits
   * them and then calls clear().
   */
  recover(maxRecordBytes: number, onBad: (file: string, err: unknown) => void): SpooledRecord[] {
    for (const file of readdirSync(this.dir)) {
      const path = join(this.dir, file);
      if (!FILE_PATTERN.test(file)) {
        rmSync(path, { force: true }); // a temp file a kill cut short: its rename never happened
        continue;
      }
      try {
        if (statSync(path).size > maxRecordBytes * 2 + 4096) throw new Error('larger than any record');
        const record = JSON.parse(readFileSync(path, 'utf8')) as SpooledRecord;
        if (typeof record.queued?.body !== 'string' || typeof record.queued.seq !== 'number') throw new Error('not a spooled record');
        this.records.set(record.queued.seq, record);
      } catch (err) {
        onBad(file, err);
        rmSync(path, { force: true });
      }
    }
    return this.all();
  }
}

/**
 * The spool directory for one state directory under `runtimeDir`, or undefined when `runtimeDir` is not in RAM (then
 * every status goes straight to the database, as it would without a spool). Named after the state directory, so two
 * agents with their own state never share a spool.
 */
export function statusSpoolDir(runtimeDir: string, stateDir: string): string | undefined {
  try {
    // Its parent decides when it does not exist yet (systemd makes /run/fleetlet; without systemd /run is tmpfs too).
    const { type } = statfsSync(existsSync(runtimeDir) ? runtimeDir : dirname(runtimeDir));
    if (type !== TMPFS_MAGIC && type !== RAMFS_MAGIC) return undefined;
    mkdirSync(runtimeDir, { recursive: true, mode: 0o700 });
  } catch {
    return undefined;
  }
  const name = createHash('sha256').update(stateDir).digest('hex').slice(0, 16);
  return join(runtimeDir, `status-spool-${name}`);
}
