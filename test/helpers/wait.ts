/** How often a condition is checked: short enough not to slow a test, long enough not to load a busy machine. */
const POLL_MS = 25;

/**
 * Polls `condition` (which may read a file, a database, a process or what a subscriber received) until it holds,
 * or fails after timeoutMs naming `what`; a function for `what` is asked at the timeout, so the message can show
 * what a child printed by then. The default is generous, so that a loaded machine does not fail a test; a test
 * whose subject is a bound passes its own.
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string | (() => string),
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
