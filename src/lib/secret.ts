import { inspect } from 'node:util';

/**
 * A secret value (join token, MQTT password, private key). It renders as "[redacted]" everywhere a value can
 * leak by accident (JSON.stringify, template strings, util.inspect, loggers), so redaction holds by construction
 * rather than by remembering a list of key names. Only `reveal()` gives the value, and each call site that
 * uses it is a place to review.
 */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return '[redacted]';
  }
  toJSON(): string {
    return '[redacted]';
  }
  [inspect.custom](): string {
    return '[redacted]';
  }
}
