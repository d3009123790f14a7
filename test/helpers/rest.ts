// Real HTTP calls to the REST API of a test server (global fetch, Node 20).
import { request as httpRequest } from 'node:http';

export interface RestResponse {
  status: number;
  headers: Headers;
  /** Parsed JSON, or the text when the body is not JSON. */
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  text: string;
}

export interface RestOptions {
  /** Sent as `Authorization: FlespiToken <key>`. */
  key?: string;
  /** A JSON value (serialised) or, with `raw`, the exact text to send. */
  body?: unknown;
  raw?: string | Buffer;
  headers?: Record<string, string>;
  /** Upper bound for the whole exchange, ms. */
  timeoutMs?: number;
}

export async function rest(baseUrl: string, method: string, path: string, opts: RestOptions = {}): Promise<RestResponse> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.key !== undefined) headers.authorization = `FlespiToken ${opts.key}`;
  let body: string | Buffer | undefined;
  if (opts.raw !== undefined) body = opts.raw;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) {
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(baseUrl + path, {
    method, headers, body, signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

/**
 * Sends `size` bytes of body with node:http, tolerating the server closing
 * the connection early (as it does after a 413): resolves with the status
 * and body it answered.
 */
export function postLarge(baseUrl: string, path: string, size: number, key: string, timeoutMs = 15_000): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const url = new URL(baseUrl + path);
    let answered: { status: number; text: string } | null = null;
    const timer = setTimeout(() => { req.destroy(); reject(new Error('timed out sending a large body')); }, timeoutMs);
    const req = httpRequest({
      host: url.hostname, port: url.port, path: url.pathname, method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': String(size), authorization: `FlespiToken ${key}`, connection: 'close' },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { text += chunk; });
      res.on('end', () => {
        answered = { status: res.statusCode ?? 0, text };
        clearTimeout(timer);
        resolve(answered);
      });
      res.on('error', () => {});
    });
    req.on('error', (err) => {
      if (answered) return;
      clearTimeout(timer);
      reject(err);
    });
    // `size` bytes of `x`: never read whole by the server, so their content does not matter.
    const chunk = Buffer.alloc(64 * 1024, 'x');
    let sent = 0;
    const writeMore = (): void => {
      while (sent < size) {
        const n = Math.min(chunk.length, size - sent);
        const piece = chunk.subarray(0, n);
        sent += n;
        if (!req.write(piece)) {
          req.once('drain', writeMore);
          return;
        }
      }
      req.end();
    };
    writeMore();
  });
}

export { eventually } from './wait.js';

/** The error reason of an error response (`{"errors": [{code, reason}]}`), checking the envelope. */
export function reasonOf(res: RestResponse): string {
  const errors = (res.body as { errors?: { code: number; reason: string }[] }).errors;
  if (!Array.isArray(errors) || errors.length !== 1 || errors[0]!.code !== res.status || typeof errors[0]!.reason !== 'string') {
    throw new Error(`not an error envelope for ${res.status}: ${res.text.slice(0, 300)}`);
  }
  return errors[0]!.reason;
}
