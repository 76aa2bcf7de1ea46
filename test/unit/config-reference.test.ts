import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { README, withReference } from '../../scripts/docs-config.js';
import { configReferenceMarkdown } from '../../src/config/reference.js';
import { leaves } from '../../src/config/schema-walk.js';
import { ConfigSchema } from '../../src/config/schema.js';

describe('the configuration reference in README.md', () => {
  it('lists every key of the schema', () => {
    const reference = configReferenceMarkdown();
    for (const leaf of leaves(ConfigSchema)) expect(reference).toContain(`| \`${leaf.path.join('.')}\` |`);
  });

  it('is up to date with the schema (run npm run docs:config after changing it)', () => {
    const readme = readFileSync(README, 'utf8');
    expect(withReference(readme)).toBe(readme);
  });
});
