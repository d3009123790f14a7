// The broker log without Redis (SPEC §8): a ring of the last `retention`
// records in this process. Appending is one array store.
import { matchesQuery, type BrokerEvent, type BrokerLog, type LogQuery } from './types.js';

export class MemoryLog implements BrokerLog {
  private readonly ring: (BrokerEvent | undefined)[];
  /** Index of the next write. */
  private next = 0;
  private size = 0;
  readonly dropped = 0;

  constructor(private readonly retention: number) {
    this.ring = new Array<BrokerEvent | undefined>(Math.max(0, retention));
  }

  append(record: BrokerEvent): void {
    if (this.retention <= 0) return;
    this.ring[this.next] = record;
    this.next = (this.next + 1) % this.retention;
    if (this.size < this.retention) this.size++;
  }

  async query(q: LogQuery): Promise<BrokerEvent[]> {
    const out: BrokerEvent[] = [];
    for (let i = 1; i <= this.size && out.length < q.limit; i++) {
      const record = this.ring[(this.next - i + this.retention) % this.retention] as BrokerEvent;
      // Appended in time order: nothing older can match `since`.
      if (q.since !== undefined && record.time < q.since) break;
      if (matchesQuery(record, q)) out.push(record);
    }
    return out;
  }

  async close(): Promise<void> {}
}
