/** Ids per statement: well under the bound parameter limits of SQLite and PostgreSQL. */
const CHUNK = 500;

export function* chunks<T>(items: readonly T[]): Generator<T[]> {
  for (let i = 0; i < items.length; i += CHUNK) yield items.slice(i, i + CHUNK);
}
