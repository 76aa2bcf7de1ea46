import type { HubDatabase } from '../db/open.js';
import { iso } from './device-queries.js';
import { eventItemOf } from './log-queries.js';
import { alertItemOf } from '../alerts/alert-item.js';
import type { StreamChange } from '../../protocol/hub-api.js';

/**
 * Turns what the ingest commits into a stream of changes, by reading the database: so every replica's API sees what
 * any replica ingested. A row's receive time is stamped before its batch commits, so each poll looks back
 * `lookBackMs` and remembers what it already announced (per device: last seen and presence; events by id).
 * Polls only while someone listens.
 */
export class ChangeFeed {
  private readonly listeners = new Set<(change: StreamChange) => void>();
  private readonly devices = new Map<string, { lastSeen: number; presence: string | null }>();
  private readonly announcedEvents = new Map<number, number>();
  /** `<alert id>:<state>` announced, with when it changed. */
  private readonly announcedAlerts = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private primed = false;
  private polling = false;

  constructor(
    private readonly hub: HubDatabase,
    private readonly options: { pollMs: number; lookBackMs: number; now: () => number; onError: (err: unknown) => void },
  ) {}

  get listenerCount(): number {
    return this.listeners.size;
  }

  /**
   * Adds a listener once the feed knows the current state (the first look at the database announces nothing), so
   * that every change committed after this resolves reaches the listener.
   */
  async subscribe(listener: (change: StreamChange) => void): Promise<() => void> {
    if (!this.timer) {
      this.timer = setInterval(() => void this.poll(), this.options.pollMs);
      await this.poll();
    }
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stop();
    };
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.primed = false;
    this.devices.clear();
    this.announcedEvents.clear();
    this.announcedAlerts.clear();
  }

  /** One look at the database; public so that a test or a shutdown can drive it. */
  async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      await this.readChanges();
    } catch (err) {
      this.options.onError(err);
    } finally {
      this.polling = false;
    }
  }

  private async readChanges(): Promise<void> {
    const since = this.options.now() - this.options.lookBackMs;
    // The first poll only learns the current state, so that a new listener is not sent the recent past as news.
    const announce = this.primed;
    this.primed = true;
    const rows = await this.hub.db
      .selectFrom('devices')
      .select(['device_id', 'last_seen_ms', 'presence_state', 'presence_at_ms', 'presence_reason'])
      .where('last_seen_ms', '>=', since)
      .execute();
    for (const row of rows) {
      const known = this.devices.get(row.device_id);
      this.devices.set(row.device_id, { lastSeen: row.last_seen_ms, presence: row.presence_state });
      if (!announce) continue;
      if (known?.presence !== row.presence_state && row.presence_state === 'online') {
        this.emit({ type: 'device.online', deviceId: row.device_id, at: iso(row.presence_at_ms ?? row.last_seen_ms) });
      } else if (known?.presence !== row.presence_state && row.presence_state === 'offline') {
        this.emit({ type: 'device.offline', deviceId: row.device_id, at: iso(row.presence_at_ms ?? row.last_seen_ms), reason: row.presence_reason });
      }
      if (!known || known.lastSeen < row.last_seen_ms) {
        this.emit({ type: 'device.reported', deviceId: row.device_id, lastSeen: iso(row.last_seen_ms) });
      }
    }
    const events = await this.hub.db.selectFrom('events').selectAll().where('received_at_ms', '>=', since).orderBy('id').limit(5000).execute();
    for (const event of events) {
      if (this.announcedEvents.has(event.id)) continue;
      this.announcedEvents.set(event.id, event.received_at_ms);
      if (announce) this.emit({ type: 'event', event: eventItemOf(event) });
    }
    for (const [id, receivedAt] of this.announcedEvents) if (receivedAt < since) this.announcedEvents.delete(id);
    await this.readAlertChanges(since, announce);
  }

  /** Alerts opened or resolved since the last look (by any replica's engine). */
  private async readAlertChanges(since: number, announce: boolean): Promise<void> {
    const alerts = await this.hub.db.selectFrom('alerts').selectAll().where('updated_at_ms', '>=', since).orderBy('id').limit(5000).execute();
    for (const alert of alerts) {
      const changedAt = alert.state === 'resolved' ? alert.resolved_at_ms : alert.opened_at_ms;
      const key = `${alert.id}:${alert.state}`;
      if (changedAt === null || changedAt < since || this.announcedAlerts.has(key)) continue;
      this.announcedAlerts.set(key, changedAt);
      if (announce) this.emit({ type: alert.state === 'resolved' ? 'alert.resolved' : 'alert.opened', alert: alertItemOf(alert) });
    }
    for (const [key, changedAt] of this.announcedAlerts) if (changedAt < since) this.announcedAlerts.delete(key);
  }

  private emit(change: StreamChange): void {
    for (const listener of this.listeners) listener(change);
  }
}
