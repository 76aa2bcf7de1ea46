import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.js';
import { buildK3sPart } from '../../src/k3s/k3s-part.js';
import { createLogger } from '../../src/lib/logger.js';
import { openDatabase } from '../../src/store/db.js';
import { tempDir } from '../helpers/paths.js';

describe('the k3s part', () => {
  const dirs: { cleanup: () => void }[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => d.cleanup()));

  it('removes the partial k3s downloads a crash left beside the binary when the agent is built, and nothing else', () => {
    const dir = tempDir('fleetlet-k3s-sweep-');
    dirs.push(dir);
    const bin = join(dir.dir, 'bin');
    mkdirSync(bin);
    for (const name of ['k3s', 'k3s.previous', '.k3s.partial-0a1b2c3d', '.k3s.download-1a2b3c4d', 'kubectl']) writeFileSync(join(bin, name), 'x');
    const k3s = ConfigSchema.parse({
      broker: { url: 'mqtts://broker.example:8883' },
      k3s: { serverUrl: 'https://10.0.0.1:6443', token: 'K10abc::node:t', binaryPath: join(bin, 'k3s'), dataDir: join(dir.dir, 'data'), nodeConfigDir: join(dir.dir, 'node') },
    }).k3s;
    const { db } = openDatabase({ stateDir: join(dir.dir, 'state'), fleetletVersion: 'test' });
    try {
      buildK3sPart(k3s, {
        stateDir: join(dir.dir, 'state'),
        db,
        machine: undefined,
        env: {},
        argv: [],
        sink: { emit: () => {} },
        logger: createLogger({ level: 'silent' }),
      });
    } finally {
      db.close();
    }
    expect(readdirSync(bin).sort()).toEqual(['k3s', 'k3s.previous', 'kubectl']);
  });
});
