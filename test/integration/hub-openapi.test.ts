import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Ajv from 'ajv';
import { HubDatabases } from '../helpers/hub-database.js';
import { deviceRow, startHubApi, type TestHubApi } from '../helpers/hub-api.js';
import { INVENTORY_EXAMPLE } from '../../src/protocol/inventory.js';
import { createRollout } from '../../src/hub/rollouts/create-rollout.js';
import { testKey } from '../fixtures/command-keys.js';
import { rolloutRequest } from '../fixtures/hub-rollout-requests.js';

const OPENAPI_ROLLOUT = rolloutRequest(testKey('ops'), [['pi-a']]);

interface OpenApi {
  openapi: string;
  paths: Record<string, Record<string, { parameters: { name: string; in: string }[]; responses: Record<string, { content: Record<string, { schema: { $ref: string } }> }> }>>;
  components: { schemas: Record<string, object> };
}

describe('hub OpenAPI document', () => {
  const databases = new HubDatabases('sqlite');
  let api: TestHubApi;
  let doc: OpenApi;

  beforeAll(async () => {
    api = await startHubApi(databases);
    const now = Date.now();
    await api.hub.db
      .insertInto('devices')
      .values(deviceRow('pi-a', { labels: { site: 'home' }, groups: ['eu'], inventory_json: JSON.stringify(INVENTORY_EXAMPLE), k3s_healthy: 1 }))
      .execute();
    await api.hub.db
      .insertInto('device_fingerprints')
      .values({ device_id: 'pi-a', fingerprint: 'sha256:aa', first_seen_ms: now, last_seen_ms: now, switches: 0 })
      .execute();
    await api.hub.db
      .insertInto('events')
      .values({ device_id: 'pi-a', message_id: 'm', kind: 'disk.low', event_key: null, state: 'raised', severity: 'warning', message: 'low', occurred_at_ms: now, received_at_ms: now, payload_json: '{}' })
      .execute();
    await api.hub.db
      .insertInto('command_results')
      .values({ device_id: 'pi-a', message_id: 'r', command_id: 'c-1', command_type: null, status: 'accepted', reason: null, at_ms: now, received_at_ms: now, payload_json: '{"status":"accepted"}' })
      .execute();
    await api.hub.db
      .insertInto('status_samples')
      .values({ device_id: 'pi-a', sampled_at_ms: now - 1000, received_at_ms: now, seq: 1, historical: 0, cpu_percent: null, memory_available_bytes: null, memory_total_bytes: null, temperature_c: null, k3s_healthy: 1, disk_free_bytes: null })
      .execute();
    await createRollout(api.hub, OPENAPI_ROLLOUT, 'ops', now);
    doc = (await (await fetch(`${api.url}/api/v1/openapi.json`)).json()) as OpenApi;
  });
  afterAll(async () => {
    await api?.close();
    await databases.close();
  });

  it('is served without login and every $ref in it resolves to a component schema', () => {
    expect(doc.openapi).toBe('3.0.3');
    const refs = JSON.stringify(doc).match(/"#\/components\/schemas\/[A-Za-z]+"/g) ?? [];
    expect(refs.length).toBeGreaterThan(10);
    for (const ref of refs) expect(Object.keys(doc.components.schemas)).toContain(ref.slice(1, -1).split('/').pop());
    expect(doc.paths['/api/v1/devices']!.get!.parameters.map((p) => p.name)).toEqual(
      expect.arrayContaining(['label', 'group', 'state', 'version', 'health', 'sort', 'order', 'limit', 'offset']),
    );
  });

  it("describes the real responses: each GET's answer validates against the document's schema for it", async () => {
    const ajv = new Ajv({ nullable: true, allErrors: true });
    const checked: string[] = [];
    for (const [template, methods] of Object.entries(doc.paths)) {
      const get = methods.get;
      const content = get?.responses['200']?.content['application/json'];
      if (!content) continue;
      const path = template.replace('{deviceId}', 'pi-a').replace('{rolloutId}', OPENAPI_ROLLOUT.rolloutId);
      const res = await api.get(path);
      expect({ path, status: res.status }).toEqual({ path, status: 200 });
      const schema = doc.components.schemas[content.schema.$ref.split('/').pop()!]!;
      const valid = ajv.validate(schema, await res.json());
      expect({ path, errors: valid ? null : ajv.errorsText() }).toEqual({ path, errors: null });
      checked.push(template);
    }
    expect(checked).toEqual(
      expect.arrayContaining(['/api/v1/rollouts', '/api/v1/rollouts/{rolloutId}', '/api/v1/devices', '/api/v1/devices/{deviceId}', '/api/v1/devices/{deviceId}/history', '/api/v1/events', '/api/v1/results', '/api/v1/audit', '/api/v1/me']),
    );
  });

  it('rejects what the schemas forbid: a device list with a wrong type fails validation', () => {
    const ajv = new Ajv({ nullable: true });
    const schema = doc.components.schemas.DeviceList!;
    expect(ajv.validate(schema, { devices: [{ deviceId: 'x' }], total: 1, limit: 1, offset: 0 })).toBe(false);
    expect(ajv.validate(schema, { devices: [], total: 'one', limit: 1, offset: 0 })).toBe(false);
  });
});
