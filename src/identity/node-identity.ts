import { fingerprint } from './fingerprint.js';
import type { IdentityStore, StoredIdentity } from './identity-store.js';
import { newNodeId, newNodePassword, type NodeFiles } from './node-files.js';

export type IdentityAction =
  | 'generated'
  | 'adopted-files'
  | 'restored-password'
  | 'restored-node-id'
  | 'adopted-changed-password'
  | 'renewed'
  | 'unchanged';

export interface NodeIdentityReport {
  actions: IdentityAction[];
  passwordFingerprint: string;
  nodeId: string | undefined;
}

export interface EnsureIdentityOptions {
  store: IdentityStore;
  files: NodeFiles;
  /** Fingerprint of the current machine, recorded with a new identity; undefined when the machine has none. */
  machineFingerprint: string | undefined;
  withNodeId: boolean;
  now?: () => number;
}

/**
 * Makes sure the node password (and node id) files exist and match what fleetlet keeps, before k3s starts:
 * - nothing anywhere: generate, write, store;
 * - files but nothing stored (k3s ran before fleetlet): adopt the files, since the server knows that password;
 * - stored but files gone (wiped /etc, reinstall): restore them, or the server would answer "Node password rejected".
 * A stored identity made on another machine is kept like the device id (see device-record.ts): a card moved to a
 * new board must keep the password the server knows. Whether it is a clone instead is an operator's decision,
 * carried out by renewNodeIdentity. Only fingerprints leave this function.
 */
export function ensureNodeIdentity(options: EnsureIdentityOptions): NodeIdentityReport {
  const now = options.now ?? Date.now;
  const { store, files } = options;
  const stored = store.load();
  const onDisk = { password: files.readPassword(), nodeId: files.readNodeId() };
  const actions: IdentityAction[] = [];

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

/**
 * A new node password and id, on an operator's word that this device is a clone of another (identity.reidentify):
 * the node then joins as a new node. Returns the fingerprint of the password it replaced.
 */
export function renewNodeIdentity(options: Omit<EnsureIdentityOptions, 'withNodeId'>): { previousPasswordFingerprint: string | undefined; report: NodeIdentityReport } {
  const now = options.now ?? Date.now;
  const previous = options.store.load();
  const fresh: StoredIdentity = {
    version: 1,
    nodePassword: newNodePassword(),
    nodeId: newNodeId(),
    machineFingerprint: options.machineFingerprint,
    createdAt: now(),
  };
  // Files first: after a crash in between, ensureNodeIdentity takes a password on disk that differs from the kept
  // one for an operator's change and keeps it, which is this one.
  options.files.writePassword(fresh.nodePassword);
  options.files.writeNodeId(fresh.nodeId!);
  options.store.save(fresh);
  return {
    previousPasswordFingerprint: previous ? fingerprint(previous.nodePassword) : undefined,
    report: { actions: ['renewed'], passwordFingerprint: fingerprint(fresh.nodePassword), nodeId: fresh.nodeId },
  };
}
