import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.js';
import { buildK3sPart } from '../../src/k3s/k3s-part.js';
import { createLogger } from '../../src/lib/logger.js';
import { openDatabase } from '../../src/store/db.js';
import { tempDir } from '../helpers/paths.js';

describe('the k3s part and fleetlet\'s own command line', () => {
  const dirs: { cleanup: () => void }[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => d.cleanup()));

  it('warns when the command line contains "k3s" without logging the command line itself', () => {
    const dir = tempDir('fleetlet-k3s-argv-');
    dirs.push(dir);
    const k3s = ConfigSchema.parse({
      broker: { url: 'mqtts://broker.example:8883' },
      k3s: { serverUrl: 'https://10.0.0.1:6443', binaryPath: join(dir.dir, 'bin', 'k3s'), dataDir: join(dir.dir, 'data'), nodeConfigDir: join(dir.dir, 'node') },
    }).k3s;
    const lines: string[] = [];
    const logger = createLogger({ level: 'info', destination: { write: (line: string) => void lines.push(line) } });
    const { db } = openDatabase({ stateDir: join(dir.dir, 'state'), fleetletVersion: 'test' });
    try {
      // What else a command line holds is not the log's business: a --set value, a config path.
      const argv = ['/usr/local/bin/fleetlet', 'agent', '--config', '/etc/k3s-fleet/config.yaml', '--set', 'device.name=argv-value-not-for-logs'];
      buildK3sPart(k3s, { stateDir: join(dir.dir, 'state'), db, machine: undefined, env: {}, argv, sink: { emit: () => {} }, logger });
    } finally {
      db.close();
    }
    const text = lines.join('');
    expect(text).toContain('command line contains \\"k3s\\"');
    expect(text).not.toContain('argv-value-not-for-logs');
    expect(text).not.toContain('/etc/k3s-fleet');
  });
});
