import { LineCounter, parseDocument, isMap, isSeq, isScalar, type Node } from 'yaml';
import { emptyLayer, isPlainObject, type Layer } from './layer.js';

export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

/** Parses one YAML config file into a layer whose origins are "file:line". */
export function yamlLayer(file: string, text: string): Layer {
  const layer: Layer = { ...emptyLayer(), incomplete: true };
  if (Buffer.byteLength(text) > MAX_CONFIG_FILE_BYTES) {
    layer.problems.push({ path: '', source: file, message: `file is larger than ${MAX_CONFIG_FILE_BYTES} bytes` });
    return layer;
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    for (const error of doc.errors) {
      const { line, col } = lineCounter.linePos(error.pos[0]);
      layer.problems.push({ path: '', source: `${file}:${line}:${col}`, message: `malformed YAML: ${firstLine(error.message)}` });
    }
    return layer;
  }
  const values: unknown = doc.toJS({ maxAliasCount: 100 });
  layer.incomplete = false;
  if (values === null || values === undefined) return layer;
  if (!isPlainObject(values)) {
    layer.problems.push({ path: '', source: `${file}:1`, message: 'expected a YAML mapping of keys at the top level' });
    return layer;
  }
  layer.values = values;
  recordOrigins(doc.contents, [], (path, offset) => {
    layer.origins.set(path.join('.'), `${file}:${lineCounter.linePos(offset).line}`);
  });
  return layer;
}

function recordOrigins(node: unknown, path: string[], record: (path: string[], offset: number) => void): void {
  if (isMap(node)) {
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      const keyPath = [...path, key];
      const offset = (pair.key as Node | null)?.range?.[0];
      if (offset !== undefined) record(keyPath, offset);
      recordOrigins(pair.value, keyPath, record);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, index) => {
      const offset = (item as Node | null)?.range?.[0];
      if (offset !== undefined) record([...path, String(index)], offset);
      recordOrigins(item, [...path, String(index)], record);
    });
  }
}

const firstLine = (message: string) => message.split('\n')[0] ?? message;
