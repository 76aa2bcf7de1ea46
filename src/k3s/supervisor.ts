import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { k3sChildEnvironment } from './child-env.js';
import { adoptAgent, clearProcessRecord, processStartTime, readProcessRecord, recordAgentProcess, spawnAgent, type AgentProcess, type ExitInfo } from './agent-process.js';
import { eventKindSpec } from '../protocol/event.js';
import type { K3sEvent } from './events.js';
import { probeHealthz } from './health.js';
import { clearHold, isHeld, writeHold } from './hold.js';
import { RestartRequests } from './restart-requests.js';
import { OtherAgentsWatch } from './foreign-process.js';
import { findLaunchedProcess, LAUNCH_ID_ENV, writeLaunchIntent } from './launch-intent.js';
import { LogWatch } from './log-watch.js';
import { MachineWait } from './machine-wait.js';
import { terminateAgent } from './terminate.js';
import { RestartPolicy } from './restart-policy.js';
import { LogTail } from './log-tail.js';
import { withRotatingLog } from './log-rotation.js';
import { startFailureDetail, type StartStep } from './start-failure.js';
import { writeStatusFile } from './status-file.js';
import { argsWithTokenFile } from './token-file.js';
import { DEFAULT_TIMINGS, SYSTEM_CLOCK, type Clock, type K3sStatus, type StateName, type SupervisorOptions, type SupervisorTimings } from './supervisor-options.js';

type State =
  | { name: 'stopped' }
  | { name: 'held' }
  | { name: 'launching' }
  | { name: 'not-installed' }
  | { name: 'starting' | 'running-healthy' | 'running-unhealthy' | 'stopping'; child: AgentProcess }
  | { name: 'backoff' | 'crash-loop'; delayMs: number };

export const LOG_FILE = 'agent-output.log';
export const RECORD_FILE = 'agent-process.json';
const LAUNCH_FILE = 'agent-launch.json';

/**
 * Runs `k3s agent` as an explicit state machine in the manner of Mender's client: every state's handler waits for
 * what can happen in it and returns the next state.
 *
 *   launching -> starting -> running-healthy <-> running-unhealthy
 *   any exit (k3s exits 0 on internal failures too) -> backoff -> launching, or -> crash-loop -> launching
 *   restart -> stopping (ONE SIGTERM, SIGKILL after the grace period) -> launching
 *   stopK3s -> stopping -> held (k3s stays down, also for the next fleetlet, until restart or the hold is lifted)
 *   stop -> stopped: only the machine stops; k3s keeps running
 *
 * A stop or restart of fleetlet never stops k3s: k3s writes to a log file it rotates itself (log-rotation.ts), not a
 * pipe, and its pid, start time and boot id are recorded, so that the next fleetlet adopts the running k3s instead of
 * starting a second one. Stopping k3s is an explicit act (stopK3s, `fleetlet k3s stop`, `fleetlet uninstall`).
 */
export class K3sSupervisor {
  private readonly t: SupervisorTimings;
  private readonly clock: Clock;
  private readonly log: LogWatch;
  private readonly tail: LogTail;
  private readonly wait: MachineWait;
  private readonly restarts = new RestartRequests();
  private holdAsked = false;
  private heldWaiters: (() => void)[] = [];
  private loop: Promise<void> | undefined;
  private readonly restartPolicy: RestartPolicy;
  private readonly otherAgents: OtherAgentsWatch;
  private healthySince: number | undefined;
  private current: K3sStatus;

  constructor(private readonly options: SupervisorOptions) {
    this.t = { ...DEFAULT_TIMINGS, ...options.timings };
    this.clock = options.clock ?? SYSTEM_CLOCK;
    this.wait = new MachineWait(this.clock);
    this.otherAgents = new OtherAgentsWatch(options.binaryPath);
    this.restartPolicy = new RestartPolicy(this.t, options.random ?? Math.random);
    this.log = new LogWatch(options.logRingLines ?? 500, {
      registered: () => {
        if (this.current.registered) return;
        this.current.registered = true;
        this.saveStatus();
      },
      problem: (problem, line, firstInRun) => {
        this.current.problem = { kind: problem.kind, remedy: problem.remedy, line, at: this.clock.now() };
        if (!firstInRun) return;
        this.saveStatus();
        this.emit(problem.kind, { line }, problem.remedy);
      },
    });
    this.tail = new LogTail(this.logFile, (line) => this.log.feed(line), {
      pollMs: this.t.logPollMs,
      maxFileBytes: options.maxLogFileBytes ?? 20 * 1024 * 1024,
      maxLineLength: 4096,
    });
    this.current = { state: 'stopped', since: this.clock.now(), adopted: false, restarts: 0, registered: false };
  }

  get logFile(): string {
    return join(this.options.workDir, LOG_FILE);
  }

  private get recordFile(): string {
    return join(this.options.workDir, RECORD_FILE);
  }

  private get launchFile(): string {
    return join(this.options.workDir, LAUNCH_FILE);
  }

  status(): K3sStatus {
    return { ...this.current };
  }

  recentLogLines(max: number): string[] {
    return this.log.ring.lines(max);
  }

  /** Adopts a k3s left running by a previous fleetlet, or starts one. Returns at once; the machine runs on. */
  async start(): Promise<void> {
    mkdirSync(this.options.workDir, { recursive: true, mode: 0o700 });
    const record = readProcessRecord(this.recordFile);
    // A fleetlet killed while it spawned k3s left no record of it (or only one of an earlier k3s, now gone): the
    // launch id that k3s carries finds it then. A record whose process still runs is judged as it is.
    const candidate = record && processStartTime(record.pid) === record.startTime ? record : findLaunchedProcess(this.launchFile, this.clock.now());
    const adopted = candidate ? adoptAgent(candidate, this.t.adoptPollMs, this.options.dataDir) : undefined;
    await this.tail.start(true);
    let first: State = { name: 'launching' };
    if (adopted) {
      this.emit('k3s.adopted', { pid: adopted.pid });
      this.current.version = record?.version;
      first = { name: 'starting', child: adopted };
    }
    this.loop = this.run(first);
  }

  /** Stops the machine only: k3s keeps running, recorded, for the next fleetlet to adopt. */
  async stop(): Promise<void> {
    this.wait.stop();
    await this.loop;
    this.restarts.settleAll();
    this.settleHeldWaiters();
    this.tail.stop();
    await this.tail.poll().catch(() => undefined);
  }

  /**
   * Stops k3s on request (one SIGTERM, SIGKILL after the grace period) and keeps it stopped, also across fleetlet
   * restarts and reboots, until restart() or `fleetlet k3s start`. Resolves once k3s is down.
   */
  async stopK3s(by: string): Promise<void> {
    await writeHold(this.options.workDir, by, this.clock.now());
    if (this.stopping || !this.loop || this.current.state === 'held') return;
    const held = new Promise<void>((resolve) => this.heldWaiters.push(resolve));
    this.holdAsked = true;
    this.wait.wake();
    await held;
  }

  /**
   * Restarts k3s now: one SIGTERM, then a start without backoff (also out of backoff, a crash loop or a hold, which
   * it lifts). Resolves after a start attempt that began after this call, whatever its outcome; waitHealthy-style
   * callers judge the result from status().
   */
  async restart(): Promise<void> {
    if (this.stopping || !this.loop) return;
    this.holdAsked = false;
    // Lifted before the request is counted: a launch that serves it must not find the hold still there.
    await clearHold(this.options.workDir);
    const attempted = this.restarts.ask();
    this.wait.wake();
    await attempted;
  }

  private spawnedBefore = false;

  private settleHeldWaiters(): void {
    for (const resolve of this.heldWaiters.splice(0)) resolve();
  }

  private async run(first: State): Promise<void> {
    let state = first;
    this.enter(state);
    while (state.name !== 'stopped') {
      let next: State;
      try {
        next = await this.step(state);
      } catch (err) {
        this.options.logger.error({ err, state: state.name }, 'k3s supervisor step failed; backing off');
        next = this.backoffAfter(undefined);
      }
      this.enter(next);
      state = next;
    }
  }

  private step(state: State): Promise<State> {
    switch (state.name) {
      case 'launching':
        return this.launch();
      case 'not-installed':
        return this.waitThenLaunch(this.t.notInstalledRetryMs);
      case 'starting':
      case 'running-healthy':
      case 'running-unhealthy':
        return this.watch(state.child, state.name);
      case 'backoff':
      case 'crash-loop':
        return this.waitThenLaunch(state.delayMs);
      case 'stopping':
        return this.terminate(state.child);
      case 'held':
        return this.waitWhileHeld();
      case 'stopped':
        return Promise.resolve(state);
    }
  }

  private async launch(): Promise<State> {
    // Serves the restart requests made before this point; one made during the launch gets a launch of its own.
    const generation = this.restarts.launchBegins();
    try {
      return await this.tryLaunch();
    } finally {
      this.restarts.launchEnded(generation);
    }
  }

  private async tryLaunch(): Promise<State> {
    if (this.stopping) return { name: 'stopped' };
    if (isHeld(this.options.workDir)) return { name: 'held' };
    if (!existsSync(this.options.binaryPath)) return { name: 'not-installed' };
    // Advisory only: fleetlet still starts its own, whose port conflicts then show in its log.
    const others = this.otherAgents.newlySeen();
    if (others) this.emit('k3s.foreign-process', { pids: others });
    let step: StartStep = 'prepare';
    try {
      await this.options.beforeLaunch?.();
      const version = await this.options.binaryVersion?.(this.options.binaryPath);
      const invocation = this.options.invocation();
      const args = withRotatingLog(await argsWithTokenFile(this.options.workDir, invocation), this.logFile);
      // The launch id is no secret: it lets the next fleetlet find this k3s should it die before the record is written.
      const env = { ...k3sChildEnvironment(this.options.baseEnv, invocation.env, this.options.passEnv), [LAUNCH_ID_ENV]: writeLaunchIntent(this.launchFile, this.options.binaryPath) };
      step = 'spawn';
      let recorded: Promise<void> | undefined;
      const child = await spawnAgent({
        binaryPath: this.options.binaryPath,
        args,
        env,
        logFile: this.logFile,
        // recordProcess never rejects (it logs), and the launch awaits it right after the spawn.
        onSpawn: (pid) => {
          recorded = this.recordProcess(pid, version);
        },
      });
      this.current.version = version;
      await recorded;
      if (this.spawnedBefore) this.current.restarts += 1;
      this.spawnedBefore = true;
      this.log.newRun();
      this.current.problem = undefined;
      this.current.registered = false;
      return { name: 'starting', child };
    } catch (err) {
      // A code, never the error's message, also in the log: a spawn error quotes the arguments it refused.
      const detail = startFailureDetail(err, step);
      const why = detail.reason ?? detail.code;
      this.options.logger.warn(detail, `k3s could not be started: ${why}`);
      // `fleetlet k3s status` shows it as the last problem, like a problem seen in the k3s log.
      const remedy = eventKindSpec('k3s.start-failed').remedy ?? '';
      this.current.problem = { kind: 'k3s.start-failed', remedy, line: why, at: this.clock.now() };
      this.saveStatus();
      this.emit('k3s.start-failed', { ...detail }, undefined, why);
      return this.backoffAfter(undefined);
    }
  }

  /** The running states: probe health every interval until the process exits or a stop/restart is asked. */
  private async watch(child: AgentProcess, name: 'starting' | 'running-healthy' | 'running-unhealthy'): Promise<State> {
    let failures = 0;
    for (;;) {
      const outcome = await this.wait.for(this.t.healthIntervalMs, child);
      if (outcome === 'exit') return this.afterExit(await child.exited);
      // fleetlet is stopping, not k3s: the record stays, and the next fleetlet adopts this k3s.
      if (outcome === 'stop') return { name: 'stopped' };
      if (this.restarts.pending || this.holdAsked) return { name: 'stopping', child };
      const healthy = await probeHealthz(this.options.healthzUrl, this.t.probeTimeoutMs);
      if (healthy) {
        failures = 0;
        if (name !== 'running-healthy') return { name: 'running-healthy', child };
        if (this.healthySince !== undefined && this.clock.now() - this.healthySince >= this.t.stableMs) {
          this.restartPolicy.reset();
        }
      } else if (name === 'running-healthy' && ++failures >= this.t.unhealthyAfterFailures) {
        return { name: 'running-unhealthy', child };
      }
    }
  }

  /**
   * Recorded in the tick k3s is forked (the start time is read at once, the file written durably after): a fleetlet
   * killed later still leaves a record. Without it a restarted fleetlet cannot adopt this k3s; it is still
   * supervised now, so only warn.
   */
  private recordProcess(pid: number, version: string | undefined): Promise<void> {
    return recordAgentProcess(this.recordFile, pid, { binaryPath: this.options.binaryPath, version, startedAt: this.clock.now() }).catch(
      (err: unknown) => this.options.logger.warn({ err, pid }, 'cannot record the k3s process; a fleetlet restart would not adopt it'),
    );
  }

  private async afterExit(exit: ExitInfo): Promise<State> {
    // Read what k3s wrote before it died: its last lines usually say why.
    await this.tail.poll().catch(() => undefined);
    this.current.lastExit = exit;
    clearProcessRecord(this.recordFile);
    // Stopped from outside by `fleetlet k3s stop`, which held it first: down on request, not a crash.
    const held = isHeld(this.options.workDir);
    this.emit('k3s.down', { code: exit.code, signal: exit.signal, ...(held ? { requested: true } : { lastLines: this.log.ring.lines(20) }) });
    return held ? { name: 'held' } : this.backoffAfter(exit);
  }

  private backoffAfter(exit: ExitInfo | undefined): State {
    const decision = this.restartPolicy.afterExit(this.clock.now());
    if (decision.verdict === 'backoff') return { name: 'backoff', delayMs: decision.delayMs };
    const detail = { exits: decision.exits, windowMs: this.t.crashLoopWindowMs, retryMs: decision.delayMs, lastExit: exit };
    this.emit('k3s.crash-loop', detail, this.current.problem?.remedy);
    return { name: 'crash-loop', delayMs: decision.delayMs };
  }

  private async waitWhileHeld(): Promise<State> {
    for (;;) {
      const outcome = await this.wait.for(this.t.holdPollMs, undefined);
      if (outcome === 'stop') return { name: 'stopped' };
      if (this.restarts.pending || !isHeld(this.options.workDir)) return { name: 'launching' };
    }
  }

  private async waitThenLaunch(delayMs: number): Promise<State> {
    this.current.nextStartAt = this.clock.now() + delayMs;
    const outcome = await this.wait.for(delayMs, undefined);
    this.current.nextStartAt = undefined;
    return outcome === 'stop' ? { name: 'stopped' } : { name: 'launching' };
  }

  private async terminate(child: AgentProcess): Promise<State> {
    const { exit, forced } = await terminateAgent(child, this.t.graceMs, this.clock);
    if (forced) this.emit('k3s.stop-forced', { pid: child.pid, graceMs: this.t.graceMs });
    this.current.lastExit = exit;
    clearProcessRecord(this.recordFile);
    const held = isHeld(this.options.workDir);
    if (this.restarts.pending && !held && !this.stopping) return { name: 'launching' };
    this.emit('k3s.down', { code: exit.code, signal: exit.signal, requested: true });
    return this.stopping ? { name: 'stopped' } : { name: 'held' };
  }

  private get stopping(): boolean {
    return this.wait.stopping;
  }

  private enter(state: State): void {
    const previous = this.current.state;
    const name: StateName = state.name === 'launching' ? 'starting' : state.name;
    const child = 'child' in state ? state.child : undefined;
    this.current = { ...this.current, state: name, pid: child?.pid, version: child ? this.current.version : undefined, adopted: child?.adopted ?? false };
    if (name === 'held') {
      this.holdAsked = false;
      this.settleHeldWaiters();
    }
    if (name !== previous) {
      this.current.since = this.clock.now();
      this.options.logger.info({ from: previous, to: name, pid: child?.pid }, 'k3s state');
      if (name === 'running-healthy') {
        this.healthySince = this.clock.now();
        this.emit('k3s.up', { pid: child?.pid });
      } else this.healthySince = undefined;
      if (name === 'running-unhealthy') this.emit('k3s.unhealthy', { pid: child?.pid, lastLines: this.log.ring.lines(20) });
      if (name === 'not-installed') {
        this.emit('k3s.not-installed', { binaryPath: this.options.binaryPath });
      }
    }
    this.saveStatus();
  }

  /** Without a remedy of its own (from the log line k3s complained with), an event carries the table's. */
  private emit(kind: K3sEvent['kind'], detail: Record<string, unknown>, ownRemedy?: string, reason?: string): void {
    const remedy = ownRemedy ?? eventKindSpec(kind).remedy;
    const event: K3sEvent = { kind, at: this.clock.now(), detail, ...(remedy ? { remedy } : {}), ...(reason ? { reason } : {}) };
    this.options.logger.info({ event: kind, remedy }, 'k3s event');
    try {
      this.options.sink.emit(event);
    } catch (err) {
      this.options.logger.error({ err, event: kind }, 'k3s event sink failed');
    }
  }

  private saveStatus(): void {
    try {
      writeStatusFile(this.options.workDir, this.current, this.clock.now());
    } catch (err) {
      this.options.logger.warn({ err }, 'cannot save k3s status');
    }
  }
}
