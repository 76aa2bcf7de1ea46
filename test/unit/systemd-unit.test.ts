import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/paths.js';
import { SYSTEMD_UNIT } from '../../src/cli/provision-unit.js';
import { guardUnitLine } from '../../src/commands/agent-upgrade-guard.js';

describe('the systemd unit', () => {
  it('runs the self-update revert guard before every start, at the default state dir', () => {
    // agent.upgrade refuses to run without this line, so the unit and the guard must name the same files.
    expect(SYSTEMD_UNIT.split('\n')).toContain(guardUnitLine('/var/lib/fleetlet'));
  });

  it('keeps k3s alive across a fleetlet restart and restarts fleetlet forever', () => {
    const lines = SYSTEMD_UNIT.split('\n');
    for (const line of ['KillMode=process', 'Restart=always', 'Type=notify', 'NotifyAccess=all', 'StartLimitIntervalSec=0']) {
      expect(lines).toContain(line);
    }
    // The system-upgrade-controller takes a parent whose command line contains "k3s" for k3s itself.
    const execStart = lines.find((line) => line.startsWith('ExecStart='));
    expect(execStart).toBeDefined();
    expect(execStart).not.toContain('k3s');
  });

  it('runs the agent with one malloc arena (benchmarked in docs/benchmarks.md, "Memory while draining")', () => {
    expect(SYSTEMD_UNIT.split('\n')).toContain('Environment=MALLOC_ARENA_MAX=1');
  });

  it('is the unit shipped in packaging/, word for word', () => {
    expect(readFileSync(join(REPO_ROOT, 'packaging/fleetlet.service'), 'utf8')).toBe(SYSTEMD_UNIT);
  });
});
