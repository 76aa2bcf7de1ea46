import type { Logger } from '../../lib/logger.js';
import type { HubDatabase } from '../db/open.js';
import type { RolloutDeviceRow, RolloutRow } from '../db/tables.js';
import { RolloutAmount, resolveRolloutAmount, type HubRolloutSummary } from '../../protocol/hub-rollouts-api.js';
import { chunks } from './chunks.js';
import { finalResults, presenceOf, regressions } from './device-watch.js';
import { RolloutLease } from './lease.js';
import { rolloutSummary } from './rollout-views.js';

/**
 * Runs the hub's rollouts from the database, one tick at a time, on the replica that holds the lease. A tick reads
 * what the ingest stored (results, presence, crash-loop events, status) and moves each device on: a final result
 * ends its command, success starts the watch for a health regression, the watch's end makes it succeeded. Then the
 * rollout: past its deadline it expires; above its failure threshold (zero for canaries) it halts; once the batch
 * in progress has no device sent or watched any more, the next batch is released. Releasing marks the devices
 * `sent` in the database first and publishes their signed envelopes after, so a hub that dies in between publishes
 * them again when it (or another replica) takes the lease: only those without any result, and devices drop a
 * command id they saw already.
 */
export interface CommandPublisher {
  /** Whether publishing can work now; the engine releases nothing while it cannot. */
  readonly connected: boolean;
  publish(deviceId: string, envelopeJson: string): Promise<void>;
}

export interface RolloutEngineOptions {
  hub: HubDatabase;
  publisher: CommandPublisher;
  replicaId: string;
  log: Logger;
  tickMs?: number;
  leaseMs?: number;
  now?: () => number;
  /** Called after a rollout changed state (halted, completed, expired, paused, ...), whoever changed it. */
  onStateChange?: (rollout: HubRolloutSummary) => void;
}

const OPEN = ['pending', 'waiting-offline', 'sent', 'watching'];
const FAILED = ['failed', 'regressed'];
const DRIVEN = ['running', 'paused'];
/** A rollout an operator changed this recently is looked at once more, so that onStateChange hears of it too. */
const RECENT_CHANGE_MS = 10_000;
/** Envelopes in flight to the broker at once (MQTT.js message ids wrap at 65,535; a window keeps QoS 1 fast). */
const PUBLISH_WINDOW = 200;

export class RolloutEngine {
  private readonly lease: RolloutLease;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private holding = false;
  private readonly states = new Map<string, string>();

  constructor(private readonly options: RolloutEngineOptions) {
    this.now = options.now ?? Date.now;
    this.lease = new RolloutLease(options.hub, options.replicaId, options.leaseMs ?? 15_000);
  }

  start(): void {
    this.timer = setInterval(() => void this.tickOnce(), this.options.tickMs ?? 1000);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
    // Also when held but not yet driving (no broker yet): the lease only names this replica then.
    await this.lease.release().catch(() => {});
    this.holding = false;
  }

  /** One tick, unless one is still running (a slow database must not stack them). */
  tickOnce(): Promise<void> {
    this.running ??= this.tick()
      .catch((err: unknown) => this.options.log.error({ err: err instanceof Error ? err.message : String(err) }, 'rollout tick failed; retried on the next'))
      .finally(() => (this.running = undefined));
    return this.running;
  }

  /** Whether this replica drives the rollouts now. */
  get leader(): boolean {
    return this.holding;
  }

  private async tick(): Promise<void> {
    const { hub } = this.options;
    const now = this.now();
    if (!(await this.lease.hold(now))) {
      this.holding = false;
      return;
    }
    if (!this.holding) {
      // Driving starts once commands can go out: what was left unanswered is published first.
      if (!this.options.publisher.connected) return;
      this.holding = true;
      this.options.log.info({ replicaId: this.options.replicaId }, 'this replica drives the rollouts');
      await this.publishUnanswered(now);
    }
    const withOpenDevices = hub.db.selectFrom('rollout_devices').select('rollout_id').where('outcome', 'in', ['sent', 'watching']);
    const rollouts = await hub.db
      .selectFrom('rollouts')
      .selectAll()
      .where((eb) => eb.or([eb('state', 'in', DRIVEN), eb('rollout_id', 'in', withOpenDevices), eb('updated_at_ms', '>=', now - RECENT_CHANGE_MS)]))
      .execute();
    for (const rollout of rollouts) {
      const before = this.states.get(rollout.rollout_id);
      await this.advance(rollout, now);
      await this.notify(rollout.rollout_id, before ?? rollout.state);
    }
  }

  private async notify(rolloutId: string, before: string): Promise<void> {
    const summary = await rolloutSummary(this.options.hub, rolloutId);
    if (!summary) return;
    this.states.set(rolloutId, summary.state);
    if (summary.state !== before) {
      this.options.log.info({ rolloutId, state: summary.state, reason: summary.stateReason }, 'rollout changed state');
      try {
        this.options.onStateChange?.(summary);
      } catch (err) {
        // A listener's failure (an alert that could not be raised) must not stop the rollouts.
        this.options.log.error({ rolloutId, err: err instanceof Error ? err.message : String(err) }, 'a rollout state listener failed');
      }
    }
  }

  private async advance(rollout: RolloutRow, now: number): Promise<void> {
    const { hub } = this.options;
    const devices = await hub.db.selectFrom('rollout_devices').selectAll().where('rollout_id', '=', rollout.rollout_id).execute();
    await this.observe(rollout, devices, now);
    if (rollout.state !== 'running' && rollout.state !== 'paused') return;
    if (now >= rollout.deadline_ms) return this.expire(rollout, now);
    if (await this.haltIfOverThreshold(rollout, devices, now)) return;
    if (rollout.state === 'running') await this.release(rollout, devices, now);
  }

  /** Results, timeouts and the watch; `devices` is updated in place with what was written. */
  private async observe(rollout: RolloutRow, devices: RolloutDeviceRow[], now: number): Promise<void> {
    const sent = devices.filter((d) => d.outcome === 'sent');
    const watching = devices.filter((d) => d.outcome === 'watching');
    const results = sent.length > 0 ? await finalResults(this.options.hub, sent) : new Map();
    const regressed = watching.length > 0 ? await regressions(this.options.hub, watching) : new Map<string, string>();
    const updates: { device: RolloutDeviceRow; set: Partial<RolloutDeviceRow> }[] = [];
    for (const device of sent) {
      const result = results.get(device.command_id);
      if (result?.status === 'succeeded') {
        const watch = rollout.watch_seconds > 0;
        updates.push({ device, set: { outcome: watch ? 'watching' : 'succeeded', detail: result.detail, finished_at_ms: now, watch_until_ms: watch ? now + rollout.watch_seconds * 1000 : null } });
      } else if (result) {
        updates.push({ device, set: { outcome: 'failed', detail: result.detail ?? result.status, finished_at_ms: now } });
      } else if (now - (device.sent_at_ms ?? now) > rollout.device_timeout_seconds * 1000) {
        updates.push({ device, set: { outcome: 'failed', detail: `no result within ${rollout.device_timeout_seconds} s`, finished_at_ms: now } });
      }
    }
    for (const device of watching) {
      const why = regressed.get(device.device_id);
      if (why) updates.push({ device, set: { outcome: 'regressed', detail: `succeeded, then ${why}`, watch_until_ms: null } });
      else if (now >= (device.watch_until_ms ?? 0)) updates.push({ device, set: { outcome: 'succeeded', watch_until_ms: null } });
    }
    if (updates.length === 0) return;
    await this.options.hub.db.transaction().execute(async (trx) => {
      for (const { device, set } of updates) {
        await trx
          .updateTable('rollout_devices')
          .set(set)
          .where('rollout_id', '=', device.rollout_id)
          .where('device_id', '=', device.device_id)
          .where('outcome', '=', device.outcome)
          .execute();
        Object.assign(device, set);
      }
    });
  }

  private async expire(rollout: RolloutRow, now: number): Promise<void> {
    await this.options.hub.db.transaction().execute(async (trx) => {
      const ended = await trx
        .updateTable('rollouts')
        .set({ state: 'expired', state_reason: 'the deadline passed; devices not reached by then were skipped', updated_at_ms: now })
        .where('rollout_id', '=', rollout.rollout_id)
        .where('state', 'in', ['running', 'paused'])
        .executeTakeFirst();
      if (Number(ended.numUpdatedRows) === 0) return;
      await trx
        .updateTable('rollout_devices')
        .set({ outcome: 'skipped', detail: 'not reached before the deadline', finished_at_ms: now })
        .where('rollout_id', '=', rollout.rollout_id)
        .where('outcome', 'in', ['pending', 'waiting-offline'])
        .execute();
    });
  }

  private async haltIfOverThreshold(rollout: RolloutRow, devices: RolloutDeviceRow[], now: number): Promise<boolean> {
    const failed = devices.filter((d) => FAILED.includes(d.outcome));
    const canaryRule = rollout.canaries === 1 && rollout.current_batch === 0 && rollout.threshold_raised === 0;
    const limit = canaryRule ? 0 : resolveRolloutAmount(RolloutAmount.parse(JSON.parse(rollout.max_failures_json)), devices.length, 0);
    if (failed.length <= limit) return false;
    const example = failed.sort((a, b) => (a.finished_at_ms ?? 0) - (b.finished_at_ms ?? 0))[0]!;
    const reason =
      `${failed.length} device(s) failed or regressed, more than the ${limit} allowed${canaryRule ? ' for canaries' : ''} ` +
      `(batch ${rollout.current_batch + 1} of ${rollout.batch_count}; first: ${example.device_id} ${example.outcome}: ${example.detail ?? 'no detail'})`;
    await this.options.hub.db
      .updateTable('rollouts')
      .set({ state: 'halted', state_reason: reason, updated_at_ms: now })
      .where('rollout_id', '=', rollout.rollout_id)
      .where('state', 'in', ['running', 'paused'])
      .execute();
    return true;
  }

  /**
   * Releases the batch in progress (and devices of earlier batches that were offline and are back), moving to the
   * next batch while the current one has nothing sent or watched; completes the rollout when nothing is left.
   */
  private async release(rollout: RolloutRow, devices: RolloutDeviceRow[], now: number): Promise<void> {
    if (!this.options.publisher.connected) return;
    let current = rollout.current_batch;
    for (;;) {
      await this.releaseUpTo(rollout, devices, current, now);
      // Offline devices are sent when they are back, while later batches go on; but no batch goes before the canaries did.
      const blocking = current === 0 && rollout.canaries === 1 ? OPEN : ['pending', 'sent', 'watching'];
      const settled = !devices.some((d) => d.batch_index === current && blocking.includes(d.outcome));
      if (!settled || current + 1 >= rollout.batch_count) break;
      current += 1;
      await this.options.hub.db
        .updateTable('rollouts')
        .set({ current_batch: current, updated_at_ms: now })
        .where('rollout_id', '=', rollout.rollout_id)
        .where('state', '=', 'running')
        .execute();
    }
    if (devices.some((d) => OPEN.includes(d.outcome))) return;
    await this.options.hub.db
      .updateTable('rollouts')
      .set({ state: 'completed', state_reason: null, updated_at_ms: now })
      .where('rollout_id', '=', rollout.rollout_id)
      .where('state', '=', 'running')
      .execute();
  }

  private async releaseUpTo(rollout: RolloutRow, devices: RolloutDeviceRow[], batch: number, now: number): Promise<void> {
    const due = devices.filter((d) => d.batch_index <= batch && (d.outcome === 'pending' || d.outcome === 'waiting-offline'));
    if (due.length === 0) return;
    const presence = await presenceOf(this.options.hub, due.map((d) => d.device_id));
    const online = due.filter((d) => presence.get(d.device_id) === 'online');
    const away = due.filter((d) => d.outcome === 'pending' && presence.get(d.device_id) !== 'online');
    const released = await this.options.hub.db.transaction().execute(async (trx) => {
      const state = await trx.selectFrom('rollouts').select('state').where('rollout_id', '=', rollout.rollout_id).executeTakeFirst();
      if (state?.state !== 'running') return [];
      // In chunks of ids, each one statement: a batch of thousands is marked in a few round trips.
      const marked = new Set<string>();
      for (const ids of chunks(online.map((d) => d.device_id))) {
        const updated = await trx
          .updateTable('rollout_devices')
          .set({ outcome: 'sent', sent_at_ms: now, detail: null })
          .where('rollout_id', '=', rollout.rollout_id)
          .where('device_id', 'in', ids)
          .where('outcome', 'in', ['pending', 'waiting-offline'])
          .returning('device_id')
          .execute();
        for (const row of updated) marked.add(row.device_id);
      }
      for (const ids of chunks(away.map((d) => d.device_id))) {
        await trx
          .updateTable('rollout_devices')
          .set({ outcome: 'waiting-offline', detail: 'offline when its batch came; sent when it is back' })
          .where('rollout_id', '=', rollout.rollout_id)
          .where('device_id', 'in', ids)
          .where('outcome', '=', 'pending')
          .execute();
      }
      for (const device of away) device.outcome = 'waiting-offline';
      return online.filter((d) => marked.has(d.device_id));
    });
    for (const device of released) Object.assign(device, { outcome: 'sent', sent_at_ms: now, detail: null });
    await this.publishAll(released);
  }

  /** After a restart or a takeover: devices marked sent that answered nothing may never have got their command. */
  private async publishUnanswered(now: number): Promise<void> {
    const { hub } = this.options;
    const answered = hub.db.selectFrom('command_results').select('command_id').where('command_id', 'is not', null);
    const unanswered = await hub.db
      .selectFrom('rollout_devices')
      .selectAll()
      .where('outcome', '=', 'sent')
      .where('command_id', 'not in', answered)
      .execute();
    if (unanswered.length === 0) return;
    this.options.log.info({ devices: unanswered.length }, 'publishing again the rollout commands that have no result yet');
    for (const ids of chunks(unanswered.map((d) => d.command_id))) {
      await hub.db.updateTable('rollout_devices').set({ sent_at_ms: now }).where('command_id', 'in', ids).where('outcome', '=', 'sent').execute();
    }
    await this.publishAll(unanswered);
  }

  private async publishAll(devices: readonly RolloutDeviceRow[]): Promise<void> {
    for (let i = 0; i < devices.length; i += PUBLISH_WINDOW) {
      await Promise.all(
        devices.slice(i, i + PUBLISH_WINDOW).map((d) =>
          this.options.publisher.publish(d.device_id, d.envelope_json).catch((err: unknown) =>
            // Marked sent already: the device times out unless a restart publishes it again.
            this.options.log.warn({ deviceId: d.device_id, err: err instanceof Error ? err.message : String(err) }, 'could not publish a rollout command'),
          ),
        ),
      );
    }
  }
}
