import { classifyLine, isReadyLine, type LogProblem } from './log-patterns.js';
import { LogRing } from './log-ring.js';

/**
 * What k3s's log says about the current run: recent lines, whether the node registered, and the known failures.
 * k3s repeats a failing step every few seconds, so each kind of problem is reported once per run.
 */
export class LogWatch {
  readonly ring: LogRing;
  readonly #reported = new Set<string>();

  constructor(
    ringLines: number,
    private readonly on: { registered: () => void; problem: (problem: LogProblem, line: string, firstInRun: boolean) => void },
  ) {
    this.ring = new LogRing(ringLines);
  }

  /** A new k3s process: its problems are news again. */
  newRun(): void {
    this.#reported.clear();
  }

  feed(line: string): void {
    this.ring.push(line);
    if (isReadyLine(line)) this.on.registered();
    const problem = classifyLine(line);
    if (!problem) return;
    const first = !this.#reported.has(problem.kind);
    this.#reported.add(problem.kind);
    this.on.problem(problem, line, first);
  }
}
