import { userInfo } from 'node:os';
import { describe, expect, it } from 'vitest';
import { operatorClientId } from '../../src/fleet/connection.js';

describe('operator client ids', () => {
  it('are <user>-<random>, different for every tool started, so the broker never mistakes one for another', () => {
    const ids = new Set(Array.from({ length: 100 }, () => operatorClientId('fleet-operator')));
    expect(ids.size).toBe(100);
    for (const id of ids) expect(id).toMatch(/^fleet-operator-[0-9a-f]{12}$/);
    const local = userInfo().username.replace(/[^A-Za-z0-9_.-]/g, '') || 'operator';
    expect(operatorClientId()).toMatch(new RegExp(`^${local.slice(0, 32)}-[0-9a-f]{12}$`));
  });

  it('keep only safe characters of the user name, and never an empty user part', () => {
    expect(operatorClientId('ops/\u001b[2J#+')).toMatch(/^ops2J-[0-9a-f]{12}$/);
    expect(operatorClientId('#+/')).toMatch(/^operator-[0-9a-f]{12}$/);
  });
});
