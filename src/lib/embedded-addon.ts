/**
 * The native SQLite addon carried inside the single binary. In the source tree there is none (better-sqlite3
 * loads its own build from node_modules); the package build replaces this module's content with the addon of
 * the target arch, base64-encoded, and its sha256.
 */
export interface EmbeddedAddon {
  /** File name stem, e.g. "better_sqlite3". */
  name: string;
  /** Hex sha256 of the addon's bytes: checked before the file is loaded. */
  sha256: string;
  base64: string;
}

export const EMBEDDED_SQLITE_ADDON: EmbeddedAddon | undefined = undefined;
