import { chmodSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build, type Plugin } from 'esbuild';
import { REPO_ROOT } from './paths.js';

/** One edit of a source file: `find` must occur in it, so that a variant can never silently be the unchanged build. */
export interface SourcePatch {
  /** Relative to the repository, e.g. src/store/migrations.ts. */
  file: string;
  find: string;
  replace: string;
}

/**
 * A newer build's schema: one more migration, as a real release would add. It adds a column to a table the older
 * build knows and a table it does not; an older binary refuses the migrated database (DatabaseTooNewError).
 */
export const EXTRA_MIGRATION: SourcePatch = {
  file: 'src/store/migrations.ts',
  find: '\n];\n\nexport const LATEST_SCHEMA_VERSION',
  replace: `
  {
    version: 4,
    description: 'a newer build (test): one more journal column and a table of its own',
    up: (db) => db.exec('ALTER TABLE command_journal ADD COLUMN cancelled_by TEXT; CREATE TABLE newer_only (note TEXT) STRICT;'),
  },
];

export const LATEST_SCHEMA_VERSION`,
};

/** A build whose status sampler always fails: it runs and connects, but never samples telemetry. */
export const BROKEN_SAMPLER: SourcePatch = {
  file: 'src/telemetry/sampler.ts',
  find: '  sample(): RawSample {\n',
  replace: "  sample(): RawSample {\n    if (Date.now() > 0) throw new Error('simulated broken sampler');\n",
};

/**
 * Bundles an entry point the way scripts/bundle.mjs bundles the agent, with `patches` applied to the sources: a
 * different build of fleetlet (or of a test fixture) to self-update to. The output is executable (node shebang).
 */
export async function bundleVariant(entry: string, outfile: string, patches: readonly SourcePatch[]): Promise<void> {
  const byFile = new Map<string, SourcePatch[]>();
  for (const patch of patches) byFile.set(join(REPO_ROOT, patch.file), [...(byFile.get(join(REPO_ROOT, patch.file)) ?? []), patch]);
  const patching: Plugin = {
    name: 'source-patches',
    setup(builder) {
      builder.onLoad({ filter: /\.ts$/ }, (args) => {
        const edits = byFile.get(args.path);
        if (!edits) return undefined;
        let contents = readFileSync(args.path, 'utf8');
        for (const edit of edits) {
          if (!contents.includes(edit.find)) throw new Error(`${edit.file} no longer contains the text to patch: ${JSON.stringify(edit.find)}`);
          contents = contents.replace(edit.find, edit.replace);
        }
        return { contents, loader: 'ts' };
      });
    },
  };
  await build({
    entryPoints: [join(REPO_ROOT, entry)],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    external: ['better-sqlite3'],
    banner: { js: '#!/usr/bin/env node' },
    plugins: [patching],
    logLevel: 'warning',
  });
  chmodSync(outfile, 0o755);
}
