// Sessions (SPEC §9): every node's live sessions, polled; filter by client
// id, token id or IP; kick with confirmation; a session's subscriptions.
// One page of rows in the DOM, never the whole listing.
import { html, useState } from '../vendor/htm-preact.js';
import { api, asMask, formatTime, sessionPath, textFilter } from '../api.js';
import { canRest } from '../access.js';
import { ConfirmButton, ErrorLine, Pager, usePoll } from '../ui.js';

const PAGE = 50;
const POLL_MS = 2000;
const LIST_FIELDS = 'client_id,token_id,ip,transport,node,connected,msgs_in,msgs_out';

function Subscriptions({ clientId, features }) {
  const [subs, setSubs] = useState(null);
  const [error, setError] = useState('');
  usePoll(async () => {
    try {
      // SPEC §5 subscriptions route when this node has it; else the session object's own list.
      const body = features.has('GET', '/mqtt/sessions/{sel}/subscriptions')
        ? await api('GET', sessionPath(clientId, '/subscriptions'))
        : {
          result: (await api('GET', sessionPath(clientId, '', { fields: 'client_id,subscriptions' }))).result
            .filter((s) => s.client_id === clientId).flatMap((s) => s.subscriptions ?? []),
        };
      setSubs(body.result);
      setError('');
    } catch (err) {
      setError(err.message);
    }
  }, 5000, [clientId]);
  if (error) return html`<${ErrorLine} error=${error} />`;
  if (!subs) return html`<span class="note">loading…</span>`;
  if (subs.length === 0) return html`<span class="note">no subscriptions</span>`;
  return html`<ul class="subs" aria-label=${`subscriptions of ${clientId}`}>${subs.map((s) => html`<li><code>${s.topic}</code> <span class="note">QoS ${s.qos}</span></li>`)}</ul>`;
}

export function SessionsView({ token, features }) {
  const [filters, setFilters] = useState({ client: '', tokenId: '', ip: '' });
  const [offset, setOffset] = useState(0);
  const [page, setPage] = useState({ rows: null, total: 0 });
  const [error, setError] = useState('');
  const [notice, setNotice] = useState('');
  const [open, setOpen] = useState(null);
  const mayKick = canRest(token, 'DELETE', '/mqtt/sessions/x');
  // SPEC §3: with a narrower uri, the subscriptions submodule is a right of its own (the item's GET does not grant it).
  const maySeeSubs = features.has('GET', '/mqtt/sessions/{sel}/subscriptions')
    ? canRest(token, 'GET', '/mqtt/sessions/x/subscriptions')
    : canRest(token, 'GET', '/mqtt/sessions/x');
  const serverPaging = features.takes('GET', '/mqtt/sessions/{sel}', 'limit');

  async function load() {
    try {
      const q = new URLSearchParams({ fields: LIST_FIELDS });
      const tokenId = filters.tokenId.trim();
      if (tokenId !== '' && /^\d+$/.test(tokenId)) q.set('token_id', tokenId);
      if (serverPaging) {
        // SPEC §5 listing parameters, where this node has them.
        if (filters.client.trim()) q.set('client_id', asMask(filters.client));
        if (filters.ip.trim()) q.set('ip', asMask(filters.ip));
        q.set('limit', String(PAGE));
        q.set('offset', String(offset));
        const body = await api('GET', `/mqtt/sessions/all?${q}`);
        setPage({ rows: body.result, total: body.pagination?.total ?? body.result.length });
      } else {
        const body = await api('GET', `/mqtt/sessions/all?${q}`);
        const byClient = textFilter(filters.client);
        const byIp = textFilter(filters.ip);
        const rows = body.result
          .filter((s) => byClient(s.client_id) && byIp(s.ip))
          .sort((a, b) => (a.client_id < b.client_id ? -1 : a.client_id > b.client_id ? 1 : 0));
        setPage({ rows: rows.slice(offset, offset + PAGE), total: rows.length });
      }
      setError('');
    } catch (err) {
      setError(err.message);
    }
  }
  usePoll(load, POLL_MS, [filters, offset]);

  async function kick(clientId) {
    try {
      await api('DELETE', sessionPath(clientId));
      setNotice(`closed ${clientId}`);
      load();
    } catch (err) {
      setError(err.message);
    }
  }

  function setFilter(name, value) {
    setFilters({ ...filters, [name]: value });
    setOffset(0);
  }

  const rows = page.rows;
  return html`<section aria-labelledby="sessions-h">
    <h2 id="sessions-h">Sessions</h2>
    <form class="filters" onSubmit=${(e) => e.preventDefault()}>
      <label>Client id <input name="client_id" value=${filters.client} placeholder="text or mask (sensor-*)" onInput=${(e) => setFilter('client', e.target.value)} /></label>
      <label>Token id <input name="token_id" inputmode="numeric" value=${filters.tokenId} onInput=${(e) => setFilter('tokenId', e.target.value)} /></label>
      <label>IP <input name="ip" value=${filters.ip} placeholder="10.0.*" onInput=${(e) => setFilter('ip', e.target.value)} /></label>
    </form>
    <${ErrorLine} error=${error} />
    ${notice && html`<p class="notice" role="status">${notice}</p>`}
    ${rows === null ? html`<p class="empty">Loading…</p>` : html`
      <${Pager} offset=${offset} limit=${PAGE} total=${page.total} onChange=${setOffset} />
      <div class="table-wrap"><table class="sessions">
        <thead><tr><th scope="col">Client id</th><th scope="col">Token</th><th scope="col">IP</th><th scope="col">Transport</th>
          <th scope="col">Node</th><th scope="col">Connected</th><th scope="col">In / out</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>
          ${rows.length === 0 && html`<tr><td colspan="8" class="empty">No sessions</td></tr>`}
          ${rows.map((s) => html`
            <tr key=${s.client_id} data-client-id=${s.client_id}>
              <td data-label="Client id"><code>${s.client_id}</code></td>
              <td data-label="Token">${s.token_id}</td>
              <td data-label="IP">${s.ip}</td>
              <td data-label="Transport">${s.transport}</td>
              <td data-label="Node">${s.node}</td>
              <td data-label="Connected">${formatTime(s.connected)}</td>
              <td data-label="In / out">${s.msgs_in} / ${s.msgs_out}</td>
              <td class="actions">
                ${maySeeSubs && html`<button type="button" class="secondary" aria-expanded=${open === s.client_id}
                  onClick=${() => setOpen(open === s.client_id ? null : s.client_id)}>Subscriptions</button>`}
                ${mayKick && html`<${ConfirmButton} label="Kick" confirmLabel="Confirm kick" what=${s.client_id} onConfirm=${() => kick(s.client_id)} />`}
              </td>
            </tr>
            ${open === s.client_id && html`<tr class="detail"><td colspan="8"><span class="note">Subscriptions of <code>${s.client_id}</code>:</span>
              <${Subscriptions} clientId=${s.client_id} features=${features} /></td></tr>`}`)}
        </tbody>
      </table></div>
      ${rows.length > 10 && html`<${Pager} offset=${offset} limit=${PAGE} total=${page.total} onChange=${setOffset} />`}`}
  </section>`;
}
