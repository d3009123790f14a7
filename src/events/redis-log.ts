// The broker log with Redis (SPEC §8): one capped stream shared by all nodes
// (`XADD <prefix>log MAXLEN ~ retention`). Records wait in a bounded buffer
// and go out in one script call per tick, so the MQTT path never waits for Redis;
// while Redis is down the buffer keeps the newest records and counts the
// oldest it had to drop.
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { LogUnavailableError, matchesQuery, type BrokerEvent, type BrokerLog, type LogQuery } from './types.js';

const FLUSH_MS = 100;
/** Records per write (one script call). */
const BATCH = 1000;
/**
 * A batch of records in one call: ioredis' per-command cost on the broker's own
 * CPU (one XADD per record, two records per session) cost Redis-mode CONNECTs
 * 14 % (issue 11); the XADDs themselves run inside Redis.
 */
const APPEND_SCRIPT = `
for i = 2, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'r', ARGV[i])
end
return #ARGV - 1`;

interface AppendCommand {
  tokenmqLogAppend(key: string, retention: number, ...records: string[]): Promise<number>;
}
/** Stream entries read per XREVRANGE while filtering a query. */
const SCAN_CHUNK = 1000;
/** SPEC §8: a REST call that needs Redis answers within 2 s. */
const QUERY_TIMEOUT_MS = 1500;
/** Shutdown waits at most this long for the last records (SPEC §1: exit within 10 s). */
const CLOSE_FLUSH_MS = 1000;
/** Stream ids are Redis time of the write: a record may reach the stream this much after its `time`. */
const SINCE_SLACK_MS = 60_000;

export interface RedisLogOptions {
  redisUrl: string;
  prefix: string;
  retention: number;
  log: Logger;
  /** Records held while Redis is away; beyond, the oldest are dropped (default 10,000). */
  bufferLimit?: number;
  /** An existing connection (tests); otherwise one is opened. */
  redis?: Redis;
}

export class RedisLog implements BrokerLog {
  private readonly redis: Redis;
  private readonly key: string;
  private readonly bufferLimit: number;
  private buffer: BrokerEvent[] = [];
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private closed = false;
  dropped = 0;

  constructor(private readonly opts: RedisLogOptions) {
    this.key = `${opts.prefix}log`;
    this.bufferLimit = Math.max(1, opts.bufferLimit ?? 10_000);
    // Fail fast while Redis is down: queries answer 503, records stay in our own bounded buffer.
    this.redis = opts.redis ?? new Redis(opts.redisUrl, {
      retryStrategy: (n: number) => Math.min(n * 200, 2000),
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
    });
    this.redis.defineCommand('tokenmqLogAppend', { numberOfKeys: 1, lua: APPEND_SCRIPT });
    this.redis.on('error', (err: Error) => opts.log.debug({ err: err.message }, 'broker log redis error'));
    this.redis.on('ready', () => this.schedule());
  }

  append(record: BrokerEvent): void {
    if (this.retentionOff()) return;
    this.buffer.push(record);
    if (this.buffer.length > this.bufferLimit) {
      const over = this.buffer.length - this.bufferLimit;
      this.buffer.splice(0, over);
      this.dropped += over;
    }
    this.schedule();
  }

  private retentionOff(): boolean {
    return this.opts.retention <= 0 || this.closed;
  }

  private schedule(): void {
    if (this.timer !== null || this.buffer.length === 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, FLUSH_MS);
    this.timer.unref();
  }

  /** Writes the buffer in calls of BATCH records; on failure puts the batch back (the bound still holds). */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    if (this.buffer.length === 0 || this.redis.status !== 'ready') return Promise.resolve();
    this.flushing = (async () => {
      while (this.buffer.length > 0 && this.redis.status === 'ready') {
        const batch = this.buffer.splice(0, BATCH);
        try {
          await (this.redis as unknown as AppendCommand).tokenmqLogAppend(this.key, this.opts.retention, ...batch.map((r) => JSON.stringify(r)));
        } catch (err) {
          this.opts.log.debug({ err: (err as Error).message }, 'broker log write failed; kept for later');
          this.putBack(batch);
          break;
        }
      }
    })().finally(() => {
      this.flushing = null;
      this.schedule();
    });
    return this.flushing;
  }

  private putBack(batch: BrokerEvent[]): void {
    this.buffer = batch.concat(this.buffer);
    const over = this.buffer.length - this.bufferLimit;
    if (over > 0) {
      this.buffer.splice(0, over);
      this.dropped += over;
    }
  }

  query(q: LogQuery): Promise<BrokerEvent[]> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new LogUnavailableError('broker log: no answer from redis')), QUERY_TIMEOUT_MS);
    });
    // Stream order is arrival order; nodes batch their writes, so order the page by event time.
    return Promise.race([this.scan(q), timeout])
      .then((records) => records.sort((a, b) => b.time - a.time))
      .finally(() => clearTimeout(timer));
  }

  /** XREVRANGE in chunks from the newest entry, filtered here, until `limit` records or `since`. */
  private async scan(q: LogQuery): Promise<BrokerEvent[]> {
    if (this.redis.status !== 'ready') throw new LogUnavailableError('broker log: redis unavailable');
    const min = q.since === undefined ? '-' : String(Math.max(0, Math.floor(q.since * 1000) - SINCE_SLACK_MS));
    const out: BrokerEvent[] = [];
    let end = '+';
    for (;;) {
      let entries: [string, string[]][];
      try {
        entries = await this.redis.xrevrange(this.key, end, min, 'COUNT', SCAN_CHUNK);
      } catch (err) {
        throw new LogUnavailableError(`broker log: ${(err as Error).message}`);
      }
      for (const [, fields] of entries) {
        const record = decode(fields);
        if (record !== null && matchesQuery(record, q)) {
          out.push(record);
          if (out.length >= q.limit) return out;
        }
      }
      if (entries.length < SCAN_CHUNK) return out;
      end = `(${(entries[entries.length - 1] as [string, string[]])[0]}`;
    }
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((resolve) => { timer = setTimeout(resolve, CLOSE_FLUSH_MS); });
    await Promise.race([this.flush().catch(() => {}), limit]).finally(() => clearTimeout(timer));
    this.closed = true;
    if (!this.opts.redis) this.redis.disconnect();
  }
}

function decode(fields: string[]): BrokerEvent | null {
  const i = fields.indexOf('r');
  if (i === -1 || i + 1 >= fields.length) return null;
  try {
    const value = JSON.parse(fields[i + 1] as string) as BrokerEvent;
    return typeof value === 'object' && value !== null && typeof value.time === 'number' ? value : null;
  } catch {
    return null;
  }
}
