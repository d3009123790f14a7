// Small shared pieces of the views.
import { html, useEffect, useRef, useState } from './vendor/htm-preact.js';

/** A button that asks again before acting: the first press shows "confirm" and "cancel". */
export function ConfirmButton({ label, confirmLabel, onConfirm, disabled, what, title }) {
  const [asking, setAsking] = useState(false);
  const yes = useRef(null);
  useEffect(() => {
    if (asking) yes.current?.focus();
  }, [asking]);
  if (!asking) {
    return html`<button type="button" class="danger" disabled=${disabled} title=${title} aria-label=${what ? `${label} ${what}` : label}
      onClick=${() => setAsking(true)}>${label}</button>`;
  }
  return html`<span class="confirm" role="group" aria-label=${`confirm ${label}`}>
    <button type="button" class="danger" ref=${yes} onClick=${() => { setAsking(false); onConfirm(); }}>${confirmLabel}</button>
    <button type="button" class="secondary" onClick=${() => setAsking(false)}>Cancel</button>
  </span>`;
}

export function Pager({ offset, limit, total, onChange }) {
  const last = Math.max(0, Math.ceil(total / limit) - 1);
  const page = Math.floor(offset / limit);
  return html`<div class="pager" role="navigation" aria-label="pages">
    <button type="button" class="secondary" disabled=${page === 0} onClick=${() => onChange(Math.max(0, offset - limit))}>Previous</button>
    <span aria-live="polite">${total === 0 ? 'none' : `${offset + 1}–${Math.min(total, offset + limit)} of ${total}`}</span>
    <button type="button" class="secondary" disabled=${page >= last} onClick=${() => onChange(offset + limit)}>Next</button>
  </div>`;
}

export function ErrorLine({ error }) {
  return error ? html`<p class="error" role="alert">${error}</p>` : null;
}

/** Runs `fn` now and every `ms` while mounted, never two at once. */
export function usePoll(fn, ms, deps) {
  useEffect(() => {
    let stopped = false;
    let timer;
    const tick = async () => {
      try {
        // A hidden tab does not poll; it catches up when shown again (next tick).
        if (!document.hidden) await fn();
      } finally {
        if (!stopped) timer = setTimeout(tick, ms);
      }
    };
    tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, deps);
}

/** A payload as text (when it is printable UTF-8) or as hex. */
export function payloadText(bytes, mode) {
  if (mode === 'hex') return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return `(binary, ${bytes.length} bytes) ${payloadText(bytes, 'hex')}`;
  }
}
