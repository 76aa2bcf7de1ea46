import type { Me, StreamChange } from '../../../protocol/hub-api.js';

/** What every page gets from the shell: who is logged in, the live stream, and a way back to the login. */
export interface App {
  me: Me;
  /** Calls `listener` with every change the hub's stream sends; returns the unsubscribe. */
  onChange(listener: (change: StreamChange) => void): () => void;
  /** The session ended (401): back to the login page. */
  loggedOut(): void;
}

/** A page: its element, and what to stop (timers, stream listeners) when another page replaces it. */
export interface Page {
  element: HTMLElement;
  dispose(): void;
}

export function canChange(app: App): boolean {
  return app.me.role === 'operator';
}
