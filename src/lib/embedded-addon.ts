/**
 * The native SQLite addon carried inside the single binary. In the source tree there is none (better-sqlite3
 * loads its own build from node_modules); the package build replaces this module's content with the addon of
 * the target arch and its sha256: a SEA asset where the runtime has them (Node 24), else base64 in the bundle
 * (the armv7 runtime, Node 20.11). Either way the bytes are reached through a function that runs only when the
 * unpacked copy is missing or wrong: a 2 MB addon held as a string constant stayed in the daemon's heap for good,
 * twice (the source text and the string), about 5 MiB of RSS (docs/benchmarks.md, "Footprint").
 */
export interface EmbeddedAddon {
  /** File name stem, e.g. "better_sqlite3". */
  name: string;
  /** Hex sha256 of the addon's bytes: checked before the file is loaded. */
  sha256: string;
  bytes(): Buffer;
}

export const EMBEDDED_SQLITE_ADDON: EmbeddedAddon | undefined = undefined;
