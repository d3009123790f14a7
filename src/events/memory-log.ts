// The broker log without Redis (SPEC §8): a ring of the last `retention`
// records in this process. Appending is one small object and one array store.
//
// Issue 9, memory per idle session: each connect leaves a `connected` record
// here until `retention` newer ones push it out. A record as the broker builds
// it (`{ time, node, ...input }`) is an object with its properties out of line
// // and a boxed `time`: 128 bytes. The ring keeps each one as an `Entry` of fixed
// shape instead (72 bytes): `time` as two small integers, the event and
// transport names as indexes into shared lists, the node once for the log, the
// rest as it came.
// `query` gives back records equal to the ones appended.
import { EVENT_NAMES, matchesQuery, type BrokerEvent, type BrokerLog, type LogQuery } from './types.js';

/** Transports a record may name (SPEC §5); any other string is kept as it came. */
const TRANSPORTS: readonly string[] = ['tcp', 'ws', 'tls', 'wss'];
const EVENT_INDEX = new Map<string, number>(EVENT_NAMES.map((name, i) => [name, i]));
/** `codes` of a record kept whole in `rest` (an unknown event, a time that is not whole milliseconds). */
const WHOLE = -1;
const MS_MASK = 1023; // 0..999 in the low 10 bits
const EVENT_SHIFT = 10;
const EVENT_MASK = 15;
const TRANSPORT_SHIFT = 14;

type Rest = Partial<Omit<BrokerEvent, 'node' | 'client_id' | 'token_id' | 'ip'>>;

/** One record, compact. Fields absent from the record are `undefined` here too. */
class Entry {
  constructor(
    /** Whole UNIX seconds (a small integer until 2038); 0 when `codes` is WHOLE. */
    readonly seconds: number,
    /** Milliseconds, event index and transport index + 1 (0: none, or in `rest`), packed; or WHOLE. */
    readonly codes: number,
    readonly client_id: string | undefined,
    readonly token_id: number | undefined,
    readonly ip: string | undefined,
    /**
     * The rest of the record: a string is its `reason` (a shared constant) when that is all;
     * else an object of the other fields in their order (the whole record when `codes` is WHOLE).
     */
    readonly rest: string | Rest | undefined,
  ) {}
}

/** The fields an Entry has slots for, in the order `{ time, node, ...input }` gives them (BrokerEvents.emit). */
const SLOTS = ['time', 'node', 'event', 'client_id', 'token_id', 'ip', 'transport'];

function whole(record: BrokerEvent): Entry {
  return new Entry(0, WHOLE, record.client_id, record.token_id, record.ip, { ...record });
}

/** `node`: the node of the log's records (one process, so one node): a record of another is kept whole. */
function pack(record: BrokerEvent, node: string): Entry {
  const { time, event } = record;
  const ms = Math.round(time * 1000);
  const eventIndex = EVENT_INDEX.get(event);
  if (eventIndex === undefined || record.node !== node || !Number.isSafeInteger(ms) || ms < 0 || ms / 1000 !== time) return whole(record);
  let transportCode = 0;
  let rest: Record<string, unknown> | undefined;
  // Fields in slots come first and in SLOTS order, so that unpack rebuilds the same object
  // (key order included); a record in another order is kept whole.
  let slot = 0;
  for (const key in record) {
    if (!Object.hasOwn(record, key)) continue;
    const value = (record as unknown as Record<string, unknown>)[key];
    const at = rest === undefined ? SLOTS.indexOf(key, slot) : -1;
    if (at >= 0) {
      slot = at + 1;
      if (key !== 'transport') continue;
      const i = TRANSPORTS.indexOf(value as string);
      if (i >= 0) {
        transportCode = i + 1;
        continue;
      }
    } else if (SLOTS.includes(key)) {
      return whole(record);
    }
    (rest ??= {})[key] = value;
  }
  let kept: Entry['rest'] = rest;
  if (rest !== undefined && typeof rest.reason === 'string' && Object.keys(rest).length === 1) kept = rest.reason;
  const codes = (ms % 1000) | (eventIndex << EVENT_SHIFT) | (transportCode << TRANSPORT_SHIFT);
  return new Entry(Math.floor(ms / 1000), codes, record.client_id, record.token_id, record.ip, kept);
}

function timeOf(e: Entry): number {
  return e.codes === WHOLE ? (e.rest as Rest).time! : (e.seconds * 1000 + (e.codes & MS_MASK)) / 1000;
}

function unpack(e: Entry, node: string): BrokerEvent {
  if (e.codes === WHOLE) return { ...(e.rest as BrokerEvent) };
  // The order of `{ time, node, ...input }` as the broker builds it (BrokerEvents.emit).
  const out: BrokerEvent = { time: timeOf(e), node, event: EVENT_NAMES[(e.codes >>> EVENT_SHIFT) & EVENT_MASK]! };
  if (e.client_id !== undefined) out.client_id = e.client_id;
  if (e.token_id !== undefined) out.token_id = e.token_id;
  if (e.ip !== undefined) out.ip = e.ip;
  const transport = e.codes >>> TRANSPORT_SHIFT;
  if (transport !== 0) out.transport = TRANSPORTS[transport - 1];
  if (typeof e.rest === 'string') out.reason = e.rest;
  else if (e.rest !== undefined) Object.assign(out, e.rest);
  return out;
}

export class MemoryLog implements BrokerLog {
  private readonly ring: (Entry | undefined)[];
  /** Index of the next write. */
  private next = 0;
  private size = 0;
  /** The node of the first record: that of every record but a stray one. */
  private node: string | null = null;
  readonly dropped = 0;

  constructor(private readonly retention: number) {
    this.ring = new Array<Entry | undefined>(Math.max(0, retention));
  }

  append(record: BrokerEvent): void {
    if (this.retention <= 0) return;
    this.node ??= record.node;
    this.ring[this.next] = pack(record, this.node);
    this.next = (this.next + 1) % this.retention;
    if (this.size < this.retention) this.size++;
  }

  async query(q: LogQuery): Promise<BrokerEvent[]> {
    const out: BrokerEvent[] = [];
    for (let i = 1; i <= this.size && out.length < q.limit; i++) {
      const entry = this.ring[(this.next - i + this.retention) % this.retention] as Entry;
      // Appended in time order: nothing older can match `since`.
      if (q.since !== undefined && timeOf(entry) < q.since) break;
      // The fields an Entry has as they came first, so that a filtered query builds no record per entry.
      if (q.clientId !== undefined && entry.client_id !== q.clientId) continue;
      if (q.tokenIds !== undefined && (entry.token_id === undefined || !q.tokenIds.includes(entry.token_id))) continue;
      const record = unpack(entry, this.node!);
      if (matchesQuery(record, q)) out.push(record);
    }
    return out;
  }

  async close(): Promise<void> {}
}
