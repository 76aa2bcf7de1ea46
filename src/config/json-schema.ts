import { z } from 'zod';
import { ConfigSchema } from './schema.js';

/** The JSON Schema of the config file (what a person writes, so the input side of every transform). */
export function configJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(ConfigSchema, { io: 'input', unrepresentable: 'any' }),
    title: 'fleetlet configuration',
  };
}
