import { spawnSync } from 'node:child_process';
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

  it('gives the agent a small V8 heap through NODE_OPTIONS that the runtime accepts', () => {
    // A flag Node refuses in NODE_OPTIONS stops the agent before it starts (exit 9) on every device: run it here.
    const line = SYSTEMD_UNIT.split('\n').find((l) => l.startsWith('Environment="NODE_OPTIONS='));
    const options = /^Environment="NODE_OPTIONS=(.*)"$/.exec(line ?? '')?.[1];
    expect(options).toContain('--max-old-space-size=');
    const run = spawnSync(process.execPath, ['-e', 'console.log(require("v8").getHeapStatistics().heap_size_limit)'], {
      env: { PATH: process.env.PATH, NODE_OPTIONS: options },
      encoding: 'utf8',
    });
    expect(run.status, run.stderr).toBe(0);
    expect(Number(run.stdout) / 1024 / 1024).toBeLessThan(128);
  });

  it('is the unit shipped in packaging/, word for word', () => {
    expect(readFileSync(join(REPO_ROOT, 'packaging/fleetlet.service'), 'utf8')).toBe(SYSTEMD_UNIT);
  });
});
