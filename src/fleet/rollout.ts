import type { MqttClient } from 'mqtt';
import { UsageError } from '../lib/errors.js';
import type { CommandResult } from '../protocol/result.js';
import { Topics } from '../protocol/topics.js';
import { connectOperator, type FleetConnectionOptions } from './connection.js';
import { collectFleet, matches } from './fleet-view.js';
import { formatResult, printable } from './format.js';
import { ResultListener } from './results.js';
import { planBatches, resolveAmount, type RolloutPlan } from './rollout-plan.js';
import { RolloutStateError } from './errors.js';
import { loadRolloutState, newRolloutId, RolloutStateFile, type RolloutState } from './rollout-state.js';
import { buildSignedCommand, type SigningKey } from './signer.js';

export interface RolloutRequest {
  /** Where the progress is kept; only a dry run of a new rollout goes without one. */
  stateFile?: string;
  /** What `fleet rollout <what>` was asked: a state file of the other kind is refused, never resumed. */
  kind: RolloutPlan['kind'];
  /** Needed to start a rollout; ignored when the state file already holds one (it is resumed). */
  plan?: RolloutPlan;
  /** Resuming a halted rollout: the failure threshold the operator now accepts (--max-failures). */
  newMaxFailures?: RolloutPlan['maxFailures'];
  /** End the rollout in the state file: nothing more is sent. */
  abort?: boolean;
  connection: FleetConnectionOptions;
  signer: SigningKey;
  out: (line: string) => void;
  /** Show the devices and batches a new rollout would use, and send nothing. */
  dryRun?: boolean;
}

/**
 * Rolls an upgrade out in stages: canaries first, then batches, each device sent its own signed command and
 * waited for. After every batch the failures so far are compared with the threshold (zero for canaries), and the
 * rollout halts above it. Progress lives in the state file, so a rerun resumes; devices whose result was not seen
 * get a fresh command (upgrades to an installed version succeed at once, so nothing runs twice). A halted rollout
 * goes on only when given a new threshold, or is aborted.
 */
export async function runRollout(given: RolloutRequest): Promise<RolloutState> {
  // Device ids, details and halt reasons come from devices: every line is escaped before it reaches a terminal.
  const request: RolloutRequest = { ...given, out: (line) => given.out(printable(line)) };
  const { out } = request;
  const existing = request.stateFile ? loadRolloutState(request.stateFile) : undefined;
  if (existing && existing.plan.kind !== request.kind) {
    throw new RolloutStateError(
      `${request.stateFile} holds a ${existing.plan.kind} rollout (${existing.rolloutId}), not a ${request.kind} one: ` +
        `resume it with \`fleet rollout ${existing.plan.kind.split('.')[0]} --state ${request.stateFile}\`, or give another --state`,
    );
  }
  if (!existing && request.abort) throw new UsageError(`--abort: ${request.stateFile ?? 'no --state'} holds no rollout to abort`);
  if (!existing && !request.plan) throw new UsageError(`${request.stateFile} does not exist: give --to VERSION to start a rollout`);
  if (!existing && !request.dryRun && !request.stateFile) {
    throw new UsageError('give --state FILE: the rollout keeps its progress there, and a rerun with the same file resumes it (--dry-run needs none)');
  }
  if (existing && (request.dryRun || request.abort || existing.outcome !== 'running')) {
    return settleExisting(existing, new RolloutStateFile(request.stateFile!), request);
  }
  const topics = new Topics(request.connection.topicRoot);
  const client = await connectOperator(request.connection);
  try {
    let state = existing;
    if (state) {
      out(`resuming rollout ${state.rolloutId} from ${request.stateFile}${request.plan ? ' (its own plan; options given now are ignored)' : ''}`);
    } else {
      if (request.dryRun || !request.stateFile) return await planOnly(client, topics, request.plan!, out);
      state = await startRollout(client, topics, request.plan!, new RolloutStateFile(request.stateFile), out);
    }
    return await runToEnd(state, client, topics, request);
  } finally {
    await client.endAsync();
  }
}

async function runToEnd(state: RolloutState, client: MqttClient, topics: Topics, request: RolloutRequest): Promise<RolloutState> {
  const listener = new ResultListener(client, topics);
  await listener.start();
  try {
    await runBatches(state, client, topics, listener, request, new RolloutStateFile(request.stateFile!));
  } finally {
    listener.stop();
  }
  request.out(summary(state));
  return state;
}

/** A rollout that is not running, or one asked to abort or only to be shown: nothing is sent here. */
async function settleExisting(state: RolloutState, file: RolloutStateFile, request: RolloutRequest): Promise<RolloutState> {
  const { out } = request;
  const newThreshold = request.newMaxFailures && amountText(request.newMaxFailures) !== amountText(state.plan.maxFailures) ? request.newMaxFailures : undefined;
  if (request.dryRun) {
    out(`dry run: ${file.file} holds rollout ${state.rolloutId}; nothing sent`);
    out(summary(state));
    return state;
  }
  out(`resuming rollout ${state.rolloutId} from ${file.file}: it is ${state.outcome}`);
  if (request.abort && (state.outcome === 'running' || state.outcome === 'halted')) {
    state.outcome = 'aborted';
    await file.save(state);
    out(`rollout ${state.rolloutId} aborted: nothing more will be sent; devices already upgraded keep their version`);
  } else if (state.outcome === 'halted' && newThreshold) {
    state.plan.maxFailures = newThreshold;
    state.outcome = 'running';
    state.thresholdRaised = true;
    delete state.haltReason;
    await file.save(state);
    out(`going on with --max-failures ${amountText(newThreshold)}`);
    const topics = new Topics(request.connection.topicRoot);
    const client = await connectOperator(request.connection);
    try {
      return await runToEnd(state, client, topics, request);
    } finally {
      await client.endAsync();
    }
  }
  out(summary(state));
  if (state.outcome === 'halted') {
    out(`to go on, rerun with a higher --max-failures (now ${amountText(state.plan.maxFailures)}); to end it, rerun with --abort`);
  }
  return state;
}

function amountText(amount: RolloutPlan['maxFailures']): string {
  return 'count' in amount ? String(amount.count) : `${amount.percent}%`;
}

async function selectDevices(client: MqttClient, topics: Topics, plan: RolloutPlan): Promise<string[]> {
  const fleet = await collectFleet(client, topics, { settleMs: 500, maxWaitMs: 15_000 });
  const selected = [...fleet.values()].filter((d) => matches(d, plan.filter)).map((d) => d.deviceId);
  if (selected.length === 0) {
    throw new UsageError('no device matches the selection (--label, --group; offline devices need --include-offline); nothing to roll out');
  }
  return selected;
}

async function planOnly(client: MqttClient, topics: Topics, plan: RolloutPlan, out: (line: string) => void): Promise<RolloutState> {
  const selected = await selectDevices(client, topics, plan);
  const batches = planBatches(plan, selected);
  out(`dry run: ${plan.kind} ${JSON.stringify(plan.args)} to ${selected.length} device(s) in ${batches.length} batch(es); nothing sent`);
  for (const [index, batch] of batches.entries()) out(`  batch ${index + 1}: ${batch.join(', ')}`);
  return { formatVersion: 1, rolloutId: 'dry-run', createdAt: new Date().toISOString(), plan, batches, devices: {}, outcome: 'running' };
}

async function startRollout(client: MqttClient, topics: Topics, plan: RolloutPlan, file: RolloutStateFile, out: (line: string) => void): Promise<RolloutState> {
  const selected = await selectDevices(client, topics, plan);
  const batches = planBatches(plan, selected);
  const state: RolloutState = {
    formatVersion: 1,
    rolloutId: newRolloutId(),
    createdAt: new Date().toISOString(),
    plan,
    batches,
    devices: Object.fromEntries(selected.map((id) => [id, { status: 'pending' as const }])),
    outcome: 'running',
  };
  await file.save(state);
  out(`rollout ${state.rolloutId}: ${plan.kind} ${JSON.stringify(plan.args)} to ${selected.length} device(s) in ${batches.length} batch(es); state in ${file.file}`);
  return state;
}

async function runBatches(
  state: RolloutState,
  client: MqttClient,
  topics: Topics,
  listener: ResultListener,
  request: RolloutRequest,
  file: RolloutStateFile,
): Promise<void> {
  const { out } = request;
  const total = Object.keys(state.devices).length;
  const hasCanaries = state.plan.canaries.length > 0 || state.plan.canaryCount > 0;
  for (const [index, batch] of state.batches.entries()) {
    const todo = batch.filter((id) => ['pending', 'sent'].includes(state.devices[id]!.status));
    if (todo.length > 0) {
      out(`batch ${index + 1}/${state.batches.length}${index === 0 && hasCanaries ? ' (canaries)' : ''}: ${todo.join(', ')}`);
      await Promise.all(todo.map((deviceId) => upgradeOne(state, deviceId, client, topics, listener, request, file)));
    }
    const failed = Object.values(state.devices).filter((d) => d.status === 'failed').length;
    const canaryRule = index === 0 && hasCanaries && state.thresholdRaised !== true;
    const limit = canaryRule ? 0 : resolveAmount(state.plan.maxFailures, total, 0);
    const succeeded = Object.values(state.devices).filter((d) => d.status === 'succeeded').length;
    out(`after batch ${index + 1}/${state.batches.length}: ${succeeded}/${total} succeeded, ${failed} failed (halt above ${limit})`);
    if (failed > limit) {
      state.outcome = 'halted';
      state.haltReason = `${failed} failure(s) after batch ${index + 1}, more than the ${limit} allowed${canaryRule ? ' for canaries' : ''}`;
      await file.save(state);
      return;
    }
  }
  state.outcome = 'completed';
  await file.save(state);
}

async function upgradeOne(
  state: RolloutState,
  deviceId: string,
  client: MqttClient,
  topics: Topics,
  listener: ResultListener,
  request: RolloutRequest,
  file: RolloutStateFile,
): Promise<void> {
  const envelope = buildSignedCommand(
    { type: state.plan.kind, target: { device: deviceId }, args: state.plan.args, ttlSeconds: state.plan.ttlSeconds },
    request.signer,
  );
  // Recorded before publishing: after a crash right here, the resumed rollout sends a fresh command instead.
  state.devices[deviceId] = { status: 'sent', commandId: envelope.id };
  await file.save(state);
  const final = listener.finalResult(envelope.id, deviceId, state.plan.deviceTimeoutSeconds * 1000, (r) => request.out(formatResult(r)));
  await client.publishAsync(topics.device(deviceId, 'commands'), JSON.stringify(envelope), { qos: 1 });
  const result = await final;
  state.devices[deviceId] = outcomeOf(result, envelope.id, state.plan.deviceTimeoutSeconds);
  await file.save(state);
  request.out(result ? formatResult(result) : `${deviceId}: no result within ${state.plan.deviceTimeoutSeconds} s; counted as failed`);
}

function outcomeOf(result: CommandResult | undefined, commandId: string, timeoutSeconds: number) {
  if (!result) return { status: 'failed' as const, commandId, detail: `no result within ${timeoutSeconds} s` };
  if (result.status === 'succeeded') return { status: 'succeeded' as const, commandId, ...(result.detail ? { detail: result.detail } : {}) };
  const reason = result.status === 'failed' || result.status === 'rejected' ? `${result.reason}: ${result.detail}` : result.status;
  return { status: 'failed' as const, commandId, detail: reason };
}

function summary(state: RolloutState): string {
  const counts = { succeeded: 0, failed: 0, pending: 0, sent: 0 };
  for (const device of Object.values(state.devices)) counts[device.status] += 1;
  const head = `rollout ${state.rolloutId} ${state.outcome}${state.haltReason ? `: ${state.haltReason}` : ''}`;
  return `${head}; ${counts.succeeded} succeeded, ${counts.failed} failed, ${counts.pending + counts.sent} not done`;
}
