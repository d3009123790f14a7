// Client IP (SPEC §4) as the IP whitelist sees it: TCP peer, PROXY protocol,
// and X-Forwarded-For only from a trusted proxy.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { connect as netConnect } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { connect, connectPacket, refusedCode, within } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { cidrBlockList } from '../../src/config.js';

describe('IP whitelist on TCP', () => {
  let srv: TestServer;
  beforeAll(async () => { srv = await startTestServer(); });
  afterAll(async () => { await srv.close(); });

  test('judges the TCP peer: 127.0.0.2 admitted by 127.0.0.2 and refused by 127.0.0.1', async () => {
    const t = await srv.token({ ips: '127.0.0.2' });
    await (await connect(srv.mqttUrl, t.key, { localAddress: '127.0.0.2' })).endAsync();
    expect(await refusedCode(srv.mqttUrl, t.key, { localAddress: '127.0.0.1' })).toBe(5);
  });

  test('the session listing reports the address it was judged by', async () => {
    const t = await srv.token({ ips: '127.0.0.3' });
    const c = await connect(srv.mqttUrl, t.key, { localAddress: '127.0.0.3' });
    const [s] = srv.broker.registry.forToken(t.id);
    expect(srv.broker.registry.view(s!)).toMatchObject({ ip: '127.0.0.3', transport: 'tcp', token_id: t.id });
    await c.endAsync();
  });
});

describe('X-Forwarded-For over WebSocket', () => {
  let srv: TestServer;
  beforeAll(async () => { srv = await startTestServer({ trustProxy: cidrBlockList(['127.0.0.1/32']) }); });
  afterAll(async () => { await srv.close(); });

  test('behind a trusted proxy, the right-most untrusted hop is the client', async () => {
    const t = await srv.token({ ips: '192.0.2.*' });
    const headers = { 'X-Forwarded-For': '203.0.113.9, 192.0.2.10' };
    await (await connect(srv.wsUrl, t.key, { wsOptions: { headers }, localAddress: '127.0.0.1' })).endAsync();
    const other = await srv.token({ ips: '203.0.113.9' });
    expect(await refusedCode(srv.wsUrl, other.key, { wsOptions: { headers }, localAddress: '127.0.0.1' })).toBe(5);
  });

  test('the same header from an untrusted peer is ignored', async () => {
    const t = await srv.token({ ips: '192.0.2.*' });
    const headers = { 'X-Forwarded-For': '192.0.2.10' };
    expect(await refusedCode(srv.wsUrl, t.key, { wsOptions: { headers, localAddress: '127.0.0.2' } })).toBe(5);
    const peer = await srv.token({ ips: '127.0.0.2' });
    await (await connect(srv.wsUrl, peer.key, { wsOptions: { headers, localAddress: '127.0.0.2' } })).endAsync();
  });
});

describe('PROXY protocol on the TCP listener', () => {
  let srv: TestServer;
  beforeAll(async () => { srv = await startTestServer({ proxyProtocol: true }); });
  afterAll(async () => { await srv.close(); });

  function connackThrough(header: Buffer, key: string): Promise<number | null> {
    return within(new Promise((resolve) => {
      const socket = netConnect({ port: srv.ports.mqtt, host: '127.0.0.1' });
      const parser = mqttPacket.parser({ protocolVersion: 4 });
      parser.on('packet', (p) => {
        if (p.cmd === 'connack') {
          resolve((p as mqttPacket.IConnackPacket).returnCode ?? null);
          socket.destroy();
        }
      });
      socket.on('data', (d) => parser.parse(d));
      socket.on('close', () => resolve(null));
      socket.on('error', () => {});
      socket.on('connect', () => socket.write(Buffer.concat([header, connectPacket({ username: key })])));
    }), 5000, 'CONNACK through PROXY');
  }

  test('v1: the address in the header is the client', async () => {
    const t = await srv.token({ ips: '198.51.100.7' });
    expect(await connackThrough(Buffer.from('PROXY TCP4 198.51.100.7 10.0.0.1 5555 1883\r\n'), t.key)).toBe(0);
    expect(await connackThrough(Buffer.from('PROXY TCP4 198.51.100.8 10.0.0.1 5555 1883\r\n'), t.key)).toBe(5);
  });

  test('v2: the address in the binary header is the client', async () => {
    const t = await srv.token({ ips: '198.51.100.0/24' });
    const header = Buffer.concat([
      Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c]),
      Buffer.from([198, 51, 100, 20, 10, 0, 0, 1, 0x15, 0xb3, 0x07, 0x5b]),
    ]);
    expect(await connackThrough(header, t.key)).toBe(0);
  });

  test('a connection without a header is dropped', async () => {
    const t = await srv.token();
    expect(await connackThrough(Buffer.alloc(0), t.key)).toBeNull();
  });
});
