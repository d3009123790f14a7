// The console shell (SPEC §9): login, navigation between the views this
// token may use, logout. Views live in ./views/.
import { html, render, useEffect, useState } from './vendor/htm-preact.js';
import { api, forgetKey, loadFeatures, storeKey, storedKey } from './api.js';
import { accessName, canRest, canSubscribeAnything, canWatchEvents } from './access.js';
import { SessionsView } from './views/sessions.js';
import { TokensView } from './views/tokens.js';
import { LiveView } from './views/live.js';
import { RetainedView } from './views/retained.js';
import { EventsView } from './views/events.js';

/** The views this token may open on this node (routes missing from the API hide theirs). */
function viewsFor(token, features) {
  const views = [];
  if (canRest(token, 'GET', '/mqtt/sessions/all')) views.push({ id: 'sessions', label: 'Sessions', View: SessionsView });
  const mayMint = features.has('POST', '/auth/tokens');
  if (canRest(token, 'GET', '/platform/tokens/all') || mayMint) views.push({ id: 'tokens', label: 'Tokens', View: TokensView });
  if (canSubscribeAnything(token)) views.push({ id: 'live', label: 'Live', View: LiveView });
  if (features.has('GET', '/mqtt/messages/{filter}') && canRest(token, 'GET', '/mqtt/messages/x')) {
    views.push({ id: 'retained', label: 'Retained', View: RetainedView });
  }
  const hasLog = features.has('GET', '/mqtt/logs') && canRest(token, 'GET', '/mqtt/logs');
  if (hasLog || canWatchEvents(token)) views.push({ id: 'events', label: 'Events', View: EventsView });
  return views;
}

function Login({ onLogin, notice }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState(notice ?? '');
  const [busy, setBusy] = useState(false);
  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError('');
    try {
      const info = await api('GET', '/auth/info', undefined, key.trim());
      storeKey(key.trim());
      onLogin(info.result[0]);
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  }
  return html`
    <main class="login">
      <h1>tokenmq console</h1>
      <form onSubmit=${submit} autocomplete="off">
        <label for="login-key">Token key</label>
        <input id="login-key" name="key" type="password" autocomplete="off" value=${key} onInput=${(e) => setKey(e.target.value)}
          required autofocus spellcheck="false" aria-describedby="login-note" />
        <p id="login-note" class="note">Kept only in this tab (sessionStorage); closing the tab forgets it.</p>
        ${error && html`<p class="error" role="alert">${error}</p>`}
        <button type="submit" disabled=${busy}>Log in</button>
      </form>
    </main>`;
}

function currentView() {
  return location.hash.replace(/^#/, '');
}

function Shell({ token, features, onLogout }) {
  const views = viewsFor(token, features);
  const [viewId, setViewId] = useState(currentView());
  useEffect(() => {
    const onHash = () => setViewId(currentView());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  const active = views.find((v) => v.id === viewId) ?? views[0];
  return html`
    <header class="top">
      <span class="brand">tokenmq</span>
      <nav aria-label="Views">
        ${views.map((v) => html`<a href=${`#${v.id}`} class=${v === active ? 'active' : ''} aria-current=${v === active ? 'page' : undefined}>${v.label}</a>`)}
      </nav>
      <span class="whoami" title="the logged-in token">token ${token.id} · ${accessName(token.access?.type)}${token.info ? ` · ${token.info}` : ''}</span>
      <button type="button" class="secondary" onClick=${onLogout}>Log out</button>
    </header>
    <main>
      ${active
        ? html`<${active.View} key=${active.id} token=${token} features=${features} />`
        : html`<p class="empty">This token has no access the console can show.</p>`}
    </main>`;
}

function App() {
  const [token, setToken] = useState(null);
  const [features, setFeatures] = useState(null);
  const [checking, setChecking] = useState(Boolean(storedKey()));
  const [notice, setNotice] = useState('');
  useEffect(() => {
    const onLogout = (event) => {
      setNotice(`Logged out: ${event.detail}`);
      setToken(null);
    };
    addEventListener('tokenmq-logout', onLogout);
    return () => removeEventListener('tokenmq-logout', onLogout);
  }, []);
  useEffect(() => {
    loadFeatures().then(setFeatures);
    if (!storedKey()) return;
    api('GET', '/auth/info')
      .then((info) => setToken(info.result[0]))
      .catch(() => forgetKey())
      .finally(() => setChecking(false));
  }, []);
  if (!features || checking) return html`<p class="empty">Loading…</p>`;
  if (!token) return html`<${Login} notice=${notice} onLogin=${(t) => { setNotice(''); setToken(t); }} />`;
  return html`<${Shell} token=${token} features=${features} onLogout=${() => { forgetKey(); setToken(null); }} />`;
}

render(html`<${App} />`, document.getElementById('app'));
