// The server as a process (SPEC §1): configuration errors, the master token
// banner, MASTER_TOKEN, the listening line, logs without keys, and SIGTERM.
import { describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { connect, refusedCode, within } from '../helpers/mqtt.js';
import { MAIN, startProcess } from '../helpers/process.js';
import { eventually } from '../helpers/wait.js';

describe('tokenmq process', () => {
  test.each([
    ['MQTT_PORT', 'abc'],
    ['LOG_LEVEL', 'loud'],
    ['TRUST_PROXY', '10.0.0.0/99'],
    ['REDIS_URL', 'http://x'],
  ])('a bad %s stops start-up with one line naming it, exit code 1', (name, value) => {
    const res = spawnSync(process.execPath, [MAIN], { env: { PATH: process.env.PATH ?? '', [name]: value }, encoding: 'utf8', timeout: 10_000 });
    expect(res.status).toBe(1);
    const lines = res.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(name);
  });

  test('PROXY_PROTOCOL without TRUST_PROXY stops start-up with one line naming both, exit code 1 (SPEC §1)', () => {
    const env = { PATH: process.env.PATH ?? '', PROXY_PROTOCOL: 'true', HOST: '127.0.0.1', MQTT_PORT: '0', WS_PORT: '0', HTTP_PORT: '0' };
    // SIGKILL: a server that wrongly starts must not outlive the timeout (SIGTERM with its stdout closed can hang in pino's exit flush).
    const res = spawnSync(process.execPath, [MAIN], { env, encoding: 'utf8', timeout: 10_000, killSignal: 'SIGKILL' });
    expect(res.status).toBe(1);
    const lines = res.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('PROXY_PROTOCOL');
    expect(lines[0]).toContain('TRUST_PROXY');
  });

  test('a NODE_ID with a colon stops start-up with one line naming NODE_ID, exit code 1 (SPEC §6)', () => {
    // aedes-persistence-redis finds a dead node's wills by splitting `will:<node>:<client>` on ':'.
    const env = { PATH: process.env.PATH ?? '', NODE_ID: 'rack1:node2', HOST: '127.0.0.1', MQTT_PORT: '0', WS_PORT: '0', HTTP_PORT: '0' };
    const res = spawnSync(process.execPath, [MAIN], { env, encoding: 'utf8', timeout: 10_000, killSignal: 'SIGKILL' });
    expect(res.status).toBe(1);
    const lines = res.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('NODE_ID');
  });

  test('first start prints a master key once, which works; SIGTERM exits 0', async () => {
    const srv = await startProcess();
    try {
      // The banner is on stderr, the listening line on stdout: either pipe may be read first.
      const banner = await eventually(() => (/will not\s+be shown again/.test(srv.stderr()) ? srv.stderr() : null), 5000, 'master key banner');
      const key = /^\s+([A-Za-z0-9]{64})$/m.exec(banner)?.[1];
      expect(key).toBeDefined();
      const c = await connect(`mqtt://127.0.0.1:${srv.ports.mqtt}`, key!);
      const res = await fetch(`http://127.0.0.1:${srv.ports.http}/health`);
      expect(res.status).toBe(200);
      // Failed attempts are logged with their reason, never with the key.
      // A wrong key: the last character changed (a fixed 'X' was the key itself 1 time in 62).
      const wrong = `${key!.slice(0, 63)}${key!.endsWith('X') ? 'Y' : 'X'}`;
      expect(await refusedCode(`mqtt://127.0.0.1:${srv.ports.mqtt}`, wrong)).toBe(4);
      await c.endAsync();
      const code = await within(srv.stop('SIGTERM'), 10_000, 'exit after SIGTERM');
      expect(code).toBe(0);
      const logs = srv.stdout();
      expect(logs).toContain('"msg":"stopped"');
      expect(logs).toContain('connect refused');
      expect(logs).not.toContain(key!);
      expect(logs).not.toContain(key!.slice(0, 63));
    } finally {
      await srv.stop('SIGKILL');
    }
  });

  test('MASTER_TOKEN makes a master token with exactly that key and no banner', async () => {
    const key = 'Mastermastermaster0123456789';
    const srv = await startProcess({ MASTER_TOKEN: key });
    try {
      expect(srv.stderr()).not.toContain('will not');
      const c = await connect(`mqtt://127.0.0.1:${srv.ports.mqtt}`, key);
      await c.endAsync();
      expect(await within(srv.stop('SIGINT'), 10_000, 'exit after SIGINT')).toBe(0);
    } finally {
      await srv.stop('SIGKILL');
    }
  });
});
