// The CLI's REST calls (SPEC §5): `Authorization: FlespiToken <key>`, the
// success envelope back, the API's reason on error.
export const EXIT = { ok: 0, refused: 1, usage: 2, unreachable: 3 } as const;

export class CliError extends Error {
  override name = 'CliError';
  constructor(readonly exit: number, message: string, readonly status?: number) {
    super(message);
  }
}

export interface Envelope {
  result?: unknown[];
  pagination?: { offset: number; limit: number; total: number };
  [field: string]: unknown;
}

const TIMEOUT_MS = 30_000;

export class ApiClient {
  private readonly base: string;

  constructor(url: string, private readonly key: string | undefined) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new CliError(EXIT.usage, `--url: '${url}' is not a URL`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new CliError(EXIT.usage, `--url: '${url}' is not http(s)`);
    this.base = parsed.href.replace(/\/+$/, '');
  }

  async call(method: string, path: string, body?: unknown): Promise<Envelope> {
    if (!this.key) throw new CliError(EXIT.usage, 'TOKENMQ_KEY is not set (the token key to call the API with)');
    const headers: Record<string, string> = { authorization: `FlespiToken ${this.key}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(this.base + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (err) {
      const inner = (err as { cause?: { code?: string; message?: string } }).cause;
      const cause = inner?.code ?? inner?.message ?? (err as Error).message;
      throw new CliError(EXIT.unreachable, `cannot reach ${this.base}: ${cause}`);
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (!res.ok) {
      const reason = (parsed as { errors?: { reason?: string }[] } | undefined)?.errors?.[0]?.reason ?? (text.slice(0, 200) || res.statusText);
      throw new CliError(res.status >= 500 && res.status !== 501 ? EXIT.unreachable : EXIT.refused, `${res.status} ${reason}`, res.status);
    }
    if (typeof parsed !== 'object' || parsed === null) throw new CliError(EXIT.unreachable, `${method} ${path}: the answer is not JSON`);
    return parsed as Envelope;
  }
}
