import { execFileSync } from 'node:child_process';

/** Tests that run the agent as a real process run the bundle, the same code the single binary embeds. */
export default function setup(): void {
  execFileSync(process.execPath, ['scripts/bundle.mjs'], { stdio: 'inherit' });
}
