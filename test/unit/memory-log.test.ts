// The in-memory broker log keeps records compactly (issue 9); what it gives
// back must be the records it was given (SPEC §8: GET /mqtt/logs content).
import { describe, expect, test } from '@jest/globals';
import { MemoryLog } from '../../src/events/memory-log.js';
import type { BrokerEvent } from '../../src/events/types.js';

const now = Date.now() / 1000;
const records: BrokerEvent[] = [
  { time: now, node: 'n1', event: 'connected', client_id: 'dev-1', token_id: 7, ip: '127.0.0.1', transport: 'tcp' },
  { time: now + 0.001, node: 'n1', event: 'disconnected', client_id: 'dev-1', token_id: 7, ip: '::1', transport: 'wss', reason: 'keepalive' },
  { time: now + 0.002, node: 'n1', event: 'refused', client_id: 'x', token_id: 0, ip: '10.0.0.1', transport: 'ws', code: 5, reason: 'not authorized' },
  { time: now + 0.003, node: 'n1', event: 'kicked', client_id: 'dev-2', token_id: 8, ip: '10.0.0.2', transport: 'tls', by: 1 },
  { time: now + 0.004, node: 'n2', event: 'token_updated', token_id: 8, by: 1, fields: ['acl', 'info'] },
  { time: now + 0.005, node: 'n2', event: 'token_expired', token_id: 9 },
  // What the compact form does not cover is kept whole: a time finer than a millisecond,
  // a transport or an event it does not know, fields in another order.
  { time: 1_700_000_000.123456, node: 'n1', event: 'connected', client_id: 'dev-3', token_id: 3, ip: '1.2.3.4', transport: 'tcp' },
  { time: now + 0.006, node: 'n1', event: 'connected', client_id: 'dev-4', token_id: 4, ip: '1.2.3.4', transport: 'quic' },
  { time: now + 0.007, node: 'n1', event: 'something_else' as BrokerEvent['event'], token_id: 4 },
  { time: now + 0.008, node: 'n1', event: 'disconnected', reason: 'node_down', transport: 'tcp', client_id: 'dev-5', token_id: 5, ip: '1.2.3.5' },
  { time: 0, node: 'n1', event: 'token_created', token_id: 10 },
];

describe('MemoryLog (SPEC §8)', () => {
  test('gives back each record as appended, newest first, the same JSON', async () => {
    const log = new MemoryLog(100);
    for (const r of records) log.append(r);
    const got = await log.query({ limit: 100 });
    const want = [...records].reverse();
    expect(got).toEqual(want);
    expect(got.map((r) => JSON.stringify(r))).toEqual(want.map((r) => JSON.stringify(r)));
  });

  test('filters as matchesQuery does, and keeps only the last `retention` records', async () => {
    const log = new MemoryLog(4);
    for (const r of records) log.append(r);
    const kept = records.slice(-4).reverse();
    expect(await log.query({ limit: 100 })).toEqual(kept);
    expect(await log.query({ limit: 100, clientId: 'dev-5' })).toEqual([records[9]]);
    expect(await log.query({ limit: 100, tokenIds: [4, 10] })).toEqual([records[10], records[8], records[7]]);
    expect(await log.query({ limit: 100, event: 'disconnected' })).toEqual([records[9]]);
    expect(await log.query({ limit: 1 })).toEqual([records[10]]);
  });

  test('`since` stops at the first older record', async () => {
    const log = new MemoryLog(100);
    for (const r of records.slice(0, 6)) log.append(r);
    expect(await log.query({ limit: 100, since: now + 0.0035 })).toEqual([records[5], records[4]]);
  });

  test('wraps around across its chunks of slots, keeping exactly the last `retention`', async () => {
    const retention = 2500; // two full chunks and a short last one
    const log = new MemoryLog(retention);
    const all: BrokerEvent[] = [];
    for (let i = 0; i < 6000; i++) {
      const r: BrokerEvent = { time: (1_764_000_000_000 + i) / 1000, node: 'n1', event: i % 2 ? 'connected' : 'disconnected', client_id: `dev-${i % 7}`, token_id: i % 3, ip: '10.0.0.1', transport: 'tcp' };
      if (!(i % 2)) r.reason = 'client';
      all.push(r);
      log.append(r);
    }
    const kept = all.slice(-retention).reverse();
    expect(await log.query({ limit: 10_000 })).toEqual(kept);
    expect(await log.query({ limit: 10_000, clientId: 'dev-3', event: 'connected' })).toEqual(kept.filter((r) => r.client_id === 'dev-3' && r.event === 'connected'));
  });
});
