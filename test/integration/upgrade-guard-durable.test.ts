import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { GUARD_FILE, GUARD_SCRIPT, MARKER_FILE } from '../../src/commands/agent-upgrade-guard.js';
import { bundleFixture } from '../helpers/bundle-fixture.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';

// CI installs strace (.ci/run); elsewhere these checks are skipped unless asked for.
const REQUIRE_TOOLS = process.env.TEST_REQUIRE_INSTALL_TOOLS === '1';
const hasStrace = spawnSync('strace', ['-V']).error === undefined;
const traced = hasStrace || REQUIRE_TOOLS ? it : it.skip;

function scratch(): string {
  const { dir, cleanup } = tempDir('fleetlet-durable-');
  onTestFinished(cleanup);
  return dir;
}

interface Call {
  name: string;
  args: string;
  result: string;
}

/** The traced calls in the order they began; a call split by another thread's (unfinished ... resumed) is joined. */
function parseTrace(text: string): Call[] {
  const calls: Call[] = [];
  const open = new Map<string, { index: number; head: string }>();
  const slots: (string | undefined)[] = [];
  for (const raw of text.split('\n')) {
    const match = /^(\d+)\s+(.*)$/.exec(raw);
    if (!match) continue;
    const [, pid, rest] = match as unknown as [string, string, string];
    if (rest.endsWith('<unfinished ...>')) {
      open.set(pid, { index: slots.length, head: rest.slice(0, -'<unfinished ...>'.length) });
      slots.push(undefined);
    } else if (rest.startsWith('<... ')) {
      const pending = open.get(pid);
      if (!pending) continue;
      open.delete(pid);
      slots[pending.index] = pending.head + rest.replace(/^<\.\.\. \w+ resumed>\s?/, '');
    } else {
      slots.push(rest);
    }
  }
  for (const line of slots) {
    const call = line && /^(\w+)\((.*)\)\s+=\s+(-?\d+)/.exec(line);
    if (call) calls.push({ name: call[1]!, args: call[2]!, result: call[3]! });
  }
  return calls;
}

const opened = (calls: Call[], path: string, before: number) =>
  calls.slice(0, before).filter((c) => c.name === 'openat' && c.args.includes(`"${path}"`)).map((c) => c.result);

describe('the self-update safety net is durable', () => {
  // The bundled writer serves every test of this block, so it lives until the block ends.
  const bundled = tempDir('fleetlet-durable-writer-');
  const writer = join(bundled.dir, 'marker-writer.cjs');
  beforeAll(() => bundleFixture('upgrade-marker-writer.ts', writer));
  afterAll(() => bundled.cleanup());

  traced('the trial marker and the guard are fsynced before their rename, and their directory after it', () => {
    const dir = scratch();
    const stateDir = join(dir, 'state');
    mkdirSync(stateDir, { mode: 0o700 });
    const trace = join(dir, 'trace.log');
    const run = spawnSync('strace', ['-f', '-s', '4096', '-e', 'trace=openat,fsync,fdatasync,rename,renameat,renameat2', '-o', trace, process.execPath, writer], {
      env: { PATH: process.env.PATH, NODE_PATH: join(REPO_ROOT, 'node_modules'), WRITER_STATE_DIR: stateDir },
      encoding: 'utf8',
    });
    expect(run.status, run.stderr).toBe(0);
    const calls = parseTrace(readFileSync(trace, 'utf8'));
    for (const name of [MARKER_FILE, GUARD_FILE]) {
      const target = join(stateDir, name);
      const renameAt = calls.findIndex((c) => c.name.startsWith('rename') && c.args.includes(`"${target}"`) && c.result === '0');
      expect(renameAt, `${name} renamed into place`).toBeGreaterThan(-1);
      const temp = /"([^"]+)"/.exec(calls[renameAt]!.args)![1]!;
      expect(temp).not.toBe(target);
      const tempFds = opened(calls, temp, renameAt);
      const syncedBefore = calls.slice(0, renameAt).some((c) => /^f(data)?sync$/.test(c.name) && tempFds.includes(c.args.split(/[ ,<]/)[0]!));
      expect(syncedBefore, `${name}: its content fsynced before the rename`).toBe(true);
      const after = calls.slice(renameAt + 1);
      const dirFds = opened(after, stateDir, after.length);
      const syncedDir = after.some((c) => /^f(data)?sync$/.test(c.name) && dirFds.includes(c.args.split(/[ ,<]/)[0]!));
      expect(syncedDir, `${name}: the directory fsynced after the rename`).toBe(true);
    }
  });

  traced('the guard syncs its marker rewrite before and after the rename, and the restored binary', () => {
    const dir = scratch();
    const stateDir = join(dir, 'state');
    mkdirSync(stateDir, { mode: 0o700 });
    const binary = join(dir, 'fleetlet');
    writeFileSync(binary, 'new build');
    writeFileSync(`${binary}.previous`, 'old build');
    const marker = join(stateDir, MARKER_FILE);
    writeFileSync(marker, `state=trial\nattempts=1\nbinary=${binary}\ncommandId=cmd-durable-01\n`);
    writeFileSync(join(stateDir, GUARD_FILE), GUARD_SCRIPT, { mode: 0o700 });
    const trace = join(dir, 'trace.log');
    const run = spawnSync('strace', ['-f', '-e', 'trace=rename,renameat,renameat2,sync,openat', '-o', trace, '/bin/sh', join(stateDir, GUARD_FILE), marker], {
      encoding: 'utf8',
    });
    expect(run.status, run.stderr).toBe(0);
    expect(readFileSync(binary, 'utf8')).toBe('old build');
    expect(readFileSync(marker, 'utf8')).toMatch(/^state=reverted$/m);
    const calls = parseTrace(readFileSync(trace, 'utf8'));
    const renamed = (path: string) => calls.findIndex((c) => c.name.startsWith('rename') && c.args.includes(`"${path}"`) && c.result === '0');
    const syncs = calls.map((c, i) => (c.name === 'sync' ? i : -1)).filter((i) => i >= 0);
    const binaryAt = renamed(binary);
    const markerAt = renamed(marker);
    const markerTempWritten = calls.findIndex((c) => c.name === 'openat' && c.args.includes(`"${marker}.tmp"`) && c.args.includes('O_CREAT'));
    expect(binaryAt).toBeGreaterThan(-1);
    expect(markerAt).toBeGreaterThan(binaryAt);
    expect(syncs.some((i) => i > binaryAt && i < markerAt), 'the restored binary synced before the marker says reverted').toBe(true);
    expect(syncs.some((i) => i > markerTempWritten && i < markerAt), 'the rewritten marker synced before its rename').toBe(true);
    expect(syncs.some((i) => i > markerAt), 'the rename synced').toBe(true);
  });
});
