import 'uplot/dist/uPlot.min.css';
import './style.css';
import type { Me, StreamChange } from '../../../protocol/hub-api.js';
import { getJson, NotLoggedIn, sendJson } from './api.js';
import type { App, Page } from './app.js';
import { alertsPage } from './alerts-page.js';
import { devicePage } from './device-page.js';
import { h, replace } from './dom.js';
import { fleetPage } from './fleet-page.js';
import { loginPage } from './login-page.js';
import { rolloutsPage } from './rollouts-page.js';

/**
 * The dashboard's shell: the login, the header, and a page per location hash (#/, #/devices/ID, #/alerts,
 * #/rollouts, #/rollouts/ID). Framework-free: four small pages do not need one, and the bundle stays small
 * (uPlot is the only library).
 */
const SESSION_HINT = 'fleetlet.loggedIn';
/** A stream the hub refused while the session holds (too many streams) is opened again after this. */
const STREAM_RETRY_MS = 5000;
const STREAM_EVENTS: StreamChange['type'][] = ['device.reported', 'device.online', 'device.offline', 'event'];

const root = document.getElementById('app')!;
let page: Page | undefined;
let stream: EventSource | undefined;
const listeners = new Set<(change: StreamChange) => void>();

function start(): void {
  // Asking /me without a session would log a 401 in the console on every visit: a hint says whether to try.
  if (localStorage.getItem(SESSION_HINT) !== '1') return showLogin();
  getJson<Me>('/api/v1/me')
    .then(loggedIn)
    .catch(() => showLogin());
}

function showLogin(): void {
  localStorage.removeItem(SESSION_HINT);
  stream?.close();
  stream = undefined;
  page?.dispose();
  page = undefined;
  replace(root, loginPage(loggedIn));
}

function loggedIn(me: Me): void {
  localStorage.setItem(SESSION_HINT, '1');
  const app: App = {
    me,
    onChange: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    loggedOut: showLogin,
  };
  openStream();
  const main = h('main', { id: 'page' });
  replace(root, header(me), main);
  const show = () => {
    page?.dispose();
    page = pageFor(app, location.hash);
    replace(main, page.element);
    for (const link of root.querySelectorAll<HTMLAnchorElement>('nav a')) {
      const current = sectionOf(location.hash) === sectionOf(link.hash);
      if (current) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
  };
  window.onhashchange = show;
  show();
}

function pageFor(app: App, hash: string): Page {
  const path = hash.replace(/^#/, '') || '/';
  const device = /^\/devices\/(.+)$/.exec(path);
  if (device) return devicePage(app, decodeURIComponent(device[1]!));
  if (path === '/alerts') return alertsPage(app);
  const rollout = /^\/rollouts(?:\/(.+))?$/.exec(path);
  if (rollout) return rolloutsPage(app, rollout[1] ? decodeURIComponent(rollout[1]) : undefined);
  return fleetPage(app);
}

function sectionOf(hash: string): string {
  return (hash.replace(/^#\/?/, '').split('/')[0] ?? '') || 'fleet';
}

function header(me: Me): HTMLElement {
  const logout = h('button', { type: 'button', class: 'link' }, 'Log out');
  logout.addEventListener('click', () => {
    sendJson('POST', '/api/v1/logout')
      .catch((err: unknown) => {
        if (!(err instanceof NotLoggedIn)) throw err;
      })
      .finally(showLogin);
  });
  return h(
    'header',
    { class: 'top' },
    h('a', { class: 'brand', href: '#/' }, 'fleetlet hub'),
    h('nav', { 'aria-label': 'Sections' }, h('a', { href: '#/' }, 'Fleet'), h('a', { href: '#/alerts' }, 'Alerts'), h('a', { href: '#/rollouts' }, 'Rollouts')),
    h('span', { class: 'who' }, `${me.username} (${me.role})`),
    logout,
  );
}

/** One stream for the whole session; EventSource reconnects by itself after a hub restart. */
function openStream(): void {
  stream?.close();
  const opened = new EventSource('/api/v1/stream');
  stream = opened;
  // A refused stream (the session expired, or was ended elsewhere) is not retried by the browser: ask who we are.
  opened.onerror = () => {
    if (opened.readyState !== EventSource.CLOSED || stream !== opened) return;
    getJson<Me>('/api/v1/me').then(() => setTimeout(openStream, STREAM_RETRY_MS), (err: unknown) => {
      if (err instanceof NotLoggedIn) showLogin();
    });
  };
  for (const type of STREAM_EVENTS) {
    opened.addEventListener(type, (message) => {
      const change = JSON.parse((message as MessageEvent<string>).data) as StreamChange;
      for (const listener of listeners) listener(change);
    });
  }
}

start();
