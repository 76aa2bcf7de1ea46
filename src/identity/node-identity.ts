import { fingerprint } from './fingerprint.js';
import type { IdentityStore, StoredIdentity } from './identity-store.js';
import { newNodeId, newNodePassword, type NodeFiles } from './node-files.js';

export type IdentityAction =
  | 'generated'
  | 'adopted-files'
  | 'restored-password'
  | 'restored-node-id'
  | 'adopted-changed-password'
  | 'clone-regenerated'
  | 'unchanged';

export interface NodeIdentityReport {
  actions: IdentityAction[];
  passwordFingerprint: string;
  nodeId: string | undefined;
  /** Set when the identity was made on another machine (a cloned image). */
  clone?: { previousMachine: string | undefined; currentMachine: string | undefined; previousPasswordFingerprint: string };
}

export interface EnsureIdentityOptions {
  store: IdentityStore;
  files: NodeFiles;
  /** Fingerprint of the current machine id / serial; undefined when the machine has none. */
  machineFingerprint: string | undefined;
  withNodeId: boolean;
  now?: () => number;
}

/**
 * Makes sure the node password (and node id) files exist and match what fleetlet keeps, before k3s starts:
 * - nothing anywhere: generate, write, store;
 * - files but nothing stored (k3s ran before fleetlet): adopt the files, since the server knows that password;
 * - stored but files gone (wiped /etc, reinstall): restore them, or the server would answer "Node password rejected";
 * - stored on another machine (an image cloned onto many devices): the files are shared with every sibling, so a
 *   new password and id are generated deliberately and the caller reports the clone.
 * Only fingerprints leave this function.
 */
export function ensureNodeIdentity(options: EnsureIdentityOptions): NodeIdentityReport {
  const now = options.now ?? Date.now;
  const { store, files } = options;
  const stored = store.load();
  const onDisk = { password: files.readPassword(), nodeId: files.readNodeId() };
  const actions: IdentityAction[] = [];

  const isClone =
    stored !== undefined &&
    stored.machineFingerprint !== undefined &&
    options.machineFingerprint !== undefined &&
    stored.machineFingerprint !== options.machineFingerprint;
  if (isClone) {
    const fresh: StoredIdentity = {
      version: 1,
      nodePassword: newNodePassword(),
      nodeId: newNodeId(),
      machineFingerprint: options.machineFingerprint,
      createdAt: now(),
    };
    files.writePassword(fresh.nodePassword);
    files.writeNodeId(fresh.nodeId!);
    store.save(fresh);
    return {
      actions: ['clone-regenerated'],
      passwordFingerprint: fingerprint(fresh.nodePassword),
      nodeId: fresh.nodeId,
      clone: {
        previousMachine: stored.machineFingerprint,
        currentMachine: options.machineFingerprint,
        previousPasswordFingerprint: fingerprint(stored.nodePassword),
      },
    };
  }

  let identity: StoredIdentity;
  if (!stored) {
    identity = {
      version: 1,
      nodePassword: onDisk.password ?? newNodePassword(),
      nodeId: onDisk.nodeId ?? (options.withNodeId ? newNodeId() : undefined),
      machineFingerprint: options.machineFingerprint,
      createdAt: now(),
    };
    actions.push(onDisk.password ? 'adopted-files' : 'generated');
  } else {
    identity = { ...stored, machineFingerprint: stored.machineFingerprint ?? options.machineFingerprint };
    // A well-formed password on disk that differs was put there on purpose (an operator resetting the node):
    // the file is what k3s sends, so it wins and becomes the kept copy.
    if (onDisk.password && onDisk.password !== stored.nodePassword) {
      identity.nodePassword = onDisk.password;
      actions.push('adopted-changed-password');
    }
    if (onDisk.nodeId && onDisk.nodeId !== stored.nodeId) identity.nodeId = onDisk.nodeId;
    if (!identity.nodeId && options.withNodeId) identity.nodeId = newNodeId();
  }

  if (!onDisk.password) {
    files.writePassword(identity.nodePassword);
    if (stored) actions.push('restored-password');
  }
  if (identity.nodeId && !onDisk.nodeId && (options.withNodeId || stored?.nodeId)) {
    files.writeNodeId(identity.nodeId);
    if (stored?.nodeId) actions.push('restored-node-id');
  }
  if (!sameIdentity(stored, identity)) store.save(identity);
  if (actions.length === 0) actions.push('unchanged');
  return { actions, passwordFingerprint: fingerprint(identity.nodePassword), nodeId: identity.nodeId };
}

function sameIdentity(a: StoredIdentity | undefined, b: StoredIdentity): boolean {
  return a !== undefined && JSON.stringify(a) === JSON.stringify(b);
}
