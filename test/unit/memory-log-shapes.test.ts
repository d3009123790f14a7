// events/memory-log.ts: the SPEC §8 log without Redis, kept compactly: every record shape, copies, wrap-around, interned values.
import { describe, expect, test } from '@jest/globals';
import { MemoryLog } from '../../src/events/memory-log.js';
import type { BrokerEvent } from '../../src/events/types.js';

const T = 1_764_500_000.25;

/** One record of every shape the broker and the REST API emit (events.ts, api/tokens.ts). */
const SHAPES: BrokerEvent[] = [
  { time: T, node: 'n1', event: 'connected', client_id: 'dev-1', token_id: 7, ip: '10.0.0.1', transport: 'tcp' },
  { time: T + 1, node: 'n1', event: 'disconnected', client_id: 'dev-1', token_id: 7, ip: '10.0.0.1', transport: 'ws', reason: 'keepalive' },
  { time: T + 2, node: 'n1', event: 'kicked', client_id: 'dev-1', token_id: 7, ip: '::1', transport: 'wss', by: 1 },
  { time: T + 3, node: 'n1', event: 'refused', client_id: '', token_id: 0, ip: '10.0.0.2', reason: 'bad_key', transport: 'tls', code: 4 },
  { time: T + 4, node: 'n1', event: 'refused', client_id: 'x', token_id: 3, ip: '10.0.0.2', reason: 'session_limit' },
  { time: T + 5, node: 'n2', event: 'token_created', token_id: 9, by: 1 },
  { time: T + 6, node: 'n2', event: 'token_updated', token_id: 9, fields: ['access', 'ips'] },
  { time: T + 7, node: 'n2', event: 'token_expired', token_id: 9 },
  { time: T + 8, node: 'n2', event: 'token_deleted', token_id: 2 ** 40, by: 2 ** 40 + 1 },
];

describe('MemoryLog (SPEC §8, issue 11: compact records)', () => {
  test('every record shape comes back as it was appended, newest first', async () => {
    const log = new MemoryLog(100);
    for (const r of SHAPES) log.append(r);
    expect(await log.query({ limit: 100 })).toEqual([...SHAPES].reverse());
  });

  test('what the columns cannot hold exactly is kept whole: unknown fields, codes out of range, non-numeric ids, unknown events', async () => {
    const odd = [
      { time: T, node: 'n', event: 'connected', client_id: 'a', extra: { nested: true } },
      { time: T, node: 'n', event: 'refused', code: 70_000 },
      { time: T, node: 'n', event: 'refused', code: 2.5 },
      { time: T, node: 'n', event: 'node_joined' },
      { time: T, node: 'n', event: 'connected', token_id: '7' },
    ] as unknown as BrokerEvent[];
    const log = new MemoryLog(10);
    for (const r of odd) log.append(r);
    expect(await log.query({ limit: 10 })).toEqual([...odd].reverse());
  });

  test('a record read back is a copy: changing it (or what was appended) changes nothing in the log', async () => {
    const log = new MemoryLog(10);
    const r: BrokerEvent = { time: T, node: 'n', event: 'token_updated', token_id: 1, fields: ['ips'] };
    log.append(r);
    r.fields!.push('access');
    const [first] = await log.query({ limit: 1 });
    first!.fields!.push('enabled');
    expect(await log.query({ limit: 1 })).toEqual([{ time: T, node: 'n', event: 'token_updated', token_id: 1, fields: ['ips'] }]);
  });

  test('keeps the last `retention` records as the ring wraps; filters apply as before', async () => {
    const log = new MemoryLog(5);
    for (let i = 0; i < 23; i++) {
      log.append({ time: T + i, node: 'n', event: i % 2 ? 'connected' : 'disconnected', client_id: `c${i % 3}`, token_id: i % 4, ip: '10.0.0.1', transport: 'tcp' });
    }
    const all = await log.query({ limit: 100 });
    expect(all.map((r) => r.time)).toEqual([22, 21, 20, 19, 18].map((i) => T + i));
    expect((await log.query({ limit: 100, event: 'connected' })).map((r) => r.time)).toEqual([21, 19].map((i) => T + i));
    expect((await log.query({ limit: 100, clientId: 'c0' })).map((r) => r.time)).toEqual([21, 18].map((i) => T + i));
    expect((await log.query({ limit: 100, tokenIds: [2, 3] })).map((r) => r.time)).toEqual([22, 19, 18].map((i) => T + i));
    expect((await log.query({ limit: 100, since: T + 20 })).map((r) => r.time)).toEqual([22, 21, 20].map((i) => T + i));
    expect(await log.query({ limit: 2 })).toHaveLength(2);
  });

  test('a whole record overwritten by the ring leaves nothing behind; retention 0 keeps nothing', async () => {
    const log = new MemoryLog(1);
    log.append({ time: T, node: 'n', event: 'node_joined' } as unknown as BrokerEvent);
    log.append({ time: T + 1, node: 'n', event: 'token_updated', token_id: 1, fields: ['ips'] });
    log.append({ time: T + 2, node: 'n', event: 'token_expired', token_id: 1 });
    expect(await log.query({ limit: 10 })).toEqual([{ time: T + 2, node: 'n', event: 'token_expired', token_id: 1 }]);
    const none = new MemoryLog(0);
    none.append(SHAPES[0]!);
    expect(await none.query({ limit: 10 })).toEqual([]);
  });

  test('more distinct reasons than a column interns: the rest are kept whole, none lost', async () => {
    const log = new MemoryLog(400);
    const records = Array.from({ length: 300 }, (_, i): BrokerEvent => ({ time: T + i, node: 'n', event: 'disconnected', client_id: 'c', token_id: 1, reason: `reason_${i}` }));
    for (const r of records) log.append(r);
    expect(await log.query({ limit: 400 })).toEqual([...records].reverse());
  });
});
