// Listeners (SPEC §1): TCP_NODELAY.
import { afterAll, afterEach, beforeAll, describe, expect, jest, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig } from '../../src/config.js';
import { connect } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('TCP_NODELAY (SPEC §1)', () => {
  // setNoDelay calls with the local port of the socket at call time (a closed socket forgets it).
  const calls: { port: number | undefined; noDelay: boolean | undefined }[] = [];
  const original = Socket.prototype.setNoDelay;
  let srv: TestServer | undefined;
  beforeAll(() => {
    jest.spyOn(Socket.prototype, 'setNoDelay').mockImplementation(function (this: Socket, noDelay?: boolean) {
      calls.push({ port: this.localPort, noDelay });
      return original.call(this, noDelay);
    });
  });
  afterEach(async () => {
    await srv?.close();
    srv = undefined;
  });
  afterAll(() => { jest.restoreAllMocks(); });

  /** setNoDelay calls made on the broker's side of MQTT connections to `port`. */
  const brokerCalls = (port: number): (boolean | undefined)[] => calls.filter((c) => c.port === port).map((c) => c.noDelay);

  test('is off by default: the broker leaves Nagle on for MQTT sockets, like Mosquitto and bare Aedes (SPEC §1)', async () => {
    srv = await startTestServer();
    calls.length = 0;
    const t = await srv.token();
    const c = await connect(srv.mqttUrl, t.key);
    await c.endAsync();
    expect(brokerCalls(srv.ports.mqtt)).toEqual([]);
  });

  test('TCP_NODELAY=true disables Nagle on each MQTT socket (SPEC §1)', async () => {
    srv = await startTestServer({ tcpNoDelay: true });
    calls.length = 0;
    const t = await srv.token();
    const c = await connect(srv.mqttUrl, t.key);
    await c.endAsync();
    expect(brokerCalls(srv.ports.mqtt)).toEqual([true]);
  });

  test('config: TCP_NODELAY defaults to false in config/default.json, reads booleans, and a bad value names the variable (SPEC §1)', () => {
    const file = fileURLToPath(new URL('../../config/default.json', import.meta.url));
    expect((JSON.parse(readFileSync(file, 'utf8')) as { tcpNoDelay: unknown }).tcpNoDelay).toBe(false);
    expect(loadConfig({}, file).tcpNoDelay).toBe(false);
    expect(loadConfig({ TCP_NODELAY: 'true' }, file).tcpNoDelay).toBe(true);
    expect(loadConfig({ TCP_NODELAY: 'off' }, file).tcpNoDelay).toBe(false);
    expect(() => loadConfig({ TCP_NODELAY: 'fast' }, file)).toThrow(ConfigError);
    expect(() => loadConfig({ TCP_NODELAY: 'fast' }, file)).toThrow(/^TCP_NODELAY: /);
  });
});
