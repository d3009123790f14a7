// Runs the built server (dist/src/main.js) as a child process, as an operator
// would, and waits for its `listening` line. `npm test` builds first (pretest).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { within } from './mqtt.js';

// This file runs from test/helpers (jest) and from dist/test/helpers (compiled benches).
const here = fileURLToPath(import.meta.url);
const root = here.includes('/dist/') ? here.slice(0, here.lastIndexOf('/dist/')) : resolve(dirname(here), '../..');
export const MAIN = resolve(root, 'dist/src/main.js');

export interface ServerProcess {
  child: ChildProcess;
  ports: { mqtt: number; ws: number; http: number };
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startProcess(env: Record<string, string> = {}): Promise<ServerProcess> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npm run build (npm test does)`);
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', MQTT_PORT: '0', WS_PORT: '0', HTTP_PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ports = await within(new Promise<ServerProcess['ports']>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      for (const line of out.split('\n')) {
        if (!line.includes('"msg":"listening"')) continue;
        const j = JSON.parse(line) as { mqtt: number; ws: number; http: number };
        resolve({ mqtt: j.mqtt, ws: j.ws, http: j.http });
      }
    });
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    void exited.then((code) => reject(new Error(`server exited with ${code} before listening: ${err}`)));
  }), 15_000, 'listening line');
  return {
    child,
    ports,
    stdout: () => out,
    stderr: () => err,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}
