import type { Command } from 'commander';
import { UsageError } from '../lib/errors.js';
import { COMMAND_ARGS } from '../protocol/command.js';
import { actOnHubRollout, listHubRollouts, showHubRollout, startHubRollout, type HubRolloutPlan } from '../fleet/hub-rollout.js';
import { parseAmount } from '../fleet/rollout-plan.js';
import { loadSigningKey } from '../fleet/signer.js';
import type { CliIo } from './program.js';
import { EXIT } from './exit-codes.js';
import { signingKeyOf, type LoadedProfile } from './fleet-connection-flags.js';
import { hubOf } from './fleet-hub-options.js';
import { rolloutPlan, stagesOf, type RolloutFlags } from './fleet-rollout-flags.js';

/** `fleet rollout k3s|agent|configure ... --hub URL` and `fleet rollout status|pause|resume|abort ID`: rollouts the hub runs. */
export const HUB_ROLLOUT_ACTIONS = ['status', 'pause', 'resume', 'abort'] as const;

export interface HubRolloutFlags extends RolloutFlags {
  watch: string;
  args?: string;
  json?: boolean;
  hub?: string;
}

/** Whether this `fleet rollout` goes to the hub: asked with --hub, or something only the hub does. */
export function wantsHub(what: string, options: HubRolloutFlags): boolean {
  return options.hub !== undefined || what === 'configure' || (HUB_ROLLOUT_ACTIONS as readonly string[]).includes(what);
}

export async function runHubRollout(what: string, id: string | undefined, options: HubRolloutFlags, command: Command, loaded: LoadedProfile, io: CliIo): Promise<number> {
  const hub = hubOf(command, loaded);
  if (!hub) throw new UsageError(`fleet rollout ${what} needs the hub: give --hub URL with --token-file`);
  const out = (line: string) => io.stdout(`${line}\n`);
  if ((HUB_ROLLOUT_ACTIONS as readonly string[]).includes(what)) {
    if (what === 'status' && !id) {
      const list = await listHubRollouts(hub, { json: options.json === true, out });
      return list.rollouts.some((r) => r.state === 'halted') ? EXIT.FAILURE : EXIT.OK;
    }
    if (!id) throw new UsageError(`fleet rollout ${what} needs the rollout id`);
    if (what === 'status') {
      const detail = await showHubRollout(hub, id, { json: options.json === true, out });
      return detail.state === 'halted' ? EXIT.FAILURE : EXIT.OK;
    }
    // A --max-failures typed now (not its default) is the new threshold for a halted rollout.
    const maxFailures = command.getOptionValueSource('maxFailures') === 'cli' ? parseAmount(options.maxFailures, '--max-failures') : undefined;
    await actOnHubRollout(hub, id, what as 'pause' | 'resume' | 'abort', maxFailures, out);
    return EXIT.OK;
  }
  if (id) throw new UsageError(`fleet rollout ${what} takes no rollout id`);
  const signing = signingKeyOf(options, loaded);
  const signer = loadSigningKey(signing.key, signing.keyId);
  const summary = await startHubRollout(hub, planOf(what, options), signer, { dryRun: options.dryRun === true, out });
  return summary?.state === 'halted' ? EXIT.FAILURE : EXIT.OK;
}

function planOf(what: string, options: HubRolloutFlags): HubRolloutPlan {
  const watchSeconds = Number(options.watch);
  if (!Number.isInteger(watchSeconds) || watchSeconds < 0) throw new UsageError(`--watch expects whole seconds, got "${options.watch}"`);
  if (what === 'k3s' || what === 'agent') {
    if (!options.to) throw new UsageError('give --to VERSION');
    return { ...rolloutPlan(what, options), watchSeconds };
  }
  if (what !== 'configure') throw new UsageError('rollout what? expected k3s, agent or configure, or status, pause, resume or abort ID');
  if (!options.args) throw new UsageError('fleet rollout configure needs --args with the k3s.configure arguments (labels, taints, serverUrl)');
  let args: Record<string, unknown>;
  try {
    args = JSON.parse(options.args) as Record<string, unknown>;
  } catch {
    throw new UsageError('--args is not valid JSON');
  }
  const checked = COMMAND_ARGS['k3s.configure'].safeParse(args);
  if (!checked.success) throw new UsageError(`invalid k3s.configure args: ${checked.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return { kind: 'k3s.configure', args, ...stagesOf(options), watchSeconds };
}
