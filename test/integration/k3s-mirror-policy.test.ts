import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { runCli, startCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { tempDir } from '../helpers/paths.js';

const { dir, cleanup } = tempDir('fleetlet-mirror-policy-');
afterAll(cleanup);

/** Nothing listens on port 9 (discard): the mirror is never reached, only the policy on its URL is tested. */
const PLAIN_MIRROR = { artifactUrl: 'http://127.0.0.1:9/releases', channelUrl: 'http://127.0.0.1:9/channels' };

describe('the agent and a k3s mirror over plain http', () => {
  it('refuses to start, naming the key, unless allowInsecureMirror is set', () => {
    const config = writeAgentConfig(join(dir, 'refused'), { k3s: { enabled: false, ...PLAIN_MIRROR } });
    const result = runCli(['agent', '--config', config]);
    expect(result.code).toBe(78);
    expect(result.stderr).toContain(`k3s.artifactUrl (${config}:`);
    expect(result.stderr).toContain(`k3s.channelUrl (${config}:`);
    expect(result.stderr).toContain('expected an https:// URL');
  });

  it('starts with allowInsecureMirror, and logs a warning that names both keys', async () => {
    const config = writeAgentConfig(join(dir, 'allowed'), { k3s: { enabled: false, allowInsecureMirror: true, ...PLAIN_MIRROR } });
    const agent = startCli(['agent', '--config', config]);
    try {
      await waitFor(() => agent.output().includes('fleetlet agent running'), 'the agent to run');
      const warning = agent.output().split('\n').find((line) => line.includes('allowInsecureMirror'));
      expect(JSON.parse(warning!)).toMatchObject({
        level: 'warn',
        msg: expect.stringContaining('k3s.channelUrl and k3s.artifactUrl use plain http://'),
      });
    } finally {
      agent.child.kill('SIGTERM');
      expect(await agent.exited).toBe(0);
    }
  });
});
