import { z } from 'zod';

/**
 * Kubernetes label and taint syntax: device labels become node labels unchanged, and what k3s.nodeLabels,
 * k3s.nodeTaints (config) and k3s.configure (command) set reaches the kubelet as --node-label / --node-taint, which
 * refuses anything else at registration. One definition for the config and the wire, so both refuse the same.
 */
// [prefix/]name: a DNS subdomain prefix of at most 253 characters, a name of at most 63.
const LABEL_KEY_SOURCE = '(?:[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?\\/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?';
const LABEL_VALUE_SOURCE = '(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?';

export const LABEL_KEY_PATTERN = new RegExp(`^${LABEL_KEY_SOURCE}$`);
export const LABEL_VALUE_PATTERN = new RegExp(`^${LABEL_VALUE_SOURCE}$`);
/** key[=value]:Effect, where key and value follow the label rules (as the kubelet's taint parser checks them). */
export const TAINT_PATTERN = new RegExp(`^${LABEL_KEY_SOURCE}(?:=${LABEL_VALUE_SOURCE})?:(?:NoSchedule|PreferNoSchedule|NoExecute)$`);

export const LabelKeySchema = z.string().regex(LABEL_KEY_PATTERN, { error: 'expected a Kubernetes label key ([prefix/]name, name <= 63 chars)' });
export const LabelValueSchema = z.string().regex(LABEL_VALUE_PATTERN, { error: 'expected a Kubernetes label value (<= 63 of A-Z a-z 0-9 - _ .)' });
export const LabelsSchema = z.record(LabelKeySchema, LabelValueSchema);
export const TaintSchema = z.string().regex(TAINT_PATTERN, {
  error: 'expected key[=value]:Effect',
});
