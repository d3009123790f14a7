// Events (SPEC §8, §9): live `$tokenmq/events/#` over MQTT when the token may
// subscribe to it, and the broker log (GET /mqtt/logs) where the node has it.
import { html, useEffect, useState } from '../vendor/htm-preact.js';
import { api, formatTime } from '../api.js';
import { canRest, canWatchEvents } from '../access.js';
import { ErrorLine, payloadText } from '../ui.js';
import { useMessages, useMqtt } from './live.js';

const EVENTS = '$tokenmq/events/#';

function LiveEvents() {
  const msgs = useMessages(200);
  const conn = useMqtt(msgs.add, 'console-events');
  const [state, setState] = useState('');
  useEffect(() => {
    if (conn.state !== 'connected' || state) return;
    conn.subscribe(EVENTS).then((qos) => setState(qos === 'refused' ? 'refused by the broker' : 'subscribed'), (err) => setState(err.message));
  }, [conn.state]);
  return html`<div>
    <h3>Live <code>${EVENTS}</code> <span class="note">${state || conn.state}</span></h3>
    <${ErrorLine} error=${conn.error} />
    <button type="button" class="secondary" aria-pressed=${msgs.paused} onClick=${msgs.togglePause}>${msgs.paused ? 'Resume' : 'Pause'}</button>
    ${msgs.shown.length === 0 && html`<p class="empty">No events yet: they appear here as sessions connect, disconnect and tokens change.</p>`}
    <ol class="messages">${msgs.shown.map((m) => {
      let e = null;
      try { e = JSON.parse(payloadText(m.bytes, 'text')); } catch { /* shown raw */ }
      return html`<li key=${m.n}><time>${m.time}</time> <code class="topic">${m.topic}</code>
        <pre class="payload">${e ? `${e.event} client=${e.client_id ?? ''} token=${e.token_id ?? ''} ip=${e.ip ?? ''} ${e.reason ?? ''}` : payloadText(m.bytes, 'text')}</pre></li>`;
    })}</ol>
  </div>`;
}

function Log() {
  const [rows, setRows] = useState(null);
  const [error, setError] = useState('');
  async function load() {
    try {
      setRows((await api('GET', '/mqtt/logs?limit=100')).result);
      setError('');
    } catch (err) {
      setError(err.message);
    }
  }
  useEffect(() => { load(); }, []);
  return html`<div>
    <h3>Broker log <button type="button" class="secondary" onClick=${load}>Refresh</button></h3>
    <${ErrorLine} error=${error} />
    ${rows && html`<div class="table-wrap"><table>
      <thead><tr><th scope="col">Time</th><th scope="col">Event</th><th scope="col">Client id</th><th scope="col">Token</th><th scope="col">IP</th><th scope="col">Reason</th></tr></thead>
      <tbody>${rows.map((e, i) => html`<tr key=${i}><td data-label="Time">${formatTime(Math.floor(e.time))}</td><td data-label="Event">${e.event}</td>
        <td data-label="Client id">${e.client_id ?? ''}</td><td data-label="Token">${e.token_id ?? ''}</td><td data-label="IP">${e.ip ?? ''}</td><td data-label="Reason">${e.reason ?? ''}</td></tr>`)}</tbody>
    </table></div>`}
  </div>`;
}

export function EventsView({ token, features }) {
  const hasLog = features.has('GET', '/mqtt/logs') && canRest(token, 'GET', '/mqtt/logs');
  return html`<section aria-labelledby="events-h">
    <h2 id="events-h">Events</h2>
    ${canWatchEvents(token) && html`<${LiveEvents} />`}
    ${hasLog ? html`<${Log} />` : html`<p class="note">The broker log (GET /mqtt/logs) is not available to this token on this node.</p>`}
  </section>`;
}
