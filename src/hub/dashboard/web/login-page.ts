import type { Me } from '../../../protocol/hub-api.js';
import { sendJson } from './api.js';
import { h, replace } from './dom.js';

/** The login form: a session cookie (HttpOnly, SameSite=Strict) comes back with a good password. */
export function loginPage(onLoggedIn: (me: Me) => void): HTMLElement {
  const error = h('p', { class: 'error', role: 'alert' });
  const username = h('input', { name: 'username', autocomplete: 'username', required: true, autofocus: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const button = h('button', { type: 'submit' }, 'Log in');
  const form = h(
    'form',
    { class: 'login', 'aria-label': 'Log in' },
    h('h1', {}, 'fleetlet hub'),
    h('label', {}, 'User name', username),
    h('label', {}, 'Password', password),
    button,
    error,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    button.disabled = true;
    replace(error);
    sendJson<Me>('POST', '/api/v1/login', { username: username.value.trim(), password: password.value })
      .then(onLoggedIn)
      .catch((err: unknown) => replace(error, err instanceof Error ? err.message : String(err)))
      .finally(() => (button.disabled = false));
  });
  return h('main', { class: 'login-page' }, form);
}
