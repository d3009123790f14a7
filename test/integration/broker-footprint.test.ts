// What a live session leaves in the broker's memory (issue 9). The key is the
// one thing that must not stay: mqtt-packet's parser keeps the CONNECT packet for
// the whole connection (its `settings`), username and password included.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { Client } from 'aedes';
import { connect } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('session footprint', () => {
  let srv: TestServer;
  beforeAll(async () => { srv = await startTestServer(); });
  afterAll(() => srv.close());

  test('the token key does not stay in memory with a live session (SPEC §2: only its SHA-256 is kept)', async () => {
    const t = await srv.token();
    const withUsername = await connect(srv.mqttUrl, t.key, { clientId: 'footprint-user' });
    const withPassword = await connect(srv.mqttUrl, '', { clientId: 'footprint-pass', password: t.key });
    try {
      for (const id of ['footprint-user', 'footprint-pass']) {
        const [session] = srv.broker.registry.byClientId(id);
        const parser = (session!.client as Client & { _parser: { settings: { username?: unknown; password?: unknown; clientId?: unknown } } })._parser;
        expect(parser.settings.clientId).toBe(id); // it is the CONNECT packet
        expect(parser.settings.username).toBeUndefined();
        expect(parser.settings.password).toBeUndefined();
      }
    } finally {
      await Promise.all([withUsername.endAsync(), withPassword.endAsync()]);
    }
  });
});
