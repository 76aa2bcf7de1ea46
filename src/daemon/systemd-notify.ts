import { execa } from 'execa';
import type { Logger } from '../lib/logger.js';
import type { Part } from './lifecycle.js';
import type { StuckPart } from './progress-monitor.js';

/** What the watchdog asks before each ping: the parts that show no progress (none: healthy). */
export interface ProgressCheck {
  stuck(): StuckPart[];
}

/**
 * sd_notify through the `systemd-notify` tool, because Node cannot send unix datagrams. `--pid` names our own
 * process so that systemd attributes the message to the main process (the unit sets NotifyAccess=all as well).
 * Without NOTIFY_SOCKET (not under systemd) nothing is sent.
 */
export class SystemdNotifier {
  private watchdogTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly env: Record<string, string | undefined>,
    private readonly logger: Logger,
    private readonly command = 'systemd-notify',
  ) {}

  get enabled(): boolean {
    return Boolean(this.env.NOTIFY_SOCKET);
  }

  /** Half the watchdog period systemd asked for, or undefined when no watchdog is set for this process. */
  get watchdogIntervalMs(): number | undefined {
    const usec = Number(this.env.WATCHDOG_USEC);
    if (!this.enabled || !Number.isFinite(usec) || usec <= 0) return undefined;
    if (this.env.WATCHDOG_PID && Number(this.env.WATCHDOG_PID) !== process.pid) return undefined;
    return Math.max(1, Math.floor(usec / 2000));
  }

  async notify(...assignments: string[]): Promise<void> {
    if (!this.enabled) return;
    try {
      // Only what systemd-notify needs: fleetlet's environment may hold its secrets (FLEETLET_BROKER_AUTH_PASSWORD...).
      const env = { NOTIFY_SOCKET: this.env.NOTIFY_SOCKET, ...(this.env.PATH ? { PATH: this.env.PATH } : {}) };
      await execa(this.command, [`--pid=${process.pid}`, ...assignments], { env, extendEnv: false, timeout: 5000 });
    } catch (err) {
      // A lost notification is not worth dying for: systemd's own timeouts take over.
      this.logger.warn({ err: (err as Error).message, assignments }, 'systemd notification failed');
    }
  }

  /**
   * A part that says READY=1 once everything before it has started, pings the watchdog, and says STOPPING=1.
   * The watchdog means healthy, not just alive: while `progress` names a stuck part, no ping is sent (systemd then
   * restarts the service), the log says which part once, and STATUS shows it in `systemctl status`.
   */
  asPart(progress?: ProgressCheck): Part {
    let withheldFor = '';
    const ping = async () => {
      const stuck = progress?.stuck() ?? [];
      const names = stuck.map((part) => part.name).join(', ');
      if (names !== withheldFor) {
        if (names) this.logger.error({ stuck }, `withholding the watchdog: no progress from ${names}`);
        else this.logger.warn('every part shows progress again; watchdog pings resumed');
        withheldFor = names;
        await this.notify(names ? `STATUS=no progress from ${names}` : 'STATUS=running');
      }
      if (!names) await this.notify('WATCHDOG=1');
    };
    return {
      name: 'systemd-notify',
      start: async () => {
        await this.notify('READY=1', 'STATUS=running');
        const interval = this.watchdogIntervalMs;
        if (interval) this.watchdogTimer = setInterval(() => void ping(), interval);
      },
      stop: async () => {
        clearInterval(this.watchdogTimer);
        await this.notify('STOPPING=1', 'STATUS=stopping');
      },
    };
  }
}
