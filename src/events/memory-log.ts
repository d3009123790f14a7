// The broker log without Redis (SPEC §8): a ring of the last `retention`
// records in this process, kept in columns (typed arrays, and shared strings)
// rather than one object per record. A log of 100,000 records as objects was
// 100,000 objects surviving into the old generation, each copied by the young
// collector on its way there: on a node taking thousands of CONNECTs a second
// that cost more than everything else the log does (issue 11: events' cost
// within 3 %). Appending stores a few numbers and two string references;
// records are rebuilt only for a query's answer.
import { EVENT_NAMES, matchesQuery, type BrokerEvent, type BrokerLog, type EventName, type LogQuery } from './types.js';

const ABSENT = -1;
/** Distinct strings a small column (node, transport, reason) interns before it stores further records whole. */
const MAX_INTERNED = 255;
/** Distinct IP strings kept for sharing between records; the table starts over when full. */
const MAX_SHARED_IPS = 10_000;
const EVENT_INDEX = new Map<string, number>(EVENT_NAMES.map((name, i) => [name, i]));
/** The fields a column holds; a record with any other is kept whole. */
const COLUMNS = new Set(['time', 'event', 'node', 'client_id', 'token_id', 'ip', 'transport', 'reason', 'code', 'by', 'fields']);

/** A column of a few distinct strings (node ids, transports, reasons), stored as their index + 1 (0: absent). */
class SmallStrings {
  private readonly values: string[] = [];
  private readonly index = new Map<string, number>();

  /** 0 for undefined, -1 when the table is full. */
  code(value: string | undefined): number {
    if (value === undefined) return 0;
    const known = this.index.get(value);
    if (known !== undefined) return known;
    if (this.values.length >= MAX_INTERNED) return ABSENT;
    this.values.push(value);
    this.index.set(value, this.values.length);
    return this.values.length;
  }

  value(code: number): string | undefined {
    return code === 0 ? undefined : this.values[code - 1];
  }
}

export class MemoryLog implements BrokerLog {
  private readonly time: Float64Array;
  private readonly tokenId: Float64Array;
  private readonly by: Float64Array;
  private readonly code: Int16Array;
  /** EVENT_NAMES index; 255: the record is kept whole in `whole`. */
  private readonly event: Uint8Array;
  private readonly node: Uint8Array;
  private readonly transport: Uint8Array;
  private readonly reason: Uint8Array;
  private readonly clientId: (string | undefined)[];
  private readonly ip: (string | undefined)[];
  /** Slot → `fields` of a token_updated record (rare). */
  private readonly fields = new Map<number, string[]>();
  /** Slot → a record the columns cannot hold. */
  private readonly whole = new Map<number, BrokerEvent>();
  private readonly nodes = new SmallStrings();
  private readonly transports = new SmallStrings();
  private readonly reasons = new SmallStrings();
  private sharedIps = new Map<string, string>();
  /** Index of the next write. */
  private next = 0;
  private size = 0;
  readonly dropped = 0;

  constructor(private readonly retention: number) {
    const n = Math.max(0, retention);
    this.time = new Float64Array(n);
    this.tokenId = new Float64Array(n);
    this.by = new Float64Array(n);
    this.code = new Int16Array(n);
    this.event = new Uint8Array(n);
    this.node = new Uint8Array(n);
    this.transport = new Uint8Array(n);
    this.reason = new Uint8Array(n);
    this.clientId = new Array<string | undefined>(n).fill(undefined);
    this.ip = new Array<string | undefined>(n).fill(undefined);
  }

  append(record: BrokerEvent): void {
    if (this.retention <= 0) return;
    const i = this.next;
    this.next = (i + 1) % this.retention;
    if (this.size < this.retention) this.size++;
    this.fields.delete(i);
    this.whole.delete(i);
    const event = EVENT_INDEX.get(record.event);
    const node = this.nodes.code(record.node);
    const transport = this.transports.code(record.transport);
    const reason = this.reasons.code(record.reason);
    if (event === undefined || node === ABSENT || transport === ABSENT || reason === ABSENT || !fitsColumns(record)) {
      this.event[i] = 255;
      this.whole.set(i, copyOf(record));
      this.clientId[i] = undefined;
      this.ip[i] = undefined;
      return;
    }
    this.time[i] = record.time;
    this.event[i] = event;
    this.node[i] = node;
    this.transport[i] = transport;
    this.reason[i] = reason;
    this.tokenId[i] = record.token_id ?? Number.NaN;
    this.by[i] = record.by ?? Number.NaN;
    this.code[i] = record.code ?? ABSENT;
    this.clientId[i] = record.client_id;
    this.ip[i] = record.ip === undefined ? undefined : this.shareIp(record.ip);
    if (record.fields !== undefined) this.fields.set(i, [...record.fields]);
  }

  async query(q: LogQuery): Promise<BrokerEvent[]> {
    const out: BrokerEvent[] = [];
    for (let n = 1; n <= this.size && out.length < q.limit; n++) {
      const i = (this.next - n + this.retention) % this.retention;
      if (this.event[i] === 255) {
        const record = this.record(i);
        // Appended in time order: nothing older can match `since`.
        if (q.since !== undefined && record.time < q.since) break;
        if (matchesQuery(record, q)) out.push(record);
        continue;
      }
      if (q.since !== undefined && this.time[i]! < q.since) break;
      // Filtered on the columns: a record is built only for the answer.
      if (q.event !== undefined && EVENT_NAMES[this.event[i]!] !== q.event) continue;
      if (q.clientId !== undefined && this.clientId[i] !== q.clientId) continue;
      if (q.tokenIds !== undefined && !q.tokenIds.includes(this.tokenId[i]!)) continue;
      out.push(this.record(i));
    }
    return out;
  }

  async close(): Promise<void> {}

  /** The record in slot `i`, rebuilt: time, node, then the event's fields as emitted. */
  private record(i: number): BrokerEvent {
    if (this.event[i] === 255) return copyOf(this.whole.get(i) as BrokerEvent);
    const r: BrokerEvent = { time: this.time[i]!, node: this.nodes.value(this.node[i]!) as string, event: EVENT_NAMES[this.event[i]!] as EventName };
    const clientId = this.clientId[i];
    if (clientId !== undefined) r.client_id = clientId;
    const tokenId = this.tokenId[i]!;
    if (!Number.isNaN(tokenId)) r.token_id = tokenId;
    const ip = this.ip[i];
    if (ip !== undefined) r.ip = ip;
    const transport = this.transports.value(this.transport[i]!);
    if (transport !== undefined) r.transport = transport;
    const reason = this.reasons.value(this.reason[i]!);
    if (reason !== undefined) r.reason = reason;
    if (this.code[i] !== ABSENT) r.code = this.code[i]!;
    const by = this.by[i]!;
    if (!Number.isNaN(by)) r.by = by;
    const fields = this.fields.get(i);
    if (fields !== undefined) r.fields = [...fields];
    return r;
  }

  /** One string per distinct IP among recent records, rather than one per connection. */
  private shareIp(ip: string): string {
    const shared = this.sharedIps.get(ip);
    if (shared !== undefined) return shared;
    if (this.sharedIps.size >= MAX_SHARED_IPS) this.sharedIps = new Map();
    this.sharedIps.set(ip, ip);
    return ip;
  }
}

/** Whether every field of `record` has a column that holds its value exactly. */
function fitsColumns(record: BrokerEvent): boolean {
  for (const key in record) if (!COLUMNS.has(key)) return false;
  const { code, fields } = record;
  if (code !== undefined && (!Number.isInteger(code) || code < 0 || code > 32767)) return false;
  if (record.token_id !== undefined && typeof record.token_id !== 'number') return false;
  if (record.by !== undefined && typeof record.by !== 'number') return false;
  if (fields !== undefined && !Array.isArray(fields)) return false;
  return typeof record.time === 'number' && typeof record.node === 'string'
    && (record.client_id === undefined || typeof record.client_id === 'string')
    && (record.ip === undefined || typeof record.ip === 'string');
}

/** A deep copy of a record kept whole (appending never throws: what cannot be cloned is copied shallowly). */
function copyOf(record: BrokerEvent): BrokerEvent {
  try {
    return structuredClone(record);
  } catch {
    return { ...record };
  }
}
