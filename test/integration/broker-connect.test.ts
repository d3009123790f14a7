// CONNECT handling of SPEC §4 over real sockets: every CONNACK code with its
// cause, the credential forms, odd packets and the brute-force guard.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { closed, collect, connect, connectPacket, rawExchange, refusedCode, within } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startRedisServer } from '../helpers/redis-server.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import type { TokenStore } from '../../src/store/types.js';
import { pino } from 'pino';
import { eventually } from '../helpers/wait.js';

const now = (): number => Math.floor(Date.now() / 1000);

describe('CONNECT return codes (SPEC §4)', () => {
  let srv: TestServer;
  beforeAll(async () => { srv = await startTestServer(); });
  afterAll(async () => { await srv.close(); });

  test('accepts a valid token as username, with or without the FlespiToken prefix', async () => {
    const t = await srv.token();
    await (await connect(srv.mqttUrl, t.key)).endAsync();
    await (await connect(srv.mqttUrl, `FlespiToken ${t.key}`)).endAsync();
  });

  test('takes the key from the password when the username is empty', async () => {
    const t = await srv.token();
    const client = await connect(srv.mqttUrl, '', { password: t.key });
    await client.endAsync();
  });

  test('password is ignored when a username is given', async () => {
    const t = await srv.token();
    await (await connect(srv.mqttUrl, t.key, { password: 'whatever' })).endAsync();
  });

  test('4 for an unknown token', async () => {
    expect(await refusedCode(srv.mqttUrl, 'A'.repeat(64))).toBe(4);
  });

  test('4 for a malformed token and for no credentials at all', async () => {
    expect(await refusedCode(srv.mqttUrl, 'not a key!')).toBe(4);
    expect(await refusedCode(srv.mqttUrl, undefined)).toBe(4);
  });

  test('4 for a token whose time ran out', async () => {
    const expired = await srv.token({ expire: now() + 1, ttl: 0 });
    await within(new Promise<void>((resolve) => {
      const off = srv.store.onChange((id, kind) => { if (id === expired.id && kind === 'deleted') { off(); resolve(); } });
    }), 4000, 'expiry');
    expect(await refusedCode(srv.mqttUrl, expired.key)).toBe(4);
  });

  test('5 for a disabled token', async () => {
    const t = await srv.token({ enabled: false });
    expect(await refusedCode(srv.mqttUrl, t.key)).toBe(5);
  });

  test('5 for a client address outside ips, accepted when inside', async () => {
    const outside = await srv.token({ ips: '10.*' });
    expect(await refusedCode(srv.mqttUrl, outside.key)).toBe(5);
    const inside = await srv.token({ ips: '10.*, 127.0.0.*' });
    await (await connect(srv.mqttUrl, inside.key)).endAsync();
  });

  test('5 for an ACL token without MQTT rights', async () => {
    const t = await srv.token({ access: { type: 2, acl: [{ uri: 'mqtt/sessions', methods: ['GET'] }] } });
    expect(await refusedCode(srv.mqttUrl, t.key)).toBe(5);
  });

  test('5 for a will topic the token may not publish; accepted for an allowed one', async () => {
    const acl = { type: 2 as const, acl: [{ uri: 'mqtt', topic: 'devices/1/#', actions: ['publish' as const] }] };
    const t = await srv.token({ access: acl });
    expect(await refusedCode(srv.mqttUrl, t.key, { will: { topic: 'other/lwt', payload: Buffer.from('x'), qos: 0, retain: false } })).toBe(5);
    const ok = await connect(srv.mqttUrl, t.key, { will: { topic: 'devices/1/lwt', payload: Buffer.from('x'), qos: 0, retain: false } });
    await ok.endAsync();
  });

  test('2 for an empty client id with clean session 0 (MQTT-3.1.3-8)', async () => {
    const t = await srv.token();
    // mqtt-packet refuses to build this packet: build a clean one and clear the clean-session flag.
    const pkt = connectPacket({ clientId: '', clean: true, username: t.key });
    const flags = 2 + 6 + 1; // fixed header (2 bytes here) + "MQTT" string + protocol level
    expect(pkt[flags]! & 0x02).toBe(0x02);
    pkt[flags] = pkt[flags]! & ~0x02;
    const res = await rawExchange(srv.ports.mqtt, pkt);
    expect(res.packet).toMatchObject({ cmd: 'connack', returnCode: 2 });
    expect(res.closed).toBe(true);
  });

  test('an empty client id with clean session 1 is accepted', async () => {
    const t = await srv.token();
    const client = await connect(srv.mqttUrl, t.key, { clientId: '', clean: true });
    await client.endAsync();
  });
});

describe('CONNACK 3 when the token store cannot be reached (SPEC §4, §7)', () => {
  test('a Redis store whose server is gone answers 3, and 0 again once it is back', async () => {
    const redis = await startRedisServer();
    const store = new RedisStore({ url: redis.url, prefix: 'connack3:', logger: pino({ level: 'silent' }) });
    const srv = await startTestServer({ store });
    try {
      const t = await srv.token();
      await redis.stop();
      expect(await refusedCode(srv.mqttUrl, t.key)).toBe(3);
      const again = await startRedisServer({ port: redis.port });
      try {
        // ioredis reconnects by itself; wait for the store to answer rather than sleeping.
        await eventually(() => store.ping().then(() => true, () => false), 10_000, 'redis back', 100);
        // The data was in the old server's memory only (--save ""): a new token proves the path.
        const t2 = await srv.token();
        await (await connect(srv.mqttUrl, t2.key)).endAsync();
      } finally {
        await again.stop();
      }
    } finally {
      await srv.close();
    }
  });
});

describe('odd input never crashes the broker (SPEC §4)', () => {
  let srv: TestServer;
  let good: string;
  beforeAll(async () => {
    srv = await startTestServer();
    good = (await srv.token()).key;
  });
  afterAll(async () => { await srv.close(); });

  async function stillServes(): Promise<void> {
    await (await connect(srv.mqttUrl, good)).endAsync();
  }

  test('a 64 KiB username (the MQTT maximum, 65535 bytes) is refused with 4', async () => {
    const res = await rawExchange(srv.ports.mqtt, connectPacket({ username: 'x'.repeat(65535) }));
    expect(res.packet).toMatchObject({ cmd: 'connack', returnCode: 4 });
    expect(res.closed).toBe(true);
    await stillServes();
  });

  test('a CONNECT announcing a 256 MB body is dropped as soon as its header is read, and others keep connecting', async () => {
    const res = await rawExchange(srv.ports.mqtt, Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f, 0x00]), 2000);
    expect(res.closed).toBe(true);
    await stillServes();
  });

  test('a PUBLISH over MAX_PACKET_SIZE closes the connection; one under it is delivered', async () => {
    const small = await startTestServer({ maxPacketSize: 4096 });
    try {
      const key = (await small.token()).key;
      const sub = await connect(small.mqttUrl, key);
      const inbox = collect(sub);
      await sub.subscribeAsync('big/#');
      const pub = await connect(small.mqttUrl, key);
      await pub.publishAsync('big/ok', Buffer.alloc(3000), { qos: 1 });
      expect((await inbox.next()).topic).toBe('big/ok');
      const gone = closed(pub);
      pub.publish('big/no', Buffer.alloc(5000), { qos: 0 });
      await gone;
      await sub.endAsync();
    } finally {
      await small.close();
    }
  });

  test('a non-UTF-8 username is refused with 4', async () => {
    const pkt = connectPacket({ username: 'placeholder' });
    // Patch the username bytes in place: 0xff is never valid UTF-8.
    const at = pkt.indexOf(Buffer.from('placeholder'));
    Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x90]).copy(pkt, at);
    const res = await rawExchange(srv.ports.mqtt, pkt);
    expect(res.closed).toBe(true);
    if (res.packet) expect(res.packet).toMatchObject({ cmd: 'connack', returnCode: 4 });
    await stillServes();
  });

  test('a garbage byte stream is dropped', async () => {
    const res = await rawExchange(srv.ports.mqtt, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\xff\xff\xff'));
    expect(res.closed).toBe(true);
    await stillServes();
  });

  test('a CONNECT with protocol level 5 is refused cleanly (return code 1)', async () => {
    const res = await rawExchange(srv.ports.mqtt, connectPacket({ protocolVersion: 5 as 4, username: good }));
    expect(res.closed).toBe(true);
    expect(res.packet).toMatchObject({ cmd: 'connack', returnCode: 1 });
    await stillServes();
  });

  test('a PUBLISH before CONNECT is dropped', async () => {
    const pub = Buffer.from([0x30, 0x05, 0x00, 0x01, 0x61, 0x68, 0x69]);
    const res = await rawExchange(srv.ports.mqtt, pub);
    expect(res.closed).toBe(true);
    await stillServes();
  });
});

describe('brute-force guard (SPEC §4)', () => {
  /** A real MemoryStore that counts key look-ups (findByKey reads through findByKeyNow): the guard must stop asking it. */
  class CountingStore extends MemoryStore {
    lookups = 0;
    override findByKeyNow(key: string) {
      this.lookups++;
      return super.findByKeyNow(key);
    }
  }

  test('after the limit, wrong keys from one address are refused without store look-ups; other clients keep connecting', async () => {
    const store = new CountingStore();
    const srv = await startTestServer({ store: store as TokenStore, authFailLimit: 10, authFailWindow: 60 });
    try {
      const good = await srv.token();
      const attempts = 1000;
      const codes = new Map<number, number>();
      let goodConnects = 0;
      const batch = 50;
      for (let i = 0; i < attempts; i += batch) {
        const wave = Array.from({ length: batch }, (_, j) =>
          refusedCode(srv.mqttUrl, `${'B'.repeat(60)}${String(i + j).padStart(4, '0')}`, { localAddress: '127.0.0.2' }));
        const results = await Promise.all(wave);
        for (const c of results) codes.set(c, (codes.get(c) ?? 0) + 1);
        // A good client from 127.0.0.1 connects throughout.
        await (await connect(srv.mqttUrl, good.key, { localAddress: '127.0.0.1' })).endAsync();
        goodConnects++;
      }
      expect(goodConnects).toBe(attempts / batch);
      // The first `limit` wrong keys reach the store (4); the rest are refused before it (5).
      expect(codes.get(4)).toBe(10);
      expect(codes.get(5)).toBe(attempts - 10);
      // look-ups: 10 wrong keys + one per good connect.
      expect(store.lookups).toBe(10 + goodConnects);
      expect(srv.broker.stats.connects.rate_limited).toBe(attempts - 10);
    } finally {
      await srv.close();
    }
  });

  test('refusals for other causes (disabled) do not count', async () => {
    const srv = await startTestServer({ authFailLimit: 3, authFailWindow: 60 });
    try {
      const disabled = await srv.token({ enabled: false });
      for (let i = 0; i < 6; i++) expect(await refusedCode(srv.mqttUrl, disabled.key)).toBe(5);
      expect(srv.broker.stats.connects.rate_limited).toBe(0);
      expect(srv.limiter.blocked('127.0.0.1', Date.now())).toBe(false);
    } finally {
      await srv.close();
    }
  });
});
