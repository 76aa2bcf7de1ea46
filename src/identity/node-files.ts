import { randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { NodeFilesError } from './errors.js';
import { errorReason } from '../lib/errors.js';

export const DEFAULT_NODE_DIR = '/etc/rancher/node';
export const PASSWORD_PATTERN = /^[0-9a-f]{32}$/;
export const NODE_ID_PATTERN = /^[0-9a-f]{8}$/;

/** Generated exactly as k3s does (pkg/agent/config/config.go): 16 random bytes, hex. */
export function newNodePassword(): string {
  return randomBytes(16).toString('hex');
}

/** Generated exactly as k3s does: 4 random bytes, hex. */
export function newNodeId(): string {
  return randomBytes(4).toString('hex');
}

/**
 * The node password (`password`, 0600) and node id (`id`, 0644) files that k3s reads; the directory is
 * injectable so tests never touch the real /etc/rancher/node.
 */
export class NodeFiles {
  constructor(readonly dir: string = DEFAULT_NODE_DIR) {}

  get passwordPath(): string {
    return join(this.dir, 'password');
  }

  get idPath(): string {
    return join(this.dir, 'id');
  }

  /** The password if the file holds a well-formed one (k3s trims whitespace), else undefined. */
  readPassword(): string | undefined {
    return readMatching(this.passwordPath, PASSWORD_PATTERN);
  }

  readNodeId(): string | undefined {
    return readMatching(this.idPath, NODE_ID_PATTERN);
  }

  writePassword(password: string): void {
    writeAtomically(this.dir, this.passwordPath, `${password}\n`, 0o600);
  }

  writeNodeId(id: string): void {
    writeAtomically(this.dir, this.idPath, `${id}\n`, 0o644);
  }
}

function readMatching(path: string, pattern: RegExp): string | undefined {
  try {
    const text = readFileSync(path, 'utf8');
    if (text.length > 256) return undefined;
    const value = text.trim();
    return pattern.test(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function writeAtomically(dir: string, path: string, content: string, mode: number): void {
  const temp = `${path}.tmp-${process.pid}`;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    // Created with its final mode: the password is never readable by others, not even for an instant.
    const fd = openSync(temp, 'w', mode);
    try {
      fchmodSync(fd, mode);
      writeSync(fd, content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
    const dirFd = openSync(dir, 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  } catch (err) {
    throw new NodeFilesError(`cannot write ${path}: ${errorReason(err)}`, { cause: err });
  }
}
