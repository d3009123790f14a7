// Retained (SPEC §9): browse retained messages by filter and delete them,
// through GET/DELETE /mqtt/messages/{filter} (hidden where the node lacks them).
import { html, useEffect, useState } from '../vendor/htm-preact.js';
import { api } from '../api.js';
import { canRest, filterProblem } from '../access.js';
import { ConfirmButton, ErrorLine, Pager, payloadText } from '../ui.js';

const PAGE = 50;

function base64Bytes(text) {
  const raw = atob(text ?? '');
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

export function RetainedView({ token, features }) {
  const [filter, setFilter] = useState('#');
  const [rows, setRows] = useState(null);
  const [offset, setOffset] = useState(0);
  const [error, setError] = useState('');
  const [mode, setMode] = useState('text');
  const mayDelete = features.has('DELETE', '/mqtt/messages/{filter}') && canRest(token, 'DELETE', '/mqtt/messages/x');

  async function load(event) {
    event?.preventDefault();
    const problem = filterProblem(filter.trim());
    if (problem) return setError(`topic filter ${problem}`);
    try {
      setRows((await api('GET', `/mqtt/messages/${encodeURIComponent(filter.trim())}`)).result);
      setOffset(0);
      setError('');
    } catch (err) {
      setError(err.message);
    }
  }
  // Opening the view shows what `#` holds at once.
  useEffect(() => { load(); }, []);
  async function remove(topic) {
    try {
      await api('DELETE', `/mqtt/messages/${encodeURIComponent(topic)}`);
      await load();
    } catch (err) {
      setError(err.message);
    }
  }
  return html`<section aria-labelledby="retained-h">
    <h2 id="retained-h">Retained</h2>
    <form class="filters" onSubmit=${load}>
      <label>Topic filter <input name="retained_filter" value=${filter} onInput=${(e) => setFilter(e.target.value)} /></label>
      <button type="submit">Show</button>
      <label>Payload <select value=${mode} onChange=${(e) => setMode(e.target.value)}><option value="text">text</option><option value="hex">hex</option></select></label>
    </form>
    <${ErrorLine} error=${error} />
    ${rows && html`<${Pager} offset=${offset} limit=${PAGE} total=${rows.length} onChange=${setOffset} />
      <div class="table-wrap"><table>
        <thead><tr><th scope="col">Topic</th><th scope="col">QoS</th><th scope="col">Size</th><th scope="col">Payload</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${rows.slice(offset, offset + PAGE).map((m) => html`<tr key=${m.topic}>
          <td data-label="Topic"><code>${m.topic}</code></td><td data-label="QoS">${m.qos}</td><td data-label="Size">${m.size}</td>
          <td data-label="Payload"><pre class="payload">${payloadText(base64Bytes(m.payload), mode)}</pre></td>
          <td class="actions">${mayDelete && html`<${ConfirmButton} label="Delete" confirmLabel="Confirm delete" what=${m.topic} onConfirm=${() => remove(m.topic)} />`}</td>
        </tr>`)}</tbody>
      </table></div>`}
  </section>`;
}
