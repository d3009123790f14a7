// Tokens (SPEC §9): master lists, filters, creates (with an ACL editor),
// enables/disables, edits and deletes tokens; any token may mint a child
// token where the node has POST /auth/tokens. A new key is shown once.
import { html, useState } from '../vendor/htm-preact.js';
import { api, asMask, formatTime, textFilter } from '../api.js';
import { ACL, MASTER, STANDARD, accessName, canRest, filterProblem } from '../access.js';
import { ConfirmButton, ErrorLine, Pager, usePoll } from '../ui.js';

const PAGE = 25;
const REST_URIS = ['mqtt', 'mqtt/sessions', 'mqtt/messages', 'mqtt/logs'];
const METHODS = ['GET', 'POST', 'PUT', 'DELETE'];
/** SPEC §3: the one uri that takes `ids` and `submodules`, and its submodules with the methods they answer. */
const SESSIONS_URI = 'mqtt/sessions';
const SUBMODULES = { subscriptions: ['GET', 'DELETE'] };
/** Fields of an ACL entry the editor shows; the form keeps `extra` (the entry as stored) for the rest. */
const ENTRY_PARTS = ['topic', 'actions', 'uri', 'methods', 'ids', 'submodules'];

/**
 * Where the form shows a reason (`access.acl[2].ids[0]: ...`, `limits.sessions: ...`,
 * `unknown field 'limits.x'`): the field it names when the form has that field,
 * else the nearest one it has, else above the form. Never a key nobody renders.
 */
function placeOf(reason, form) {
  const named = /^unknown field '([^']*)'/.exec(reason)?.[1] ?? /^([A-Za-z_]+(?:\[\d+\])?(?:\.[A-Za-z_]+(?:\[\d+\])?)*):/.exec(reason)?.[1] ?? '';
  if (['info', 'ttl', 'expire', 'ips', 'clientids', 'limits.sessions', 'limits.publish_rate'].includes(named)) return named;
  if (named.startsWith('limits')) return 'limits';
  const acl = /^access\.acl\[(\d+)\](?:\.([a-z_]+)(?:\[(\d+)\])?)?/.exec(named);
  if (acl) {
    const [, i, part, k] = acl;
    if (Number(i) >= form.acl.length) return 'access.acl';
    if (part === 'ids' && k !== undefined) return `access.acl[${i}].ids[${k}]`;
    return ENTRY_PARTS.includes(part) ? `access.acl[${i}].${part}` : `access.acl[${i}]`;
  }
  if (named === 'access.acl') return named;
  if (named.startsWith('access')) return 'access';
  return 'form';
}

function emptyForm(type = STANDARD) {
  return {
    info: '', ttl: '86400', expire: '', type: String(type), ips: '', clientids: '', acl: [], enabled: true,
    limits: { sessions: '', publish_rate: '' },
  };
}

/** A stored ACL entry as the editor holds it; `extra` keeps the entry whole, so a field the editor does not know survives an edit. */
function entryForm(e) {
  if (Array.isArray(e.methods)) {
    return {
      kind: 'rest', uri: e.uri, methods: [...e.methods], ids: [...(e.ids ?? [])],
      submodules: e.submodules?.map((s) => ({ ...s, methods: [...(s.methods ?? [])] })), extra: e,
    };
  }
  return { kind: 'mqtt', topic: e.topic, actions: [...(e.actions ?? [])], extra: e };
}

function formOf(t) {
  return {
    info: t.info ?? '', ttl: String(t.ttl ?? ''), expire: String(t.expire || ''), type: String(t.access?.type ?? STANDARD),
    ips: t.ips ?? '', clientids: t.clientids ?? '', enabled: t.enabled,
    limits: { sessions: String(t.limits?.sessions || ''), publish_rate: String(t.limits?.publish_rate || '') },
    acl: (t.access?.acl ?? []).map(entryForm),
  };
}

/** A REST entry of the form as the API takes it (SPEC §3): `ids` only when some are given, `submodules` as edited. */
function restEntryOf(e) {
  const { ids: _ids, submodules: _subs, ...others } = e.extra ?? {};
  const entry = { ...others, uri: e.uri, methods: e.methods };
  if (e.ids.length > 0) entry.ids = e.ids;
  // An empty list is sent only if the stored entry had one (nothing dropped, nothing added).
  if (e.submodules !== undefined && (e.submodules.length > 0 || Object.hasOwn(e.extra ?? {}, 'submodules'))) entry.submodules = e.submodules;
  return entry;
}

/**
 * The form as a token body; `problems` maps fields to client-side reasons.
 * `full`: every field the form shows, also when empty (an edit compares two
 * full bodies and sends what differs, so clearing a field is a change).
 */
function bodyOf(form, problems, full = false) {
  const body = { info: form.info, ips: form.ips };
  // Sent only when set (or edited): a node without SPEC §2 `clientids`/`limits` answers 400 "unknown field".
  if (full || form.clientids.trim() !== '') body.clientids = form.clientids;
  body.ttl = form.ttl.trim() === '' ? 0 : Number(form.ttl);
  body.expire = form.expire.trim() === '' ? 0 : Number(form.expire);
  if (!Number.isInteger(body.ttl) || body.ttl < 0) problems.ttl = 'must be a whole number of seconds';
  if (!Number.isInteger(body.expire) || body.expire < 0) problems.expire = 'must be UNIX seconds';
  // SPEC §2 `limits`: empty or 0 = unlimited; the bounds are the server's to judge (its 400 is shown here).
  const limits = {};
  for (const name of ['sessions', 'publish_rate']) {
    const text = form.limits[name].trim();
    if (text !== '' && !/^\d+$/.test(text)) problems[`limits.${name}`] = 'must be a whole number (empty or 0: unlimited)';
    limits[name] = text === '' ? 0 : Number(text);
  }
  if (full || limits.sessions > 0 || limits.publish_rate > 0) body.limits = limits;
  const type = Number(form.type);
  body.access = { type };
  if (type === ACL) {
    body.access.acl = form.acl.map((e, i) => {
      if (e.kind === 'mqtt') {
        const problem = filterProblem(e.topic);
        if (problem) problems[`access.acl[${i}].topic`] = `topic filter ${problem}`;
        if (e.actions.length === 0) problems[`access.acl[${i}].actions`] = 'pick publish and/or subscribe';
        return { ...(e.extra ?? {}), uri: 'mqtt', topic: e.topic, actions: e.actions };
      }
      if (e.methods.length === 0) problems[`access.acl[${i}].methods`] = 'pick at least one method';
      return restEntryOf(e);
    });
  }
  return body;
}

function toggle(list, value) {
  return list.includes(value) ? list.filter((v) => v !== value) : [...list, value];
}

function FieldError({ problems, name }) {
  const reason = problems[name];
  return reason ? html`<span class="field-error" id=${`err-${name}`} role="alert">${reason}</span>` : null;
}

/** The methods offered for a list: the usual ones and any other the stored entry holds (PATCH, HEAD, ...). */
function methodChoices(usual, held) {
  return [...new Set([...usual, ...held])];
}

/**
 * SPEC §3 `ids` and `submodules` of a `mqtt/sessions` entry. Shown for that uri,
 * and for any entry that has them, so that a value the API refuses (on another
 * uri) stays in sight next to its reason.
 */
function SessionScope({ entry, index, onChange, problems }) {
  const at = `access.acl[${index}]`;
  const n = index + 1;
  const setId = (k, value) => onChange({ ...entry, ids: entry.ids.map((id, j) => (j === k ? value : id)) });
  const subs = entry.submodules ?? [];
  const names = [...new Set([...Object.keys(SUBMODULES), ...subs.map((s) => s.name)])];
  function toggleSub(name, method) {
    const held = subs.find((s) => s.name === name);
    let next;
    if (!held) next = [...subs, { name, methods: [method] }];
    else {
      const methods = toggle(held.methods, method);
      // A submodule with no method left is no right at all: removed (the API refuses an empty list).
      next = methods.length === 0 ? subs.filter((s) => s !== held) : subs.map((s) => (s === held ? { ...s, methods } : s));
    }
    onChange({ ...entry, submodules: next });
  }
  return html`<div class="acl-scope">
    <fieldset class="ids">
      <legend>Client ids (masks with * and ?; none: every client id)</legend>
      ${entry.ids.map((id, k) => html`<span class="id-item" key=${k}>
        <input name=${`acl-${index}-id-${k}`} value=${id} aria-label=${`entry ${n} client id mask ${k + 1}`} spellcheck="false"
          aria-invalid=${Boolean(problems[`${at}.ids[${k}]`])} onInput=${(ev) => setId(k, ev.target.value)} />
        <button type="button" class="secondary small" aria-label=${`remove client id mask ${k + 1} of entry ${n}`}
          onClick=${() => onChange({ ...entry, ids: entry.ids.filter((_, j) => j !== k) })}>×</button>
        <${FieldError} problems=${problems} name=${`${at}.ids[${k}]`} />
      </span>`)}
      <button type="button" class="secondary small" aria-label=${`add client id mask to entry ${n}`}
        onClick=${() => onChange({ ...entry, ids: [...entry.ids, ''] })}>Add client id mask</button>
      <${FieldError} problems=${problems} name=${`${at}.ids`} />
    </fieldset>
    <fieldset class="submodules">
      <legend>Submodules</legend>
      ${names.map((name) => {
        const held = subs.find((s) => s.name === name);
        return html`<span class="submodule" key=${name}><span class="sub-name">${name}</span>
          ${methodChoices(SUBMODULES[name] ?? [], held?.methods ?? []).map((m) => html`<label class="check">
            <input type="checkbox" aria-label=${`entry ${n} ${name} ${m}`} checked=${held?.methods.includes(m) ?? false}
              onChange=${() => toggleSub(name, m)} /> ${m}</label>`)}</span>`;
      })}
      <${FieldError} problems=${problems} name=${`${at}.submodules`} />
    </fieldset>
  </div>`;
}

function AclEditor({ acl, onChange, problems }) {
  const set = (i, entry) => onChange(acl.map((e, j) => (j === i ? entry : e)));
  const remove = (i) => html`<button type="button" class="secondary" aria-label=${`remove entry ${i + 1}`}
    onClick=${() => onChange(acl.filter((_, j) => j !== i))}>Remove</button>`;
  const entryErrors = (i) => html`<${FieldError} problems=${problems} name=${`access.acl[${i}].uri`} />
    <${FieldError} problems=${problems} name=${`access.acl[${i}]`} />`;
  return html`<fieldset class="acl">
    <legend>ACL entries</legend>
    <${FieldError} problems=${problems} name="access.acl" />
    ${acl.length === 0 && html`<p class="note">No entries: this token may do nothing.</p>`}
    ${acl.map((e, i) => html`<div class="acl-row" key=${i} data-entry=${i}>
      ${e.kind === 'mqtt' ? html`
        <label>Topic filter <input name=${`acl-${i}-topic`} value=${e.topic} onInput=${(ev) => set(i, { ...e, topic: ev.target.value })}
          aria-invalid=${Boolean(problems[`access.acl[${i}].topic`])} /></label>
        ${['publish', 'subscribe'].map((a) => html`<label class="check"><input type="checkbox" checked=${e.actions.includes(a)}
          onChange=${() => set(i, { ...e, actions: toggle(e.actions, a) })} /> ${a}</label>`)}
        ${remove(i)}
        <${FieldError} problems=${problems} name=${`access.acl[${i}].topic`} />
        <${FieldError} problems=${problems} name=${`access.acl[${i}].actions`} />
        ${entryErrors(i)}` : html`
        <label>REST uri <select value=${e.uri} onChange=${(ev) => set(i, { ...e, uri: ev.target.value })}>
          ${[...new Set([...REST_URIS, e.uri])].map((u) => html`<option value=${u}>${u}</option>`)}</select></label>
        ${methodChoices(METHODS, e.methods).map((m) => html`<label class="check"><input type="checkbox" checked=${e.methods.includes(m)}
          onChange=${() => set(i, { ...e, methods: toggle(e.methods, m) })} /> ${m}</label>`)}
        ${remove(i)}
        <${FieldError} problems=${problems} name=${`access.acl[${i}].methods`} />
        ${entryErrors(i)}
        ${(e.uri === SESSIONS_URI || e.ids.length > 0 || (e.submodules ?? []).length > 0)
          && html`<${SessionScope} entry=${e} index=${i} problems=${problems} onChange=${(x) => set(i, x)} />`}`}
    </div>`)}
    <button type="button" class="secondary" onClick=${() => onChange([...acl, { kind: 'mqtt', topic: '', actions: ['subscribe'] }])}>Add MQTT topic entry</button>
    <button type="button" class="secondary" onClick=${() => onChange([...acl, { kind: 'rest', uri: 'mqtt/sessions', methods: ['GET'], ids: [] }])}>Add REST entry</button>
  </fieldset>`;
}

/** Create, edit or mint form. `mode`: 'create' (POST /platform/tokens), 'mint' (POST /auth/tokens) or 'edit'. */
function TokenForm({ mode, initial, onDone, onCancel }) {
  const [form, setForm] = useState(initial);
  const [problems, setProblems] = useState({});
  const [busy, setBusy] = useState(false);
  const set = (name) => (e) => setForm({ ...form, [name]: e.target.value });
  const setLimit = (name) => (e) => setForm({ ...form, limits: { ...form.limits, [name]: e.target.value } });
  async function submit(event) {
    event.preventDefault();
    const found = {};
    let body = bodyOf(form, found, mode === 'edit');
    if (mode === 'edit') {
      // Only what changed: resending `access` or `ips` unchanged would still count as a change (children deleted, SPEC §2).
      // Both bodies are full, so a field emptied in the form (clientids, limits) is a change and is sent.
      const before = bodyOf(initial, {}, true);
      body = Object.fromEntries(Object.entries(body).filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(before[k])));
    }
    setProblems(found);
    if (Object.keys(found).length > 0) return;
    setBusy(true);
    try {
      let answer;
      if (mode === 'edit') answer = await api('PUT', `/platform/tokens/${initial.id}`, body);
      else answer = await api('POST', mode === 'mint' ? '/auth/tokens' : '/platform/tokens', body);
      onDone(answer.result[0]);
    } catch (err) {
      // The server's reason next to the field it names (or above the form).
      setProblems({ [placeOf(err.message, form)]: err.message });
    } finally {
      setBusy(false);
    }
  }
  const title = mode === 'edit' ? `Edit token ${initial.id}` : mode === 'mint' ? 'Mint a child token' : 'Create a token';
  return html`<form class="token-form" onSubmit=${submit} aria-label=${title}>
    <h3>${title}</h3>
    <${FieldError} problems=${problems} name="form" />
    <label>Info <input name="info" value=${form.info} maxlength="1024" onInput=${set('info')} /></label>
    <${FieldError} problems=${problems} name="info" />
    <div class="row">
      <label>TTL (s) <input name="ttl" inputmode="numeric" value=${form.ttl} onInput=${set('ttl')} /></label>
      <label>Expire (UNIX s) <input name="expire" inputmode="numeric" value=${form.expire} onInput=${set('expire')} placeholder="0" /></label>
    </div>
    <${FieldError} problems=${problems} name="ttl" />
    <${FieldError} problems=${problems} name="expire" />
    ${mode !== 'mint' && html`<label>Access <select name="type" value=${form.type} onChange=${set('type')}>
      <option value=${STANDARD}>standard</option><option value=${MASTER}>master</option><option value=${ACL}>ACL</option></select></label>`}
    <${FieldError} problems=${problems} name="access" />
    ${Number(form.type) === ACL && html`<${AclEditor} acl=${form.acl} problems=${problems} onChange=${(acl) => setForm({ ...form, acl })} />`}
    <label>IP masks <input name="ips" value=${form.ips} placeholder="10.0.0.0/8, 192.168.1.*" onInput=${set('ips')} /></label>
    <${FieldError} problems=${problems} name="ips" />
    <label>Client id masks <input name="clientids" value=${form.clientids} placeholder="truck-${'${token_id}'}-*" onInput=${set('clientids')} /></label>
    <${FieldError} problems=${problems} name="clientids" />
    <fieldset class="limits">
      <legend>Limits (empty or 0: unlimited)</legend>
      <div class="row">
        <label>Max sessions <input name="limits_sessions" inputmode="numeric" value=${form.limits.sessions} placeholder="unlimited"
          aria-invalid=${Boolean(problems['limits.sessions'])} onInput=${setLimit('sessions')} /></label>
        <label>Publish rate (msg/s per session) <input name="limits_publish_rate" inputmode="numeric" value=${form.limits.publish_rate}
          placeholder="unlimited" aria-invalid=${Boolean(problems['limits.publish_rate'])} onInput=${setLimit('publish_rate')} /></label>
      </div>
      <${FieldError} problems=${problems} name="limits.sessions" />
      <${FieldError} problems=${problems} name="limits.publish_rate" />
      <${FieldError} problems=${problems} name="limits" />
    </fieldset>
    <div class="row">
      <button type="submit" disabled=${busy}>${mode === 'edit' ? 'Save' : 'Create'}</button>
      <button type="button" class="secondary" onClick=${onCancel}>Cancel</button>
    </div>
  </form>`;
}

/** SPEC §2 `limits` in a few words ("≤ 5 sessions, 10 msg/s"); '' when unlimited. */
function limitsText(limits) {
  const parts = [];
  if (limits?.sessions) parts.push(`≤ ${limits.sessions} session${limits.sessions === 1 ? '' : 's'}`);
  if (limits?.publish_rate) parts.push(`${limits.publish_rate} msg/s`);
  return parts.join(', ');
}

function NewKey({ created, onClose }) {
  const [copied, setCopied] = useState('');
  async function copy() {
    try {
      await navigator.clipboard.writeText(created.key);
      setCopied('copied');
    } catch {
      setCopied('select the key and copy it by hand');
    }
  }
  return html`<div class="new-key" role="status">
    <p>Token ${created.id} created. Its key is shown <strong>only now</strong>:</p>
    <p><code class="key" data-testid="new-key">${created.key}</code></p>
    <button type="button" onClick=${copy}>Copy key</button> <span class="note">${copied}</span>
    <button type="button" class="secondary" onClick=${onClose}>Done</button>
  </div>`;
}

export function TokensView({ token, features }) {
  const isMaster = canRest(token, 'GET', '/platform/tokens/all');
  const mayMint = features.has('POST', '/auth/tokens');
  const [list, setList] = useState(null);
  const [filter, setFilter] = useState('');
  const [offset, setOffset] = useState(0);
  const [error, setError] = useState('');
  const [editing, setEditing] = useState(null); // null | {mode, initial}
  const [created, setCreated] = useState(null);
  const [tick, setTick] = useState(0);

  const serverPaging = features.takes('GET', '/platform/tokens/{sel}', 'limit');
  const [page, setPage] = useState({ rows: [], total: 0 });
  usePoll(async () => {
    if (!isMaster) return;
    try {
      if (serverPaging) {
        // SPEC §5 paging and selectors where the node has them: an id, or `info=<mask>`.
        const f = filter.trim();
        const sel = f === '' ? 'all' : /^\d+$/.test(f) ? f : `info=${asMask(f)}`;
        const body = await api('GET', `/platform/tokens/${encodeURIComponent(sel)}?limit=${PAGE}&offset=${offset}`);
        setPage({ rows: body.result, total: body.pagination?.total ?? body.result.length });
        setList(body.result);
      } else {
        setList((await api('GET', '/platform/tokens/all')).result);
      }
      setError('');
    } catch (err) {
      setError(err.message);
    }
  }, 5000, [tick, serverPaging ? filter : '', serverPaging ? offset : 0]);
  const reload = () => setTick(tick + 1);

  async function change(t, patch) {
    try {
      await api('PUT', `/platform/tokens/${t.id}`, patch);
      reload();
    } catch (err) {
      setError(err.message);
    }
  }
  async function remove(t) {
    try {
      await api('DELETE', `/platform/tokens/${t.id}`);
      reload();
    } catch (err) {
      setError(err.message);
    }
  }

  const match = textFilter(filter);
  const filtered = serverPaging ? page.rows : (list ?? []).filter((t) => match(t.info) || String(t.id) === filter.trim());
  const total = serverPaging ? page.total : filtered.length;
  const shown = serverPaging ? filtered : filtered.slice(offset, offset + PAGE);
  return html`<section aria-labelledby="tokens-h">
    <h2 id="tokens-h">Tokens</h2>
    <${ErrorLine} error=${error} />
    ${created && html`<${NewKey} created=${created} onClose=${() => setCreated(null)} />`}
    ${editing ? html`<${TokenForm} ...${editing} onCancel=${() => setEditing(null)}
        onDone=${(t) => { setEditing(null); if (t.key) setCreated(t); reload(); }} />` : html`<div class="row">
      ${isMaster && html`<button type="button" onClick=${() => setEditing({ mode: 'create', initial: emptyForm() })}>New token</button>`}
      ${mayMint && html`<button type="button" onClick=${() => setEditing({ mode: 'mint', initial: emptyForm(ACL) })}>Mint child token</button>`}
    </div>`}
    ${isMaster && html`
      <form class="filters" onSubmit=${(e) => e.preventDefault()}>
        <label>Filter <input name="token_filter" value=${filter} placeholder="id, info or mask (truck*)" onInput=${(e) => { setFilter(e.target.value); setOffset(0); }} /></label>
      </form>
      ${list === null ? html`<p class="empty">Loading…</p>` : html`
        <${Pager} offset=${offset} limit=${PAGE} total=${total} onChange=${setOffset} />
        <div class="table-wrap"><table class="tokens">
          <thead><tr><th scope="col">Id</th><th scope="col">Info</th><th scope="col">Access</th><th scope="col">Enabled</th>
            <th scope="col">Limits</th><th scope="col">Expire / TTL</th><th scope="col">Accessed</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>${shown.map((t) => html`<tr key=${t.id} data-token-id=${t.id}>
            <td data-label="Id">${t.id}</td>
            <td data-label="Info">${t.info}</td>
            <td data-label="Access">${accessName(t.access?.type)}${t.access?.type === ACL ? ` (${t.access.acl?.length ?? 0})` : ''}</td>
            <td data-label="Enabled">${t.enabled ? 'yes' : 'no'}</td>
            <td data-label="Limits">${limitsText(t.limits) || html`<span class="note">—</span>`}</td>
            <td data-label="Expire / TTL">${t.expire ? formatTime(t.expire) : `${t.ttl} s`}</td>
            <td data-label="Accessed">${formatTime(t.accessed)}</td>
            <td class="actions">
              <button type="button" class="secondary" onClick=${() => setEditing({ mode: 'edit', initial: { ...formOf(t), id: t.id } })} aria-label=${`edit token ${t.id}`}>Edit</button>
              <button type="button" class="secondary" onClick=${() => change(t, { enabled: !t.enabled })} aria-label=${`${t.enabled ? 'disable' : 'enable'} token ${t.id}`}>${t.enabled ? 'Disable' : 'Enable'}</button>
              ${t.id !== token.id && html`<${ConfirmButton} label="Delete" confirmLabel="Confirm delete" what=${`token ${t.id}`} onConfirm=${() => remove(t)} />`}
            </td>
          </tr>`)}</tbody>
        </table></div>`}`}
  </section>`;
}
