import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { commandReferenceMarkdown, GUIDE, withCommandReference } from '../../scripts/docs-guide-commands.js';
import { COMMAND_ARGS, COMMAND_TYPES } from '../../src/protocol/command.js';

describe('the command reference in docs/operator-guide.md', () => {
  it('names every command type and every argument of its schema', () => {
    const reference = commandReferenceMarkdown();
    for (const type of COMMAND_TYPES) {
      expect(reference).toContain(`- **\`${type}\`**`);
      const shape = (COMMAND_ARGS[type] as unknown as { shape?: Record<string, unknown> }).shape ?? {};
      for (const name of Object.keys(shape)) expect(reference, `${type}.${name}`).toMatch(new RegExp(`\`${name}\` \\((required|optional)\\)`));
    }
  });

  it('is up to date with the schemas (run npx tsx scripts/docs-guide-commands.ts after changing them)', () => {
    const guide = readFileSync(GUIDE, 'utf8');
    expect(withCommandReference(guide)).toBe(guide);
  });
});
