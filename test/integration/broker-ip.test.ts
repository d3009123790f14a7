// Client IP (SPEC §4) as the IP whitelist sees it: TCP peer, PROXY protocol,
// and X-Forwarded-For only from a trusted proxy.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { request as httpRequest } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import mqttPacket from 'mqtt-packet';
import { pino } from 'pino';
import { connect, connectPacket, refusedCode, within } from '../helpers/mqtt.js';
import { rest } from '../helpers/rest.js';
import { eventually } from '../helpers/wait.js';
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

  test('a hop written with a port or IPv6 brackets is the client, on WebSocket and REST (SPEC §4)', async () => {
    const t = await srv.token({ ips: '198.51.100.7,2001:db8::7' });
    for (const hop of ['198.51.100.7:4711', '[2001:DB8::7]:443', '[2001:db8::7]']) {
      const headers = { 'X-Forwarded-For': `203.0.113.1, ${hop}` };
      await (await connect(srv.wsUrl, t.key, { wsOptions: { headers }, localAddress: '127.0.0.1' })).endAsync();
      expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: t.key, headers })).status).toBe(200);
    }
    // A client behind the proxy cannot choose its address by writing to the left of the proxy's hop.
    const headers = { 'X-Forwarded-For': '198.51.100.7:1, 203.0.113.1:2' };
    expect((await rest(srv.httpUrl, 'GET', '/auth/info', { key: t.key, headers })).status).toBe(401);
  });

  test('the same header from an untrusted peer is ignored', async () => {
    const t = await srv.token({ ips: '192.0.2.*' });
    const headers = { 'X-Forwarded-For': '192.0.2.10' };
    expect(await refusedCode(srv.wsUrl, t.key, { wsOptions: { headers, localAddress: '127.0.0.2' } })).toBe(5);
    const peer = await srv.token({ ips: '127.0.0.2' });
    await (await connect(srv.wsUrl, peer.key, { wsOptions: { headers, localAddress: '127.0.0.2' } })).endAsync();
  });
});

// SPEC §1, §4: with PROXY_PROTOCOL only a peer in TRUST_PROXY may name the client.
// 127.0.0.2 plays the load balancer; 127.0.0.1 is anyone else who reaches the port.
describe('PROXY protocol on the TCP listener', () => {
  const LB = '127.0.0.2';
  const STRANGER = '127.0.0.1';
  const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
  const lines: string[] = [];
  let srv: TestServer;
  beforeAll(async () => {
    const sink = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(chunk.toString()); done(); } });
    srv = await startTestServer({
      proxyProtocol: true, trustProxy: cidrBlockList([`${LB}/32`]), authFailLimit: 3, authFailWindow: 60,
      proxyHeaderTimeoutMs: 300, log: pino({ level: 'info' }, sink),
    });
  });
  afterAll(async () => { await srv.close(); });

  const v1 = (ip: string): Buffer => Buffer.from(`PROXY ${ip.includes(':') ? 'TCP6' : 'TCP4'} ${ip} ${ip.includes(':') ? '::1' : '10.0.0.1'} 5555 1883\r\n`);
  const v2 = (a: number[]): Buffer => Buffer.from([...SIG, 0x21, 0x11, 0x00, 0x0c, ...a, 10, 0, 0, 1, 0x15, 0xb3, 0x07, 0x5b]);

  interface Outcome { code: number | null; socket: Socket }
  /**
   * Opens a socket from `from`, writes `bytes` (in `pieces` writes, paced, when given),
   * and resolves with the CONNACK return code, or null when the broker closes first.
   */
  function exchange(bytes: Buffer, from: string, pieces = 1): Promise<Outcome> {
    return within(new Promise<Outcome>((resolve) => {
      const socket = netConnect({ port: srv.ports.mqtt, host: '127.0.0.1', localAddress: from });
      const parser = mqttPacket.parser({ protocolVersion: 4 });
      parser.on('packet', (p) => {
        if (p.cmd === 'connack') resolve({ code: (p as mqttPacket.IConnackPacket).returnCode ?? null, socket });
      });
      socket.on('data', (d) => parser.parse(d));
      socket.on('close', () => resolve({ code: null, socket }));
      socket.on('error', () => {});
      socket.on('connect', async () => {
        socket.setNoDelay(true);
        const size = Math.ceil(bytes.length / pieces);
        for (let i = 0; i < bytes.length && !socket.destroyed; i += size) {
          socket.write(bytes.subarray(i, i + size));
          // Pacing only, so the pieces leave as separate segments; nothing is asserted on time.
          if (pieces > 1) await new Promise((r) => setTimeout(r, 5));
        }
      });
    }), 5000, 'CONNACK or close through PROXY');
  }

  async function connackThrough(header: Buffer, key: string, from = LB): Promise<number | null> {
    const { code, socket } = await exchange(Buffer.concat([header, connectPacket({ username: key })]), from);
    socket.destroy();
    return code;
  }

  const logged = (text: string) => eventually(() => lines.find((l) => l.includes(text)), 5000, `log line '${text}'`);

  test('a PROXY header from a peer outside TRUST_PROXY is not believed: closed before CONNACK, logged (SPEC §1)', async () => {
    const t = await srv.token({ ips: '203.0.113.5' });
    expect(await connackThrough(v1('203.0.113.5'), t.key, STRANGER)).toBeNull();
    expect(await connackThrough(v2([203, 0, 113, 5]), t.key, STRANGER)).toBeNull();
    expect(srv.broker.registry.forToken(t.id)).toHaveLength(0);
    const line = JSON.parse(await logged('outside TRUST_PROXY')) as { ip: string; level: number };
    expect(line.ip).toBe(STRANGER);
    // Closed without a byte being read: a peer that sends nothing is closed as well, at once.
    const silent = await exchange(Buffer.alloc(0), STRANGER);
    expect(silent.code).toBeNull();
    expect(lines.filter((l) => l.includes('PROXY header timeout'))).toHaveLength(0);
  });

  test('a trusted peer: the header address is the client, for `ips` and the listing (SPEC §4)', async () => {
    const t = await srv.token({ ips: '198.51.100.7' });
    expect(await connackThrough(v1('198.51.100.7'), t.key)).toBe(0);
    expect(await connackThrough(v1('198.51.100.8'), t.key)).toBe(5);
    const { code, socket } = await exchange(Buffer.concat([v1('198.51.100.7'), connectPacket({ username: t.key })]), LB);
    expect(code).toBe(0);
    const [s] = srv.broker.registry.forToken(t.id);
    expect(srv.broker.registry.view(s!)).toMatchObject({ ip: '198.51.100.7', transport: 'tcp' });
    socket.destroy();
  });

  test('v2: the address in the binary header is the client; IPv4-mapped IPv6 is IPv4', async () => {
    const t = await srv.token({ ips: '198.51.100.0/24' });
    expect(await connackThrough(v2([198, 51, 100, 20]), t.key)).toBe(0);
    expect(await connackThrough(v1('::ffff:198.51.100.21'), t.key)).toBe(0);
    expect(await connackThrough(v2([198, 51, 101, 20]), t.key)).toBe(5);
  });

  test('v2 LOCAL (a balancer health check) keeps the balancer as the client', async () => {
    const local = Buffer.from([...SIG, 0x20, 0x00, 0x00, 0x00]);
    expect(await connackThrough(local, (await srv.token({ ips: LB })).key)).toBe(0);
    expect(await connackThrough(local, (await srv.token({ ips: '198.51.100.7' })).key)).toBe(5);
  });

  test('a header split across TCP segments is reassembled', async () => {
    const t = await srv.token({ ips: '198.51.100.30' });
    const header = v1('198.51.100.30');
    const { code, socket } = await exchange(Buffer.concat([header, connectPacket({ username: t.key })]), LB, header.length);
    socket.destroy();
    expect(code).toBe(0);
  });

  test('a connection without a header, an unfinished one (slow-loris) or an oversized one is dropped', async () => {
    const t = await srv.token();
    expect(await connackThrough(Buffer.alloc(0), t.key)).toBeNull();
    // Never finished: dropped after the header timeout.
    expect((await exchange(Buffer.from('PROXY TCP4 198.51.100.7 10.0'), LB)).code).toBeNull();
    await logged('PROXY header timeout');
    // A v2 header announcing 65535 bytes is refused from its 16-byte preamble.
    expect((await exchange(Buffer.from([...SIG, 0x21, 0x11, 0xff, 0xff]), LB)).code).toBeNull();
    await logged('header too long');
    expect(await connackThrough(Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`), t.key)).toBeNull();
    await logged('no CRLF');
  });

  test('the brute-force guard counts the header address of a trusted peer only (SPEC §4)', async () => {
    const wrong = 'x'.repeat(64);
    // An untrusted peer naming a victim: never reaches authentication, never counted.
    for (let i = 0; i < 4; i++) expect(await connackThrough(v1('192.0.2.66'), wrong, STRANGER)).toBeNull();
    expect(srv.limiter.blocked('192.0.2.66', Date.now())).toBe(false);
    const victim = await srv.token({ ips: '192.0.2.66' });
    expect(await connackThrough(v1('192.0.2.66'), victim.key)).toBe(0);

    // Through the balancer: the header address is counted, not the balancer's.
    for (let i = 0; i < 3; i++) expect(await connackThrough(v1('192.0.2.77'), wrong)).toBe(4);
    const t = await srv.token();
    expect(await connackThrough(v1('192.0.2.77'), t.key)).toBe(5);
    expect(await connackThrough(v1('192.0.2.78'), t.key)).toBe(0);
    expect(srv.limiter.blocked(LB, Date.now())).toBe(false);
  });

  test('IPv6 clients are counted per /64 (SPEC §4)', async () => {
    const wrong = 'y'.repeat(64);
    for (const ip of ['2001:db8:77:1::1', '2001:db8:77:1::2', '2001:db8:77:1:ffff:ffff:ffff:ffff']) {
      expect(await connackThrough(v1(ip), wrong)).toBe(4);
    }
    const t = await srv.token();
    expect(await connackThrough(v1('2001:db8:77:1:abcd::9'), t.key)).toBe(5);
    expect(await connackThrough(v1('2001:db8:77:2::1'), t.key)).toBe(0);
  });

  test('REST and MQTT count one client under one key: X-Forwarded-For forms, PROXY forms (SPEC §4)', async () => {
    const wrong = 'z'.repeat(64);
    // REST through the balancer, the client spelled as IPv4-mapped IPv6 with a port.
    for (let i = 0; i < 3; i++) expect((await restFrom(LB, '/auth/info', wrong, '[::FFFF:192.0.2.150]:5000')).status).toBe(401);
    const t = await srv.token();
    expect(await connackThrough(v1('192.0.2.150'), t.key)).toBe(5);
    expect((await restFrom(LB, '/auth/info', t.key, '192.0.2.150')).status).toBe(429);
    // An IPv6 /64 over REST.
    for (let i = 1; i <= 3; i++) expect((await restFrom(LB, '/auth/info', wrong, `2001:db8:5:6::${i}`)).status).toBe(401);
    expect((await restFrom(LB, '/auth/info', t.key, '2001:db8:5:6:ffff::1')).status).toBe(429);
    expect((await restFrom(LB, '/auth/info', t.key, '2001:db8:5:7::1')).status).toBe(200);
  });

  function restFrom(localAddress: string, path: string, key: string, forwarded: string): Promise<{ status: number }> {
    return within(new Promise((resolve, reject) => {
      const req = httpRequest({
        host: '127.0.0.1', port: srv.ports.http, path, localAddress,
        headers: { authorization: `FlespiToken ${key}`, 'x-forwarded-for': forwarded, connection: 'close' },
      }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
      });
      req.on('error', reject);
      req.end();
    }), 5000, 'REST answer');
  }
});
