import type { StreamChange } from './hub-api.js';

/**
 * The device a live-stream change is about; null for an alert of no device (a rollout's). Its own file, free of
 * zod, so that the dashboard's browser bundle can use it without carrying the schemas.
 */
export function changedDevice(change: StreamChange): string | null {
  if (change.type === 'event') return change.event.deviceId;
  if ('alert' in change) return change.alert.deviceId;
  return change.deviceId;
}
