// The ops console (SPEC §9): static files of the package at `GET /` and
// `/console/*`, no CDN. Every file is read once at registration into a fixed
// map (name → bytes): a request can only name one of them, so no path ever
// reaches the file system (no traversal). The pages set a strict CSP: no
// inline script or style, network only to this origin and the MQTT WebSocket.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';

export interface ConsoleOptions {
  /** CONSOLE_WS_URL (SPEC §1); empty or unset: the page's host with `wsPort` and `/mqtt`. */
  wsUrl?: string;
  /** The WebSocket listener's actual port (WS_PORT). */
  wsPort: number;
  /** The folder holding `src/console/` and `node_modules/` (found from this module when unset). */
  root?: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json; charset=utf-8',
};

/** Browser builds served under /console/vendor/: single-file ES modules with no bare imports. */
const VENDOR: Record<string, string> = {
  'htm-preact.js': 'node_modules/htm/preact/standalone.module.js',
  'mqtt.js': 'node_modules/mqtt/dist/mqtt.esm.js',
};

interface Asset {
  body: Buffer;
  type: string;
}

/** The package root: the first ancestor of this module holding `src/console/index.html` (src/api or dist/src/api). */
export function packageRoot(from = dirname(fileURLToPath(import.meta.url))): string {
  let dir = from;
  for (;;) {
    if (existsSync(join(dir, 'src', 'console', 'index.html'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`console: no src/console/index.html above ${from}`);
    dir = up;
  }
}

function loadAssets(root: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  const consoleDir = join(root, 'src', 'console');
  for (const entry of readdirSync(consoleDir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const full = join(entry.parentPath, entry.name);
    const name = full.slice(consoleDir.length + 1).split('\\').join('/');
    const type = TYPES[name.slice(name.lastIndexOf('.'))];
    if (type) assets.set(name, { body: readFileSync(full), type });
  }
  for (const [name, path] of Object.entries(VENDOR)) {
    assets.set(`vendor/${name}`, { body: readFileSync(join(root, path)), type: TYPES['.js']! });
  }
  return assets;
}

/** A Host header that is a plain host[:port] (it goes into a CSP header and a URL). */
const HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** SPEC §1: CONSOLE_WS_URL, else the page's host with WS_PORT and /mqtt (wss: when the page is https:). */
export function consoleWsUrl(opts: ConsoleOptions, request: FastifyRequest): string {
  if (opts.wsUrl) return opts.wsUrl;
  const host = request.headers.host ?? '';
  const name = HOST.test(host) ? host.replace(/:\d+$/, '') : '127.0.0.1';
  return `${request.protocol === 'https' ? 'wss' : 'ws'}://${name}:${opts.wsPort}/mqtt`;
}

function securityHeaders(reply: FastifyReply, wsUrl: string): FastifyReply {
  return reply.headers({
    'content-security-policy': [
      "default-src 'self'",
      "script-src 'self'",
      "style-src 'self'",
      "img-src 'self' data:",
      `connect-src 'self' ${wsUrl}`,
      "object-src 'none'",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join('; '),
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
  });
}

export const consoleRoutes: FastifyPluginAsync<ConsoleOptions> = async (app, opts) => {
  let assets: Map<string, Asset>;
  try {
    assets = loadAssets(opts.root ?? packageRoot());
  } catch (err) {
    // A package installed without its console files still runs the broker: GET / answers 404 and says why here.
    app.log.error({ err: err instanceof Error ? err.message : String(err) }, 'console files not found: the console is off');
    assets = new Map();
  }

  function send(request: FastifyRequest, reply: FastifyReply, name: string) {
    const asset = assets.get(name);
    if (!asset) {
      return reply.code(404).send({ errors: [{ code: 404, reason: `no console file ${name.slice(0, 64)}` }] });
    }
    // The console's own files change with each release: revalidated (no mix of old and new modules);
    // the vendor builds are large and change only with their package: cached for an hour.
    void reply.header('cache-control', name.startsWith('vendor/') ? 'public, max-age=3600' : 'no-cache');
    return securityHeaders(reply, consoleWsUrl(opts, request)).type(asset.type).send(asset.body);
  }

  const hide = { schema: { hide: true } };
  app.get('/', hide, (request, reply) => send(request, reply, 'index.html'));
  app.get<{ Params: { '*': string } }>('/console/*', hide, (request, reply) => send(request, reply, request.params['*']));
  // The page's settings as a file of its own, not inline script (the CSP forbids it).
  app.get('/console/config.json', hide, (request, reply) => {
    void reply.header('cache-control', 'no-store');
    return securityHeaders(reply, consoleWsUrl(opts, request)).send({ wsUrl: consoleWsUrl(opts, request) });
  });
};
