// SPEC §2 as an operator sees it: the built server on Redis, a token record
// corrupted behind its back, one MQTT CONNECT. The process must refuse that
// CONNECT (CONNACK 5), log an error naming the token id (never the key), and go
// on serving. Before, the compile error became an unhandled rejection: exit 1.
import { describe, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { connect, refusedCode } from '../helpers/mqtt.js';
import { startProcess } from '../helpers/process.js';
import { rest } from '../helpers/rest.js';

describe('tokenmq process with an unreadable token (SPEC §2)', () => {
  test('one CONNECT of a token whose ips do not compile: CONNACK 5, the process lives on and serves', async () => {
    const prefix = `corrupt${randomBytes(4).toString('hex')}:`;
    const masterKey = `Master${randomBytes(16).toString('hex')}`;
    const srv = await startProcess({ REDIS_URL: process.env.REDIS_URL!, REDIS_PREFIX: prefix, MASTER_TOKEN: masterKey });
    const redis = new Redis(process.env.REDIS_URL!);
    try {
      const http = `http://127.0.0.1:${srv.ports.http}`;
      const mqttUrl = `mqtt://127.0.0.1:${srv.ports.mqtt}`;
      const created = await rest(http, 'POST', '/platform/tokens', {
        key: masterKey, body: { ttl: 3600, access: { type: 2, acl: [{ uri: 'mqtt', topic: 'a/#', actions: ['publish'] }] } },
      });
      expect(created.status).toBe(200);
      const { id, key } = created.body.result[0] as { id: number; key: string };
      expect(await redis.hset(`${prefix}token:${id}`, 'ips', '10.0.0.0/33')).toBe(0);

      const code = await refusedCode(mqttUrl, key).catch(async (err: unknown) => {
        await new Promise((resolve) => setTimeout(resolve, 200));
        throw new Error(`no CONNACK (${String(err)}); server exit code: ${srv.child.exitCode ?? 'still running'}`);
      });
      expect(code).toBe(5);

      // Still alive and serving, MQTT and REST.
      const c = await connect(mqttUrl, masterKey);
      await c.publishAsync('a/x', 'alive', { qos: 1 });
      await c.endAsync();
      expect((await rest(http, 'GET', '/auth/info', { key: masterKey })).status).toBe(200);
      expect((await rest(http, 'GET', '/auth/info', { key })).status).toBe(401);
      expect(srv.child.exitCode).toBeNull();
      const errors = srv.stdout().split('\n').filter((l) => l.includes('"level":50') && l.includes(`"tokenId":${id}`));
      expect(errors.length).toBeGreaterThan(0);
      expect(srv.stdout()).not.toContain(key);
    } finally {
      redis.disconnect();
      await srv.stop('SIGKILL');
      const cleanup = new Redis(process.env.REDIS_URL!);
      const keys = await cleanup.keys(`${prefix}*`);
      if (keys.length) await cleanup.del(...keys);
      cleanup.disconnect();
    }
  });
});
