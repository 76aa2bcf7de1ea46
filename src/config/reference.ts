import { configJsonSchema } from './json-schema.js';
import { envName } from './env-layer.js';
import { SECRET_PATHS } from './schema.js';

interface JsonNode {
  type?: string | string[];
  properties?: Record<string, JsonNode>;
  items?: JsonNode;
  default?: unknown;
  description?: string;
  enum?: unknown[];
  anyOf?: JsonNode[];
  minimum?: number;
  maximum?: number;
  format?: string;
  pattern?: string;
}

/** The configuration reference in Markdown, generated from the schema so that it cannot drift from the code. */
export function configReferenceMarkdown(): string {
  const rows: string[] = [
    '| key | type | default | env var | description |',
    '| --- | --- | --- | --- | --- |',
  ];
  const root = configJsonSchema() as JsonNode;
  const visit = (node: JsonNode, path: string[]) => {
    if (node.properties) {
      for (const [key, child] of Object.entries(node.properties)) visit(child, [...path, key]);
      return;
    }
    const cells = [
      `\`${path.join('.')}\``,
      typeOf(node),
      node.default === undefined ? '' : `\`${JSON.stringify(node.default)}\``,
      `\`${envName(path)}\``,
      [node.description, secretNote(path)].filter(Boolean).join(' ').replaceAll('|', '\\|'),
    ];
    rows.push(`| ${cells.join(' | ')} |`);
  };
  visit(root, []);
  return `${rows.join('\n')}\n`;
}

/** Said once, from the list --set and the error messages use, next to each secret key. */
function secretNote(path: string[]): string | undefined {
  const key = path.join('.');
  if (!(SECRET_PATHS as readonly string[]).includes(key)) return undefined;
  return `Secret: refused by --set (a command line is readable by every user); give it in \`${key}File\` or \`${envName(path)}\`.`;
}

function typeOf(node: JsonNode): string {
  if (node.enum) return node.enum.map((value) => `\`${String(value)}\``).join(' \\| ');
  if (node.anyOf) return node.anyOf.map(typeOf).join(' or ');
  if (node.type === 'array') return `list of ${node.items ? typeOf(node.items) : 'values'}`;
  if (node.type === 'object') return 'map';
  const range =
    node.minimum !== undefined && node.maximum !== undefined && node.maximum < 1e9 ? ` ${node.minimum}..${node.maximum}` : '';
  return `${Array.isArray(node.type) ? node.type.join('/') : (node.type ?? 'any')}${node.format ? ` (${node.format})` : ''}${range}`;
}
