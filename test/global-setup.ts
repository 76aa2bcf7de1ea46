import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** The real node identity directory: no test may create it (every test gives k3s.nodeConfigDir a temp dir). */
const HOST_NODE_IDENTITY = '/etc/rancher/node';

/** Tests that run the agent as a real process run the bundle, the same code the single binary embeds. */
export default function setup(): () => void {
  execFileSync(process.execPath, ['scripts/bundle.mjs'], { stdio: 'inherit' });
  const existedBefore = existsSync(HOST_NODE_IDENTITY);
  return () => {
    if (!existedBefore && existsSync(HOST_NODE_IDENTITY)) {
      // A throw here is only logged by vitest; the exit code is what CI reads.
      console.error(`a test wrote the host's ${HOST_NODE_IDENTITY}: give it k3s.nodeConfigDir in a temp dir`);
      process.exitCode = 1;
    }
  };
}
