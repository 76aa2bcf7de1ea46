import { UsageError } from '../lib/errors.js';
import type { CommandEnvelope } from '../protocol/command.js';
import {
  HubRolloutCreate,
  HubRolloutDetail,
  HubRolloutList,
  HubRolloutSummary,
  type HubRolloutAction,
  type RolloutAmount,
} from '../protocol/hub-rollouts-api.js';
import { printable, printableJson } from './format.js';
import { HubClient, type HubConnectionOptions } from './hub-client.js';
import { planBatches, type RolloutPlan } from './rollout-plan.js';
import { newRolloutId } from './rollout-state.js';
import { buildSignedCommand, type SigningKey } from './signer.js';

/**
 * `fleet rollout ... --hub`: the operator's side of a rollout the hub runs. The devices are selected and the
 * batches planned here, as for a rollout run from this machine; then one command is signed per device, valid until
 * the rollout's deadline, and all of them are handed to the hub, which can only release them batch by batch: it
 * holds no key, so it cannot change a command, address another device or make the rollout outlive its deadline.
 */
export interface HubRolloutPlan extends Omit<RolloutPlan, 'kind'> {
  /** The hub also rolls out k3s.configure. */
  kind: HubRolloutCreate['kind'];
  /** Until the deadline: each command's validity, and how long offline devices are waited for. */
  ttlSeconds: number;
  /** After success, how long a device is watched for a health regression. */
  watchSeconds: number;
}

export async function startHubRollout(
  hub: HubConnectionOptions,
  plan: HubRolloutPlan,
  signer: SigningKey,
  options: { dryRun: boolean; out: (line: string) => void },
): Promise<HubRolloutSummary | undefined> {
  const out = (line: string) => options.out(printable(line));
  const client = new HubClient(hub);
  const query: Record<string, string | string[]> = {
    label: Object.entries(plan.filter.labels ?? {}).map(([k, v]) => `${k}=${v}`),
    ...(plan.filter.group ? { group: plan.filter.group } : {}),
    ...(plan.filter.onlineOnly ? { state: 'online' } : {}),
  };
  const selected = (await client.allDevices(query)).map((d) => d.deviceId);
  if (selected.length === 0) throw new UsageError('no device matches the selection (--label, --group; offline devices need --include-offline); nothing to roll out');
  const batches = planBatches(plan, selected);
  const description = `${plan.kind} ${JSON.stringify(plan.args)}`;
  if (options.dryRun) {
    out(`dry run: ${description} to ${selected.length} device(s) in ${batches.length} batch(es); nothing sent to the hub`);
    for (const [index, batch] of batches.entries()) out(`  batch ${index + 1}: ${batch.join(', ')}`);
    return undefined;
  }
  const now = Date.now();
  const commands: Record<string, CommandEnvelope> = {};
  for (const deviceId of selected) {
    commands[deviceId] = buildSignedCommand({ type: plan.kind, target: { device: deviceId }, args: plan.args, ttlSeconds: plan.ttlSeconds, now }, signer);
  }
  const checked = HubRolloutCreate.safeParse({
    rolloutId: newRolloutId(),
    kind: plan.kind,
    description: description.slice(0, 500),
    batches,
    canaries: plan.canaries.length > 0 || plan.canaryCount > 0,
    commands,
    maxFailures: plan.maxFailures,
    deviceTimeoutSeconds: Math.max(10, Math.round(plan.deviceTimeoutSeconds)),
    watchSeconds: plan.watchSeconds,
    deadline: new Date(now + plan.ttlSeconds * 1000).toISOString(),
  });
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    throw new UsageError(`the hub would refuse this rollout: ${issue.path.join('.')}: ${issue.message} (see --device-timeout, --watch, --ttl)`);
  }
  const create = checked.data;
  const summary = await client.postJson('/api/v1/rollouts', create, HubRolloutSummary);
  out(`rollout ${summary.rolloutId}: ${description} to ${summary.devices} device(s) in ${summary.batchCount} batch(es), run by the hub until ${summary.deadline}`);
  out(`follow it: fleetlet fleet rollout status ${summary.rolloutId} --hub ${hub.url}`);
  return summary;
}

export async function showHubRollout(hub: HubConnectionOptions, rolloutId: string, options: { json: boolean; out: (line: string) => void }): Promise<HubRolloutDetail> {
  const detail = await new HubClient(hub).getJson(`/api/v1/rollouts/${encodeURIComponent(rolloutId)}`, HubRolloutDetail);
  if (options.json) {
    options.out(printableJson(JSON.stringify(detail, null, 2)));
    return detail;
  }
  const out = (line: string) => options.out(printable(line));
  out(summaryLine(detail));
  for (const batch of detail.batches) {
    const counts = new Map<string, number>();
    for (const d of batch.devices) counts.set(d.outcome, (counts.get(d.outcome) ?? 0) + 1);
    out(`  batch ${batch.index + 1}/${detail.batchCount} ${batch.state}: ${[...counts].map(([o, n]) => `${n} ${o}`).join(', ')}`);
    for (const d of batch.devices.filter((x) => x.outcome !== 'succeeded' && x.outcome !== 'pending')) {
      out(`    ${d.deviceId} ${d.outcome}${d.detail ? `: ${d.detail}` : ''}`);
    }
  }
  return detail;
}

/** Every rollout the hub knows, newest first, one line each. */
export async function listHubRollouts(hub: HubConnectionOptions, options: { json: boolean; out: (line: string) => void }): Promise<HubRolloutList> {
  const list = await new HubClient(hub).getJson('/api/v1/rollouts', HubRolloutList);
  if (options.json) options.out(printableJson(JSON.stringify(list, null, 2)));
  else for (const rollout of list.rollouts) options.out(printable(`${summaryLine(rollout)} (${rollout.kind}, by ${rollout.createdBy}, ${rollout.createdAt})`));
  return list;
}

export async function actOnHubRollout(
  hub: HubConnectionOptions,
  rolloutId: string,
  action: 'pause' | 'resume' | 'abort',
  maxFailures: RolloutAmount | undefined,
  out: (line: string) => void,
): Promise<HubRolloutSummary> {
  const body: HubRolloutAction = maxFailures ? { maxFailures } : {};
  const summary = await new HubClient(hub).postJson(`/api/v1/rollouts/${encodeURIComponent(rolloutId)}/${action}`, body, HubRolloutSummary);
  out(printable(summaryLine(summary)));
  return summary;
}

function summaryLine(s: HubRolloutSummary): string {
  const counts = Object.entries(s.counts)
    .filter(([, n]) => n > 0)
    .map(([o, n]) => `${n} ${o}`)
    .join(', ');
  return `rollout ${s.rolloutId} ${s.state}${s.stateReason ? `: ${s.stateReason}` : ''}; batch ${s.currentBatch + 1}/${s.batchCount}; ${counts}`;
}
