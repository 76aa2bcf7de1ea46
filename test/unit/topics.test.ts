import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { PresenceSchema, presenceMessage } from '../../src/protocol/presence.js';
import { WIRE_CONTRACT } from '../../src/protocol/registry.js';
import { Topics } from '../../src/protocol/topics.js';
import { REPO_ROOT } from '../helpers/paths.js';

describe('topic names', () => {
  const topics = new Topics('fleetlet/v1');

  it('builds every device channel and group command topic from ids', () => {
    expect(topics.device('pi-kitchen-01', 'presence')).toBe('fleetlet/v1/devices/pi-kitchen-01/presence');
    expect(topics.groupCommands('canary')).toBe('fleetlet/v1/groups/canary/commands');
    expect(topics.allDevices('status')).toBe('fleetlet/v1/devices/+/status');
  });

  it.each(['a/b', '+', '#', 'dev+1', 'dev#', 'UPPER', '', ' dev', 'x'.repeat(64), '../other', 'dev\u0000'])(
    'refuses the id %j, so no topic can be widened or redirected',
    (bad) => {
      expect(() => topics.device(bad, 'commands')).toThrow();
      expect(() => topics.groupCommands(bad)).toThrow();
    },
  );

  it('parses only well-formed device topics', () => {
    expect(topics.parseDeviceTopic('fleetlet/v1/devices/dev-1/status')).toEqual({ deviceId: 'dev-1', channel: 'status' });
    expect(topics.parseDeviceTopic('fleetlet/v1/devices/dev-1/status/extra')).toBeUndefined();
    expect(topics.parseDeviceTopic('fleetlet/v1/devices/Dev/status')).toBeUndefined();
    expect(topics.parseDeviceTopic('fleetlet/v1/devices/dev-1/unknown')).toBeUndefined();
    expect(topics.parseDeviceTopic('other/devices/dev-1/status')).toBeUndefined();
  });
});

describe('wire contract registry', () => {
  it('has one entry per topic pattern, each example valid against its schema', () => {
    const patterns = WIRE_CONTRACT.map((spec) => spec.pattern);
    expect(new Set(patterns).size).toBe(patterns.length);
    expect(patterns).toContain('{root}/devices/{id}/presence');
    for (const spec of WIRE_CONTRACT) {
      const result = spec.schema.safeParse(spec.example);
      expect(result.success, `${spec.pattern}: ${result.error?.message}`).toBe(true);
    }
  });

  it('presence carries the schema version and refuses malformed payloads', () => {
    const online = presenceMessage('online', 3, '0.1.0');
    expect(online).toMatchObject({ schemaVersion: 1, state: 'online', bootSequence: 3 });
    expect(PresenceSchema.safeParse({ ...online, state: 'gone' }).success).toBe(false);
    expect(PresenceSchema.safeParse({ ...online, bootSequence: 0 }).success).toBe(false);
    expect(PresenceSchema.safeParse({ ...online, schemaVersion: 2 }).success).toBe(false);
    expect(PresenceSchema.safeParse({ ...online, at: 'yesterday' }).success).toBe(false);
  });

  it('docs/protocol.md is generated from the current registry', () => {
    const run = () =>
      execFileSync(process.execPath, ['--import', 'tsx', 'scripts/docs-protocol.ts', '--check'], {
        cwd: REPO_ROOT,
        encoding: 'utf8',
        stdio: 'pipe',
      });
    expect(run()).toContain('up to date');
  });
});
