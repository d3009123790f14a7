// A session closed mid-connect (socket destroyed, kicked, token deleted)
// between authenticate and Aedes registering the client leaves nothing behind:
// no ghost in Aedes' clients, the SessionRegistry or the cluster directory
// (SPEC §5 listings, §6), and no persisted will that outlives it, which a later
// sweep of this node's wills would publish a second time (SPEC §4: a will goes
// out once, when the session ends). Cluster mode (aedes-persistence-redis) in
// process; the will write of the CONNECT is held so that the close lands in
// that window.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { Redis } from 'ioredis';
import type { MqttClient } from 'mqtt';
import { connect as netConnect, type Socket } from 'node:net';
import type { RedisStore } from '../../src/store/redis-store.js';
import { Gate } from '../helpers/held-store.js';
import { clientId, collect, connect, connectPacket, within } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { eventually } from '../helpers/wait.js';

interface WillPersistence {
  putWill(client: { id: string }, packet: unknown): Promise<unknown>;
  delWill(client: { id: string; brokerId: string }): Promise<unknown>;
}

describe('a session closed between authenticate and registration leaves nothing behind (cluster mode)', () => {
  let srv: TestServer;
  let redis: Redis;
  let prefix: string;
  let master: MqttClient;
  let persistence: WillPersistence;
  let putGate: Gate | null = null;
  let delWillsDone = 0;

  beforeAll(async () => {
    srv = await startTestServer({ store: 'redis', cluster: true });
    prefix = (srv.store as RedisStore).prefix;
    redis = new Redis(process.env.REDIS_URL!);
    master = await connect(srv.mqttUrl, (await srv.token({ access: { type: 1 } })).key);
    await master.subscribeAsync('lwt/#', { qos: 1 });
    persistence = (srv.broker.aedes as unknown as { persistence: WillPersistence }).persistence;
    const putWill = persistence.putWill.bind(persistence);
    const delWill = persistence.delWill.bind(persistence);
    persistence.putWill = async (client, packet) => {
      if (putGate) await putGate.pass();
      return putWill(client, packet);
    };
    persistence.delWill = async (client) => {
      try {
        return await delWill(client);
      } finally {
        delWillsDone++;
      }
    };
  });
  afterAll(async () => {
    await master.endAsync(true);
    redis.disconnect();
    await srv.close();
  });

  const willKey = (id: string): string => `${prefix}aedes:will:${srv.nodeId}:${encodeURIComponent(id)}`;

  test.each([
    ['its socket is destroyed', (_: TestServer, socket: Socket) => { socket.destroy(); }],
    ['it is kicked', (s: TestServer, _socket: Socket, id: string) => { s.broker.kick(id, 'kicked'); }],
    ['its token is deleted', async (s: TestServer, _socket: Socket, _id: string, tokenId: number) => { await s.store.delete([tokenId]); }],
  ] as const)('%s while its will is being stored', async (_what, end) => {
    const t = await srv.token({ access: { type: 2, acl: [{ uri: 'mqtt', topic: 'lwt/#', actions: ['publish'] }] } });
    const id = clientId('mid');
    const inbox = collect(master);
    putGate = new Gate();
    const delWillsBefore = delWillsDone;
    const socket = netConnect({ host: '127.0.0.1', port: srv.ports.mqtt });
    socket.on('error', () => {});
    const failed = within(new Promise<void>((resolve) => {
      const onError = (client: { id: string }): void => {
        if (client.id !== id) return;
        srv.broker.aedes.off('clientError', onError);
        resolve();
      };
      srv.broker.aedes.on('clientError', onError);
    }), 5000, 'the CONNECT series to end');
    socket.write(connectPacket({
      clientId: id, username: t.key, will: { topic: 'lwt/mid', payload: Buffer.from(id), qos: 1, retain: false },
    }));
    try {
      await within(putGate.whenReached(), 5000, 'the will write of the CONNECT');
      // Authenticated: the session exists; Aedes has not registered the client yet.
      expect(srv.broker.registry.byClientId(id)).toHaveLength(1);
      await end(srv, socket, id, t.id);
      // close() publishes the will and deletes its stored copy (storeWill deleted the old one first).
      expect(await inbox.next()).toMatchObject({ topic: 'lwt/mid', payload: id });
      await eventually(() => delWillsDone >= delWillsBefore + 2, 5000, 'close() to delete the stored will');
    } finally {
      putGate.release();
      putGate = null;
    }
    await failed;
    // Everything that should be gone, checked together so that a failure names each leftover.
    const leftovers: string[] = [];
    if (id in (srv.broker.aedes as unknown as { clients: Record<string, unknown> }).clients) leftovers.push('a registered client in Aedes');
    if (srv.broker.registry.byClientId(id).length > 0) leftovers.push('a session in the registry');
    const gone = async (): Promise<boolean> => !(await srv.broker.sessions.list()).some((s) => s.client_id === id);
    if (!(await eventually(gone, 2000).catch(() => false))) leftovers.push('an entry in the session directory');
    const willGone = async (): Promise<boolean> => (await redis.exists(willKey(id))) === 0
      && !(await redis.lrange(`${prefix}aedes:will`, 0, -1)).some((k) => k.endsWith(`:${encodeURIComponent(id)}`));
    if (!(await eventually(willGone, 2000).catch(() => false))) leftovers.push('a stored will');
    expect(leftovers).toEqual([]);
    // Published once, when the session ended.
    expect(inbox.messages.filter((m) => m.payload === id)).toEqual([]);
  });
});
