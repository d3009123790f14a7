// The broker log without Redis (SPEC §8): a ring of the last `retention`
// records in this process. Appending is a few array stores.
//
// Issue 9, memory per idle session: each connect leaves a `connected` record
// here until `retention` newer ones push it out. A record as the broker builds
// it (`{ time, node, ...input }`) is an object with its properties out of line
// and a boxed `time`: 128 bytes. The ring keeps each record in six slots of a
// flat array instead (48 bytes, no object): `time` as two small integers, the
// event and transport names as indexes into shared lists, the node once for
// the log, the rest as it came. Slots come in chunks, made as the log fills.
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

// A record's slots, at `base` in its chunk. Fields absent from the record are `undefined` here too.
/** Whole UNIX seconds (a small integer until 2038); 0 when CODES is WHOLE. */
const SECONDS = 0;
/** Milliseconds, event index and transport index + 1 (0: none, or in REST), packed; or WHOLE. */
const CODES = 1;
const CLIENT_ID = 2;
const TOKEN_ID = 3;
const IP = 4;
/**
 * The rest of the record: a string is its `reason` (a shared constant) when that is all;
 * else an object of the other fields in their order (the whole record when CODES is WHOLE).
 */
const REST = 5;
const STRIDE = 6;
/** Records per chunk of slots. */
const CHUNK = 1024;

type Slots = (string | number | Rest | undefined)[];

/** The fields with slots of their own (`node`: one per log), in the order `{ time, node, ...input }` gives them (BrokerEvents.emit). */
const SLOTS = ['time', 'node', 'event', 'client_id', 'token_id', 'ip', 'transport'];

function whole(record: BrokerEvent, at: Slots, base: number): void {
  at[base + SECONDS] = 0;
  at[base + CODES] = WHOLE;
  at[base + CLIENT_ID] = record.client_id;
  at[base + TOKEN_ID] = record.token_id;
  at[base + IP] = record.ip;
  at[base + REST] = copyOf(record);
}

/**
 * Writes `record` into its slots. `node`: the node of the log's records (one process, so one
 * node): a record of another is kept whole.
 */
function pack(record: BrokerEvent, node: string, at: Slots, base: number): void {
  const { time, event } = record;
  const ms = Math.round(time * 1000);
  const eventIndex = EVENT_INDEX.get(event);
  if (eventIndex === undefined || record.node !== node || !Number.isSafeInteger(ms) || ms < 0 || ms / 1000 !== time) {
    return whole(record, at, base);
  }
  let transportCode = 0;
  let rest: Record<string, unknown> | undefined;
  // Fields in slots come first and in SLOTS order, so that unpack rebuilds the same object
  // (key order included); a record in another order is kept whole.
  let slot = 0;
  for (const key in record) {
    if (!Object.hasOwn(record, key)) continue;
    const value = (record as unknown as Record<string, unknown>)[key];
    const found = rest === undefined ? SLOTS.indexOf(key, slot) : -1;
    if (found >= 0) {
      slot = found + 1;
      if (key !== 'transport') continue;
      const i = TRANSPORTS.indexOf(value as string);
      if (i >= 0) {
        transportCode = i + 1;
        continue;
      }
    } else if (SLOTS.includes(key)) {
      return whole(record, at, base);
    }
    // Arrays (`fields`) copied: what the caller later does to its record never reaches the log.
    (rest ??= {})[key] = Array.isArray(value) ? [...value] : value;
  }
  at[base + SECONDS] = Math.floor(ms / 1000);
  at[base + CODES] = (ms % 1000) | (eventIndex << EVENT_SHIFT) | (transportCode << TRANSPORT_SHIFT);
  at[base + CLIENT_ID] = record.client_id;
  at[base + TOKEN_ID] = record.token_id;
  at[base + IP] = record.ip;
  at[base + REST] = rest !== undefined && typeof rest.reason === 'string' && Object.keys(rest).length === 1 ? rest.reason : rest;
}

function timeOf(at: Slots, base: number): number {
  const codes = at[base + CODES] as number;
  return codes === WHOLE ? (at[base + REST] as Rest).time! : ((at[base + SECONDS] as number) * 1000 + (codes & MS_MASK)) / 1000;
}

function unpack(at: Slots, base: number, node: string): BrokerEvent {
  const codes = at[base + CODES] as number;
  const rest = at[base + REST] as string | Rest | undefined;
  if (codes === WHOLE) return copyOf(rest as BrokerEvent);
  // The order of `{ time, node, ...input }` as the broker builds it (BrokerEvents.emit).
  const out: BrokerEvent = { time: timeOf(at, base), node, event: EVENT_NAMES[(codes >>> EVENT_SHIFT) & EVENT_MASK]! };
  const clientId = at[base + CLIENT_ID] as string | undefined;
  const tokenId = at[base + TOKEN_ID] as number | undefined;
  const ip = at[base + IP] as string | undefined;
  if (clientId !== undefined) out.client_id = clientId;
  if (tokenId !== undefined) out.token_id = tokenId;
  if (ip !== undefined) out.ip = ip;
  const transport = codes >>> TRANSPORT_SHIFT;
  if (transport !== 0) out.transport = TRANSPORTS[transport - 1];
  if (typeof rest === 'string') out.reason = rest;
  else if (rest !== undefined) {
    for (const key in rest) {
      const value = (rest as Record<string, unknown>)[key];
      (out as unknown as Record<string, unknown>)[key] = Array.isArray(value) ? [...value] : value;
    }
  }
  return out;
}

/** A deep copy of a record kept whole (appending never throws: what cannot be cloned is copied shallowly). */
function copyOf(record: BrokerEvent): BrokerEvent {
  try {
    return structuredClone(record);
  } catch {
    return { ...record };
  }
}

export class MemoryLog implements BrokerLog {
  /** Record i's slots: chunk `i / CHUNK`, from `(i % CHUNK) * STRIDE`; a chunk is made when first written. */
  private readonly chunks: Slots[] = [];
  /** Index of the next write. */
  private next = 0;
  private size = 0;
  /** The node of the first record: that of every record but a stray one. */
  private node: string | null = null;
  readonly dropped = 0;

  constructor(private readonly retention: number) {}

  append(record: BrokerEvent): void {
    if (this.retention <= 0) return;
    this.node ??= record.node;
    const n = this.next;
    const c = Math.floor(n / CHUNK);
    // The last chunk only as long as the retention needs.
    const chunk = (this.chunks[c] ??= new Array<Slots[number]>(Math.min(CHUNK, this.retention - c * CHUNK) * STRIDE));
    pack(record, this.node, chunk, (n % CHUNK) * STRIDE);
    this.next = (n + 1) % this.retention;
    if (this.size < this.retention) this.size++;
  }

  async query(q: LogQuery): Promise<BrokerEvent[]> {
    const out: BrokerEvent[] = [];
    for (let i = 1; i <= this.size && out.length < q.limit; i++) {
      const n = (this.next - i + this.retention) % this.retention;
      const at = this.chunks[Math.floor(n / CHUNK)]!;
      const base = (n % CHUNK) * STRIDE;
      // Appended in time order: nothing older can match `since`.
      if (q.since !== undefined && timeOf(at, base) < q.since) break;
      // The fields kept as they came first, so that a filtered query builds no record per entry.
      if (q.clientId !== undefined && at[base + CLIENT_ID] !== q.clientId) continue;
      const tokenId = at[base + TOKEN_ID] as number | undefined;
      if (q.tokenIds !== undefined && (tokenId === undefined || !q.tokenIds.includes(tokenId))) continue;
      const record = unpack(at, base, this.node!);
      if (matchesQuery(record, q)) out.push(record);
    }
    return out;
  }

  async close(): Promise<void> {}
}
