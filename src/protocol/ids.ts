import { z } from 'zod';

/** Ids end up in MQTT topics and client ids: no '/', '+', '#', spaces or upper case, so no topic injection. */
const ID_PATTERN = /^[a-z0-9](?:[a-z0-9_-]{0,62})$/;
const idString = (what: string) =>
  z.string().regex(ID_PATTERN, { error: `expected a ${what}: 1-63 of a-z 0-9 _ -, starting with a letter or digit` });

export const DeviceIdSchema = idString('device id');
export const GroupIdSchema = idString('group name');
