// Live (SPEC §9): subscribe over MQTT/WebSocket with the logged-in token;
// newest message on top, time, topic, payload as text or hex, pause, a cap
// on kept messages; a filter the broker refuses (SUBACK 0x80) shows as refused.
import { html, useEffect, useRef, useState } from '../vendor/htm-preact.js';
import mqtt from '../vendor/mqtt.js';
import { storedKey } from '../api.js';
import { filterProblem } from '../access.js';
import { ErrorLine, payloadText } from '../ui.js';

let configPromise = null;
/** The WebSocket URL the node tells the page (CONSOLE_WS_URL or this host with WS_PORT). */
export function consoleConfig() {
  configPromise ??= fetch('/console/config.json', { credentials: 'omit' }).then((r) => r.json());
  return configPromise;
}

/**
 * One MQTT connection of a view, with the token key as username (SPEC §4).
 * `onMessage(topic, bytes)`; returns { state, subscribe(filter) → Promise<qos|'refused'> }.
 */
export function useMqtt(onMessage, prefix) {
  const [state, setState] = useState('connecting');
  const [error, setError] = useState('');
  const client = useRef(null);
  const handler = useRef(onMessage);
  handler.current = onMessage;
  useEffect(() => {
    let closed = false;
    consoleConfig().then(({ wsUrl }) => {
      if (closed) return;
      const id = `${prefix}-${Math.random().toString(36).slice(2, 10)}`;
      const c = mqtt.connect(wsUrl, {
        username: storedKey(), password: '', clientId: id, clean: true, reconnectPeriod: 3000, protocolVersion: 4,
        // mqtt.js's default worker timers come from a blob: URL, which the CSP (script-src 'self') refuses.
        timerVariant: 'native',
      });
      client.current = c;
      c.on('connect', () => { setState('connected'); setError(''); });
      c.on('close', () => setState('disconnected'));
      c.on('error', (err) => setError(`MQTT: ${err.message}`));
      c.on('message', (topic, payload) => handler.current(topic, payload));
    }, (err) => setError(`cannot read /console/config.json: ${err.message}`));
    return () => {
      closed = true;
      client.current?.end(true);
    };
  }, []);
  function subscribe(filter) {
    return new Promise((resolve, reject) => {
      const c = client.current;
      if (!c) return reject(new Error('not connected'));
      c.subscribe(filter, { qos: 0 }, (err, granted) => {
        const qos = granted?.[0]?.qos;
        // mqtt.js 5 reports a SUBACK 0x80 as an error whose code (or packet) carries the return code.
        if (qos === 128 || err?.code === 128 || err?.packet?.granted?.[0] === 128) return resolve('refused');
        if (err) return reject(err);
        resolve(qos);
      });
    });
  }
  function unsubscribe(filter) {
    client.current?.unsubscribe(filter, () => {});
  }
  return { state, error, subscribe, unsubscribe };
}

const CAPS = [100, 500, 1000];

export function MessageList({ messages, mode }) {
  if (messages.length === 0) return html`<p class="empty">No messages yet.</p>`;
  return html`<ol class="messages" aria-label="messages, newest first">${messages.map((m) => html`<li key=${m.n}>
    <div class="msg-head"><time>${m.time}</time> <code class="topic">${m.topic}</code> <span class="note">${m.bytes.length} B</span></div>
    <pre class="payload">${payloadText(m.bytes, mode)}</pre>
  </li>`)}</ol>`;
}

/** Messages kept newest first, at most `cap`; while paused the list on screen stays still. */
export function useMessages(initialCap = 500) {
  const [cap, setCap] = useState(initialCap);
  const [paused, setPaused] = useState(false);
  const [shown, setShown] = useState([]);
  const kept = useRef([]);
  const count = useRef(0);
  const pausedRef = useRef(false);
  pausedRef.current = paused;
  const capRef = useRef(cap);
  capRef.current = cap;
  function add(topic, bytes) {
    const n = ++count.current;
    kept.current = [{ n, topic, bytes, time: new Date().toISOString().slice(11, 23) }, ...kept.current].slice(0, capRef.current);
    if (!pausedRef.current) setShown(kept.current);
  }
  function togglePause() {
    if (paused) setShown(kept.current);
    setPaused(!paused);
  }
  function clear() {
    kept.current = [];
    setShown([]);
  }
  return { cap, setCap: (c) => { setCap(c); kept.current = kept.current.slice(0, c); setShown(kept.current); }, paused, togglePause, shown, add, clear, total: count };
}

export function LiveView() {
  const msgs = useMessages();
  const conn = useMqtt(msgs.add, 'console-live');
  const [filter, setFilter] = useState('#');
  const [filterError, setFilterError] = useState('');
  const [subs, setSubs] = useState([]);
  const [mode, setMode] = useState('text');

  async function add(event) {
    event.preventDefault();
    const f = filter.trim();
    const problem = filterProblem(f);
    if (problem) return setFilterError(`topic filter ${problem}`);
    setFilterError('');
    if (subs.some((s) => s.filter === f)) return;
    setSubs((list) => [...list, { filter: f, state: 'pending' }]);
    let state;
    try {
      const qos = await conn.subscribe(f);
      state = qos === 'refused' ? 'refused' : `granted QoS ${qos}`;
    } catch (err) {
      state = `error: ${err.message}`;
    }
    setSubs((list) => list.map((s) => (s.filter === f ? { ...s, state } : s)));
  }
  function remove(f, subscribed) {
    // A refused filter holds no subscription: nothing to send.
    if (subscribed) conn.unsubscribe(f);
    setSubs((list) => list.filter((s) => s.filter !== f));
  }

  return html`<section aria-labelledby="live-h">
    <h2 id="live-h">Live</h2>
    <p class="note">MQTT over WebSocket as the logged-in token: <span data-testid="mqtt-state">${conn.state}</span></p>
    <${ErrorLine} error=${conn.error} />
    <form class="filters" onSubmit=${add}>
      <label>Topic filter <input name="filter" value=${filter} onInput=${(e) => setFilter(e.target.value)} aria-invalid=${Boolean(filterError)} /></label>
      <button type="submit" disabled=${conn.state !== 'connected'}>Subscribe</button>
      ${filterError && html`<span class="field-error" role="alert">${filterError}</span>`}
    </form>
    <ul class="sub-list" aria-label="subscriptions">${subs.map((s) => html`<li class=${s.state === 'refused' ? 'refused' : ''} data-filter=${s.filter}>
      <code>${s.filter}</code> <span class="sub-state">${s.state === 'refused' ? 'refused by the broker (SUBACK 0x80)' : s.state}</span>
      ${s.state === 'refused'
        ? html`<button type="button" class="secondary" aria-label=${`remove ${s.filter}`} onClick=${() => remove(s.filter, false)}>Remove</button>`
        : html`<button type="button" class="secondary" aria-label=${`unsubscribe ${s.filter}`} onClick=${() => remove(s.filter, true)}>Unsubscribe</button>`}</li>`)}</ul>
    <div class="row toolbar">
      <button type="button" class="secondary" aria-pressed=${msgs.paused} onClick=${msgs.togglePause}>${msgs.paused ? 'Resume' : 'Pause'}</button>
      <label>Payload <select value=${mode} onChange=${(e) => setMode(e.target.value)}><option value="text">text</option><option value="hex">hex</option></select></label>
      <label>Keep <select value=${msgs.cap} onChange=${(e) => msgs.setCap(Number(e.target.value))}>${CAPS.map((c) => html`<option value=${c}>${c}</option>`)}</select></label>
      <button type="button" class="secondary" onClick=${msgs.clear}>Clear</button>
      ${msgs.paused && html`<span class="note" role="status">paused</span>`}
    </div>
    <${MessageList} messages=${msgs.shown} mode=${mode} />
  </section>`;
}
