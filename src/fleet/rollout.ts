import type { MqttClient } from 'mqtt';
import { UsageError } from '../lib/errors.js';
import type { CommandResult } from '../protocol/result.js';
import { Topics } from '../protocol/topics.js';
import { connectOperator, type FleetConnectionOptions } from './connection.js';
import { collectFleet, matches } from './fleet-view.js';
import { formatResult, printable } from './format.js';
import { ResultListener } from './results.js';
import { planBatches, resolveAmount, type RolloutPlan } from './rollout-plan.js';
import { loadRolloutState, newRolloutId, saveRolloutState, type RolloutState } from './rollout-state.js';
import { buildSignedCommand, type SigningKey } from './signer.js';

export interface RolloutRequest {
  stateFile: string;
  /** Needed to start a rollout; ignored when the state file already holds one (it is resumed). */
  plan?: RolloutPlan;
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
 * get a fresh command (upgrades to an installed version succeed at once, so nothing runs twice).
 */
export async function runRollout(given: RolloutRequest): Promise<RolloutState> {
  // Device ids, details and halt reasons come from devices: every line is escaped before it reaches a terminal.
  const request: RolloutRequest = { ...given, out: (line) => given.out(printable(line)) };
  const { out } = request;
  const topics = new Topics(request.connection.topicRoot);
  const client = await connectOperator(request.connection);
  try {
    let state = loadRolloutState(request.stateFile);
    if (state) {
      out(`resuming rollout ${state.rolloutId} from ${request.stateFile}${request.plan ? ' (its own plan; options given now are ignored)' : ''}`);
    } else {
      if (!request.plan) throw new UsageError(`${request.stateFile} does not exist: give a plan to start a rollout`);
      if (request.dryRun) return await planOnly(client, topics, request.plan, out);
      state = await startRollout(client, topics, request.plan, request.stateFile, out);
    }
    if (state.outcome !== 'running') {
      out(summary(state));
      return state;
    }
    const listener = new ResultListener(client, topics);
    await listener.start();
    try {
      await runBatches(state, client, topics, listener, request);
    } finally {
      listener.stop();
    }
    out(summary(state));
    return state;
  } finally {
    await client.endAsync();
  }
}

async function selectDevices(client: MqttClient, topics: Topics, plan: RolloutPlan): Promise<string[]> {
  const fleet = await collectFleet(client, topics, { settleMs: 500, maxWaitMs: 15_000 });
  const selected = [...fleet.values()].filter((d) => matches(d, plan.filter)).map((d) => d.deviceId);
  if (selected.length === 0) throw new UsageError('no device matches the selection; nothing to roll out');
  return selected;
}

async function planOnly(client: MqttClient, topics: Topics, plan: RolloutPlan, out: (line: string) => void): Promise<RolloutState> {
  const selected = await selectDevices(client, topics, plan);
  const batches = planBatches(plan, selected);
  out(`dry run: ${plan.kind} ${JSON.stringify(plan.args)} to ${selected.length} device(s) in ${batches.length} batch(es); nothing sent`);
  for (const [index, batch] of batches.entries()) out(`  batch ${index + 1}: ${batch.join(', ')}`);
  return { formatVersion: 1, rolloutId: 'dry-run', createdAt: new Date().toISOString(), plan, batches, devices: {}, outcome: 'running' };
}

async function startRollout(client: MqttClient, topics: Topics, plan: RolloutPlan, stateFile: string, out: (line: string) => void): Promise<RolloutState> {
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
  saveRolloutState(stateFile, state);
  out(`rollout ${state.rolloutId}: ${plan.kind} ${JSON.stringify(plan.args)} to ${selected.length} device(s) in ${batches.length} batch(es); state in ${stateFile}`);
  return state;
}

async function runBatches(state: RolloutState, client: MqttClient, topics: Topics, listener: ResultListener, request: RolloutRequest): Promise<void> {
  const { out } = request;
  const total = Object.keys(state.devices).length;
  const hasCanaries = state.plan.canaries.length > 0 || state.plan.canaryCount > 0;
  for (const [index, batch] of state.batches.entries()) {
    const todo = batch.filter((id) => ['pending', 'sent'].includes(state.devices[id]!.status));
    if (todo.length > 0) {
      out(`batch ${index + 1}/${state.batches.length}${index === 0 && hasCanaries ? ' (canaries)' : ''}: ${todo.join(', ')}`);
      await Promise.all(todo.map((deviceId) => upgradeOne(state, deviceId, client, topics, listener, request)));
    }
    const failed = Object.values(state.devices).filter((d) => d.status === 'failed').length;
    const limit = index === 0 && hasCanaries ? 0 : resolveAmount(state.plan.maxFailures, total, 0);
    const succeeded = Object.values(state.devices).filter((d) => d.status === 'succeeded').length;
    out(`after batch ${index + 1}/${state.batches.length}: ${succeeded}/${total} succeeded, ${failed} failed (halt above ${limit})`);
    if (failed > limit) {
      state.outcome = 'halted';
      state.haltReason = `${failed} failure(s) after batch ${index + 1}, more than the ${limit} allowed${index === 0 && hasCanaries ? ' for canaries' : ''}`;
      saveRolloutState(request.stateFile, state);
      return;
    }
  }
  state.outcome = 'completed';
  saveRolloutState(request.stateFile, state);
}

async function upgradeOne(
  state: RolloutState,
  deviceId: string,
  client: MqttClient,
  topics: Topics,
  listener: ResultListener,
  request: RolloutRequest,
): Promise<void> {
  const envelope = buildSignedCommand(
    { type: state.plan.kind, target: { device: deviceId }, args: state.plan.args, ttlSeconds: state.plan.ttlSeconds },
    request.signer,
  );
  // Recorded before publishing: after a crash right here, the resumed rollout sends a fresh command instead.
  state.devices[deviceId] = { status: 'sent', commandId: envelope.id };
  saveRolloutState(request.stateFile, state);
  const final = listener.finalResult(envelope.id, deviceId, state.plan.deviceTimeoutSeconds * 1000, (r) => request.out(formatResult(r)));
  await client.publishAsync(topics.device(deviceId, 'commands'), JSON.stringify(envelope), { qos: 1 });
  const result = await final;
  state.devices[deviceId] = outcomeOf(result, envelope.id, state.plan.deviceTimeoutSeconds);
  saveRolloutState(request.stateFile, state);
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
