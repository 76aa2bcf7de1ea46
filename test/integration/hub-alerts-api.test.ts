import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertList } from '../../src/protocol/hub-alerts-api.js';
import { raiseDeviceAlerts, startHubApi, type TestHubApi } from '../helpers/hub-api.js';
import { HubDatabases } from '../helpers/hub-database.js';
import { hubDialects } from '../helpers/postgres.js';

describe.each(hubDialects())('GET /api/v1/alerts on %s', (dialect) => {
  const databases = new HubDatabases(dialect);
  let api: TestHubApi;

  beforeAll(async () => {
    api = await startHubApi(databases);
    // Devices offline for an hour (alerts by the engine), pi-2 also hot.
    const engine = await raiseDeviceAlerts(api, { offline: ['pi-1', 'pi-2', 'pi-3'], hot: 'pi-2' });
    // Two rollout alerts, one of them resolved.
    await engine.report({ rule: 'rollout-halted', subject: 'rollout:r-1', rolloutId: 'r-1', active: true, summary: 'halted' });
    await engine.report({ rule: 'rollout-halted', subject: 'rollout:r-1', active: false, summary: 'halted' });
    await engine.report({ rule: 'rollout-halted', subject: 'rollout:r-2', rolloutId: 'r-2', active: true, summary: 'halted' });
  });
  afterAll(async () => {
    await api?.close();
    await databases.close();
  });

  const list = async (query: string, token = api.tokens.viewer) => {
    const res = await api.get(`/api/v1/alerts${query}`, token);
    expect(res.status).toBe(200);
    return AlertList.parse(await res.json());
  };

  it('lists alerts newest first to a viewer, with the count of open ones', async () => {
    const all = await list('');
    expect(all.alerts.map((a) => [a.rule, a.subject, a.state])).toEqual([
      ['rollout-halted', 'rollout:r-2', 'open'],
      ['rollout-halted', 'rollout:r-1', 'resolved'],
      ['device-offline', 'pi-3', 'open'],
      ['temperature-high', 'pi-2', 'open'],
      ['device-offline', 'pi-2', 'open'],
      ['device-offline', 'pi-1', 'open'],
    ]);
    expect(all.open).toBe(5);
    expect(all.nextBefore).toBeNull();
    const offline = all.alerts.find((a) => a.subject === 'pi-1')!;
    expect(offline).toMatchObject({ deviceId: 'pi-1', rolloutId: null, severity: 'warning', summary: 'offline for 60 minutes', resolvedAt: null });
    expect(offline.remedy).toContain('network');
  });

  it('filters by state, rule and device', async () => {
    expect((await list('?state=resolved')).alerts.map((a) => a.subject)).toEqual(['rollout:r-1']);
    expect((await list('?rule=device-offline')).alerts.map((a) => a.subject)).toEqual(['pi-3', 'pi-2', 'pi-1']);
    expect((await list('?device=pi-2')).alerts.map((a) => a.rule)).toEqual(['temperature-high', 'device-offline']);
    expect((await list('?device=pi-2&rule=device-offline&state=open')).alerts).toHaveLength(1);
  });

  it('pages with limit and before', async () => {
    const first = await list('?limit=4');
    expect(first.alerts).toHaveLength(4);
    expect(first.nextBefore).toBe(first.alerts[3]!.id);
    const second = await list(`?limit=4&before=${first.nextBefore}`);
    expect(second.alerts.map((a) => [a.rule, a.subject])).toEqual([
      ['device-offline', 'pi-2'],
      ['device-offline', 'pi-1'],
    ]);
    expect(second.nextBefore).toBeNull();
  });

  it('refuses unknown rules and parameters, and anyone not logged in', async () => {
    expect((await api.get('/api/v1/alerts?rule=bogus')).status).toBe(400);
    expect((await api.get('/api/v1/alerts?colour=red')).status).toBe(400);
    expect((await fetch(`${api.url}/api/v1/alerts`)).status).toBe(401);
  });
});
