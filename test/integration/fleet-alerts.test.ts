import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertItem } from '../../src/protocol/hub-alerts-api.js';
import { runCliAsync } from '../helpers/cli.js';
import { freePort } from '../helpers/ports.js';
import { raiseDeviceAlerts, startHubApi, type TestHubApi } from '../helpers/hub-api.js';
import { HubDatabases } from '../helpers/hub-database.js';
import { tempDir } from '../helpers/paths.js';

// `fleetlet fleet alerts`, the bundled CLI against a real hub API (SQLite) with alerts raised by its real engine.
describe('fleet alerts --hub', () => {
  const databases = new HubDatabases('sqlite');
  const dir = tempDir('fleetlet-fleet-alerts-');
  // A HOME without an operator profile: only the flags and the environment count.
  const env = { HOME: dir.dir };
  let api: TestHubApi;
  let tokenFile: string;

  beforeAll(async () => {
    api = await startHubApi(databases);
    tokenFile = join(dir.dir, 'token');
    writeFileSync(tokenFile, `${api.tokens.viewer}\n`, { mode: 0o600 });
    // Devices offline for an hour (alerts by the engine), pi-2 also hot.
    const engine = await raiseDeviceAlerts(api, { offline: ['pi-1', 'pi-2'], hot: 'pi-2' });
    await engine.report({ rule: 'rollout-halted', subject: 'rollout:r-1', rolloutId: 'r-1', active: true, summary: 'halted at batch 2' });
    await engine.report({ rule: 'rollout-halted', subject: 'rollout:r-1', active: false, summary: 'halted at batch 2' });
  });
  afterAll(async () => {
    await api?.close();
    await databases.close();
    dir.cleanup();
  });

  const alerts = (...args: string[]) => runCliAsync(['fleet', 'alerts', '--hub', api.url, '--token-file', tokenFile, ...args], env);

  it('lists the open alerts newest first, with their remedy and how many are open', async () => {
    const result = await alerts();
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^OPENED\s+SEVERITY\s+STATE\s+RULE\s+SUBJECT\s+SUMMARY\s+REMEDY$/);
    expect(lines.slice(1, -1).map((line) => line.split(/\s{2,}/).slice(3, 5))).toEqual([
      ['temperature-high', 'pi-2'],
      ['device-offline', 'pi-2'],
      ['device-offline', 'pi-1'],
    ]);
    expect(result.stdout).toMatch(/warning\s+open\s+device-offline\s+pi-1\s+offline for 60 minutes\s+.*network/);
    expect(lines.at(-1)).toBe('3 alert(s) shown, 3 open on the hub');
    expect(result.stdout).not.toContain('rollout:r-1');
  });

  it('filters by state, rule and device in the hub, and gives JSON the API\'s shape', async () => {
    const all = await alerts('--state', 'all', '--json');
    expect(all.code).toBe(0);
    const items = AlertItem.array().parse(JSON.parse(all.stdout));
    expect(items.map((a) => [a.subject, a.state])).toContainEqual(['rollout:r-1', 'resolved']);
    expect(items).toHaveLength(4);

    const resolved = AlertItem.array().parse(JSON.parse((await alerts('--state', 'resolved', '--json')).stdout));
    expect(resolved.map((a) => a.subject)).toEqual(['rollout:r-1']);
    const hot = AlertItem.array().parse(JSON.parse((await alerts('--rule', 'temperature-high', '--json')).stdout));
    expect(hot.map((a) => [a.rule, a.deviceId])).toEqual([['temperature-high', 'pi-2']]);
    const one = AlertItem.array().parse(JSON.parse((await alerts('--device', 'pi-1', '--json')).stdout));
    expect(one.map((a) => [a.rule, a.deviceId])).toEqual([['device-offline', 'pi-1']]);
    const newest = await alerts('--limit', '1');
    expect(newest.stdout.trimEnd().split('\n').at(-1)).toBe('1 alert(s) shown, 3 open on the hub');
  });

  it('says what is wrong with its flags, naming them (exit 64)', async () => {
    const noHub = await runCliAsync(['fleet', 'alerts'], env);
    expect([noHub.code, noHub.stderr]).toEqual([64, expect.stringContaining('--hub')]);
    const noToken = await runCliAsync(['fleet', 'alerts', '--hub', api.url], env);
    expect([noToken.code, noToken.stderr]).toEqual([64, expect.stringContaining('--token-file')]);
    const badRule = await alerts('--rule', 'cpu-hot');
    expect([badRule.code, badRule.stderr]).toEqual([64, expect.stringContaining('--rule')]);
    const badLimit = await alerts('--limit', '501');
    expect([badLimit.code, badLimit.stderr]).toEqual([64, expect.stringContaining('--limit')]);
    const badState = await alerts('--state', 'closed');
    expect([badState.code, badState.stderr]).toEqual([64, expect.stringContaining('--state')]);
  });

  it('fails with the reason when the hub is not there or refuses the token, printing no table', async () => {
    const nowhere = `http://127.0.0.1:${await freePort()}`;
    const down = await runCliAsync(['fleet', 'alerts', '--hub', nowhere, '--token-file', tokenFile], env);
    expect(down.code).not.toBe(0);
    expect(down.stderr).toContain('127.0.0.1');
    expect(down.stdout).toBe('');
    const badFile = join(dir.dir, 'bad-token');
    writeFileSync(badFile, 'flt_not-a-real-token-1234\n', { mode: 0o600 });
    const refused = await runCliAsync(['fleet', 'alerts', '--hub', api.url, '--token-file', badFile], env);
    expect([refused.code, refused.stderr, refused.stdout]).toEqual([1, expect.stringContaining('HTTP 401'), '']);
  });
});
