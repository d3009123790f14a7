// Client id ownership in Redis (owners.ts), shared by every node, each change
// one Lua script (atomic: two nodes admitting two tokens with one client id at
// once, one wins).
//
// Layout under the prefix p:
//   {p}owner:{clientid}   HASH  tok nonce node pers
//   {p}owned:{tokenid}    SET   client ids whose record names this token (dropToken)
//   {p}owner-node:{node}  STRING, PX: the node is alive (renewed every few seconds while it holds claims)
//   {p}slots:{tokenid}    HASH  client id -> node|nonce: the token's live sessions (SPEC §2 limits.sessions)
//
// A record is stale, and another token may claim over it, when its token is no
// longer stored (deleted or expired while no node was there to drop it), or
// when it is a clean session's record from a node that stopped renewing its
// liveness key (SPEC §6: a node that died must not keep client ids forever).
// A persistent session's record stays whatever its node: the session is stored.
import type { Writable } from 'node:stream';
import type { Redis } from 'ioredis';
import { FIND_LOOKUP, PRELUDE } from './redis-scripts.js';
import type { AdmitRequest, AdmitResult, ClaimResult, ClientOwners, OwnerClaim, SessionSlot, SlotClaim, SlotLimit } from './owners.js';

const NODE_TTL_MS = 15_000;
const NODE_RENEW_MS = 5_000;
/** Longest a batch of owner commands waits for the batch before it to answer (TurnBatch). */
const HOLD_MAX_MS = 20;
/** Session releases per END_SESSIONS call: a node closing thousands at once must not hold Redis in one long script. */
const ENDS_PER_CALL = 256;

// KEYS: owner, owned(new token). ARGV: token, nonce, node, pers, override, prefix, clientId, nodeTtl.
const CLAIM = `
local p = ARGV[6]
redis.call('SET', p .. 'owner-node:' .. ARGV[3], '1', 'PX', ARGV[8])
local cur = redis.call('HMGET', KEYS[1], 'tok', 'node', 'pers')
local orphan = 0
local previous = ''
if cur[1] == ARGV[1] then
  local prev = redis.call('HMGET', KEYS[1], 'nonce', 'node', 'pers')
  previous = tostring(prev[1]) .. '|' .. tostring(prev[2]) .. '|' .. tostring(prev[3])
end
if cur[1] and cur[1] ~= ARGV[1] then
  local gone = redis.call('EXISTS', p .. 'token:' .. cur[1]) == 0
  local dead = cur[3] ~= '1' and redis.call('EXISTS', p .. 'owner-node:' .. tostring(cur[2])) == 0
  if not gone and not dead and ARGV[5] ~= '1' then return {1, cur[1]} end
  if gone then orphan = 1 end
  redis.call('SREM', p .. 'owned:' .. cur[1], ARGV[7])
end
redis.call('HSET', KEYS[1], 'tok', ARGV[1], 'nonce', ARGV[2], 'node', ARGV[3], 'pers', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[7])
return {0, tostring(orphan), previous}`;

// KEYS: owner. ARGV: nonce, prefix, clientId, previous ('' = none: release).
const UNDO = `
local cur = redis.call('HMGET', KEYS[1], 'tok', 'nonce')
if cur[2] ~= ARGV[1] then return 0 end
if ARGV[4] == '' then
  redis.call('DEL', KEYS[1])
  if cur[1] then redis.call('SREM', ARGV[2] .. 'owned:' .. cur[1], ARGV[3]) end
  return 1
end
local nonce, node, pers = string.match(ARGV[4], '^(.*)|(.*)|(.*)$')
redis.call('HSET', KEYS[1], 'nonce', nonce, 'node', node, 'pers', pers)
return 1`;

// KEYS: owner. ARGV: nonce, prefix, clientId.
const RELEASE = `
local cur = redis.call('HMGET', KEYS[1], 'tok', 'nonce')
if cur[2] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if cur[1] then redis.call('SREM', ARGV[2] .. 'owned:' .. cur[1], ARGV[3]) end
return 1`;

// KEYS: owned. ARGV: token, prefix.
const DROP = `
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local k = ARGV[2] .. 'owner:' .. id
  if redis.call('HGET', k, 'tok') == ARGV[1] then
    redis.call('DEL', k)
    out[#out + 1] = id
  end
end
redis.call('DEL', KEYS[1])
redis.call('DEL', ARGV[2] .. 'slots:' .. ARGV[1])
return out`;

// KEYS: slots. ARGV: clientId, node|nonce, limit, prefix, node, nodeTtl.
// A full count first drops the slots of nodes that stopped renewing their liveness (crashed).
const CLAIM_SLOT = `
local p = ARGV[4]
redis.call('SET', p .. 'owner-node:' .. ARGV[5], '1', 'PX', ARGV[6])
local limit = tonumber(ARGV[3])
if limit > 0 and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= limit then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local node = string.match(all[i + 1], '^(.*)|[^|]*$')
    if node == nil or redis.call('EXISTS', p .. 'owner-node:' .. node) == 0 then redis.call('HDEL', KEYS[1], all[i]) end
  end
  if redis.call('HLEN', KEYS[1]) >= limit then return {0, ''} end
end
local previous = redis.call('HGET', KEYS[1], ARGV[1]) or ''
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {1, previous}`;

// KEYS: slots. ARGV: clientId, node|nonce, previous ('' = none).
const UNDO_SLOT = `
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == '' then return redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1`;

// KEYS: slots. ARGV: clientId, node|nonce.
const RELEASE_SLOT = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0`;

// One CONNECT's claims in one script (owners.ts `admit`): CLAIM's check, then
// CLAIM_SLOT's in each slots hash (the token's, then its ancestors'), then all
// the writes. A refusal writes nothing but the liveness key and the removal of
// dead nodes' slots.
// KEYS: owner, owned(new token), then one slots hash per counted token.
// ARGV: token, nonce, node, pers, override, prefix, clientId, nodeTtl, then one limit per slots hash.
// Returns {0, orphan, owner previous, slot previous...} | {1, owner} | {2, 0-based index of the full hash}.
/**
 * The check-and-claim of ADMIT as a Lua function of (keys, args), for ADMIT
 * itself and for FIND_ADMIT. K: owner, owned, then the slots hashes. A: tokenId,
 * nonce, node, persistent, override, prefix, clientId, node TTL ms, then one
 * limit per slots hash.
 */
const ADMIT_FN = `
local function admit(K, A)
  local p = A[6]
  -- The node's liveness, unless the caller renewed it lately (A[8] '': RedisOwners.liveness).
  if A[8] ~= '' then redis.call('SET', p .. 'owner-node:' .. A[3], '1', 'PX', A[8]) end
  local cur = redis.call('HMGET', K[1], 'tok', 'nonce', 'node', 'pers')
  local orphan, previous, from = 0, '', nil
  if cur[1] == A[1] then
    previous = tostring(cur[2]) .. '|' .. tostring(cur[3]) .. '|' .. tostring(cur[4])
  elseif cur[1] then
    local gone = redis.call('EXISTS', p .. 'token:' .. cur[1]) == 0
    local dead = cur[4] ~= '1' and redis.call('EXISTS', p .. 'owner-node:' .. tostring(cur[3])) == 0
    -- SPEC §4 before §2: CONNACK 2 wins over CONNACK 5.
    if not gone and not dead and A[5] ~= '1' then return {1, cur[1]} end
    if gone then orphan = 1 end
    from = cur[1]
  end
  local cid = A[7]
  local held = {}
  for k = 3, #K do
    local slots, limit = K[k], tonumber(A[6 + k])
    held[k] = redis.call('HGET', slots, cid)
    if limit > 0 and not held[k] and redis.call('HLEN', slots) >= limit then
      local all = redis.call('HGETALL', slots)
      for i = 1, #all, 2 do
        local node = string.match(all[i + 1], '^(.*)|[^|]*$')
        if node == nil or redis.call('EXISTS', p .. 'owner-node:' .. node) == 0 then redis.call('HDEL', slots, all[i]) end
      end
      if redis.call('HLEN', slots) >= limit then return {2, tostring(k - 3)} end
    end
  end
  local out = {0, tostring(orphan), previous}
  for k = 3, #K do
    out[#out + 1] = held[k] or ''
    redis.call('HSET', K[k], cid, A[3] .. '|' .. A[2])
  end
  if from then redis.call('SREM', p .. 'owned:' .. from, cid) end
  redis.call('HSET', K[1], 'tok', A[1], 'nonce', A[2], 'node', A[3], 'pers', A[4])
  -- A record of this token is in its owned set already (every write of one adds it; DROP removes both).
  if cur[1] ~= A[1] then redis.call('SADD', K[2], cid) end
  return out
end
`;

const ADMIT = `${ADMIT_FN}
return admit(KEYS, ARGV)`;

/**
 * findByKey and ADMIT in one round trip (issue 10: the CONNECT path in Redis
 * mode): the token of a key, and for an enabled token with no parent the claim
 * of its client id and session slot, its `limits.sessions` and master override
 * read from the stored token itself. KEYS[1]: the key index. ARGV: prefix,
 * nonce, node, persistent, clientId, node TTL ms. Returns what FIND returns, or
 * with the claim's answer appended (ADMIT's reply) when one was attempted: a
 * child (its ancestors' slots) or data that does not decode go the two-step way.
 */
const FIND_ADMIT = `${PRELUDE}${ADMIT_FN}${FIND_LOOKUP}
-- ARGV[7..]: the caller's keys to probe (AdmitRequest.probeKeys): one '0'/'1' per key, before the claim's answer.
local probed = ''
for i = 7, #ARGV do probed = probed .. tostring(redis.call('EXISTS', ARGV[i])) end
if fields[2] ~= '1' or (fields[11] and fields[11] ~= '0') then return {id, fields} end
-- No JSON decode of the ACL here (issue 10: cjson costs Redis ~5 µs per CONNECT for ten entries,
-- far more for 256): master or not comes from the masters set, which every script that writes
-- access keeps in step; an access that does not decode is refused by the node, which gives the claim back.
if string.sub(fields[7] or '', 1, 1) ~= '{' then return {id, fields} end
local limit = 0
if fields[13] then
  -- As the codec writes it; anything else is decoded.
  local n = string.match(fields[13], '^{"sessions":(%d+),"publish_rate":%d+}$')
  if n and #n <= 15 then
    limit = tonumber(n)
  else
    local okL, lim = pcall(cjson.decode, fields[13])
    if not okL or type(lim) ~= 'table' then return {id, fields} end
    if type(lim.sessions) == 'number' then limit = lim.sessions end
  end
end
local p, cid = ARGV[1], ARGV[5]
local override = '0'
if redis.call('SISMEMBER', p .. 'masters', id) == 1 then override = '1' end
local out = admit({p .. 'owner:' .. cid, p .. 'owned:' .. id, p .. 'slots:' .. id},
  {id, ARGV[2], ARGV[3], ARGV[4], override, p, cid, ARGV[6], string.format('%.0f', limit)})
local reply = {id, fields, probed}
for i = 1, #out do reply[#reply + 1] = tostring(out[i]) end
return reply`;

/**
 * Sessions ended: for each, RELEASE_SLOT in each of its slots hashes, then (a
 * clean session) RELEASE, in one script however many sessions (the releases of
 * one event-loop turn, see TurnBatch). Each is compare-and-delete on its own
 * nonce, so a late one never frees a newer claim's record or slot.
 * KEYS: per session its owner record, then its slots hashes.
 * ARGV: prefix, then per session: clientId, node|nonce, nonce, release owner ('1'/'0'), slots count.
 */
const END_SESSIONS = `
local p = ARGV[1]
local k, a = 1, 2
while a + 4 <= #ARGV do
  local cid, holder, nonce, clean, n = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], tonumber(ARGV[a + 4])
  local owner = KEYS[k]
  for j = k + 1, k + n do
    if redis.call('HGET', KEYS[j], cid) == holder then redis.call('HDEL', KEYS[j], cid) end
  end
  if clean == '1' then
    local cur = redis.call('HMGET', owner, 'tok', 'nonce')
    if cur[2] == nonce then
      redis.call('DEL', owner)
      if cur[1] then redis.call('SREM', p .. 'owned:' .. cur[1], cid) end
    end
  end
  k, a = k + 1 + n, a + 5
end
return 0`;

interface OwnerCommands {
  tokenmqOwnerAdmit(numKeys: number, ...keysAndArgs: string[]): Promise<[number, ...string[]]>;
  tokenmqFindAdmit(indexKey: string, ...argv: string[]): Promise<[string, (string | null)[], ...string[]] | null>;
  tokenmqOwnerEnd(numKeys: number, ...keysAndArgs: string[]): Promise<number>;
  tokenmqOwnerClaim(owner: string, owned: string, ...argv: string[]): Promise<[number, string, string?]>;
  tokenmqOwnerUndo(owner: string, nonce: string, prefix: string, clientId: string, previous: string): Promise<number>;
  tokenmqOwnerRelease(owner: string, nonce: string, prefix: string, clientId: string): Promise<number>;
  tokenmqOwnerDrop(owned: string, tokenId: string, prefix: string): Promise<string[]>;
  tokenmqSlotClaim(slots: string, clientId: string, holder: string, limit: string, prefix: string, node: string, nodeTtl: string): Promise<[number, string]>;
  tokenmqSlotUndo(slots: string, clientId: string, holder: string, previous: string): Promise<number>;
  tokenmqSlotRelease(slots: string, clientId: string, holder: string): Promise<number>;
}

/** ADMIT's answer (`code` '0' granted, '1' owner, '2' limit; then its values) as an AdmitResult; `limitTokenId`: whose limit refused. */
function admitResult(code: string, a: string | undefined, b: string | undefined, prev: string[], limitTokenId: number): AdmitResult {
  if (code === '1') return { ok: false, refused: 'owner', owner: Number(a) };
  if (code === '2') return { ok: false, refused: 'limit', tokenId: limitTokenId };
  return { ok: true, orphan: a === '1', ownerPrevious: b ? b : null, slotPrevious: prev.map((p) => (p ? p : null)) };
}

/** The store connection with the owner scripts. */
type OwnerClient = Redis & OwnerCommands;

type Settle = (reply: [Error | null, unknown]) => void;

/** One queued command, or a run of session releases that go out as one END_SESSIONS call. */
type Entry =
  | { kind: 'command'; add: (r: OwnerClient) => Promise<unknown>; settle: Settle }
  | { kind: 'ends'; keys: string[]; argv: string[]; settles: Settle[] };

/**
 * The owner commands of the store connection in batches, one socket write each
 * (issue 10: with a command each, a CONNECT's lookup-and-claim and a
 * DISCONNECT's release cost a socket write apiece, on this 2-core class of
 * machine the largest item in the broker's profile). Commands asked while a
 * batch awaits its replies wait for them and leave together, as ioredis'
 * autopipelining does; unlike it, a batch never waits longer than
 * HOLD_MAX_MS for the one before (Redis paused or slow), so each command's
 * timeout still runs from at most that long after it was asked (SPEC §7 fail
 * fast: CONNACK 3, 503). Batches are written in the order asked and Redis runs
 * them so: a release asked before a CONNECT's claim frees its slot before that
 * claim counts (SPEC §2), as it did one command at a time. Consecutive session
 * releases share one END_SESSIONS call.
 */
class TurnBatch {
  private entries: Entry[] = [];
  private scheduled = false;
  private inFlight = 0;
  private holdTimer: NodeJS.Timeout | null = null;
  private readonly sent = new Set<Promise<void>>();

  constructor(private readonly client: Redis, private readonly prefix: string) {}

  run<T>(add: (r: OwnerClient) => Promise<unknown>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue({ kind: 'command', add, settle: ([err, reply]) => (err ? reject(err) : resolve(reply as T)) });
    });
  }

  /** A session's release: `keys` its owner record then its slots hashes; `argv` END_SESSIONS' five values. */
  end(keys: readonly string[], argv: readonly string[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const settle: Settle = ([err]) => (err ? reject(err) : resolve());
      const last = this.entries[this.entries.length - 1];
      if (last?.kind === 'ends' && last.settles.length < ENDS_PER_CALL) {
        last.keys.push(...keys);
        last.argv.push(...argv);
        last.settles.push(settle);
      } else {
        this.queue({ kind: 'ends', keys: [...keys], argv: [this.prefix, ...argv], settles: [settle] });
      }
    });
  }

  private queue(entry: Entry): void {
    this.entries.push(entry);
    this.schedule();
  }

  /** Sends at the end of this turn, or once the batch in flight answered (at most HOLD_MAX_MS later). */
  private schedule(): void {
    if (this.entries.length === 0) return;
    if (this.inFlight > 0) {
      this.holdTimer ??= setTimeout(() => {
        this.holdTimer = null;
        this.flush();
      }, HOLD_MAX_MS);
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.inFlight === 0) this.flush();
      else this.schedule();
    });
  }

  private flush(): void {
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    const entries = this.entries;
    if (entries.length === 0) return;
    this.entries = [];
    const client = this.client as OwnerClient;
    // One write for the batch: the socket is corked while its commands are written (a pipeline
    // object would do the same at several µs more per batch: it copies every script definition).
    const stream = client.status === 'ready' ? (client as unknown as { stream?: Writable }).stream : undefined;
    stream?.cork();
    const replies: Promise<void>[] = [];
    try {
      for (const e of entries) {
        const settle = (reply: [Error | null, unknown]): void => {
          if (e.kind === 'command') e.settle(reply);
          else for (const s of e.settles) s(reply);
        };
        let reply: Promise<unknown>;
        try {
          reply = e.kind === 'command' ? e.add(client) : client.tokenmqOwnerEnd(e.keys.length, ...e.keys, ...e.argv);
        } catch (err) {
          reply = Promise.reject(err);
        }
        replies.push(reply.then((value) => settle([null, value]), (err: unknown) => settle([err instanceof Error ? err : new Error(String(err)), null])));
      }
    } finally {
      stream?.uncork();
    }
    this.inFlight++;
    const sent = Promise.all(replies).then(() => {}).finally(() => {
      this.inFlight--;
      if (this.inFlight === 0 && this.holdTimer) {
        clearTimeout(this.holdTimer);
        this.holdTimer = null;
      }
      this.schedule();
    });
    this.sent.add(sent);
    void sent.finally(() => this.sent.delete(sent));
  }

  /** Sends what is queued at once and resolves when every batch sent has answered (the store closing). */
  async drain(): Promise<void> {
    // Calls asked before the close reach the queue once their connection check resolves (a turn at most).
    await new Promise((resolve) => setImmediate(resolve));
    this.flush();
    while (this.sent.size > 0) await Promise.allSettled([...this.sent]);
  }
}

export class RedisOwners implements ClientOwners {
  private readonly redis: Redis & OwnerCommands;
  private readonly batch: TurnBatch;
  private readonly nodes = new Set<string>();
  /** Node id → when the last liveness write that Redis answered was sent (ms). */
  private readonly renewed = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;

  /** `call` runs a Redis command the store's way (fails fast while Redis is down, errors mapped). */
  constructor(
    client: Redis,
    private readonly prefix: string,
    private readonly call: <T>(fn: () => Promise<T>) => Promise<T>,
  ) {
    client.defineCommand('tokenmqOwnerClaim', { numberOfKeys: 2, lua: CLAIM });
    client.defineCommand('tokenmqOwnerRelease', { numberOfKeys: 1, lua: RELEASE });
    client.defineCommand('tokenmqOwnerDrop', { numberOfKeys: 1, lua: DROP });
    client.defineCommand('tokenmqSlotClaim', { numberOfKeys: 1, lua: CLAIM_SLOT });
    client.defineCommand('tokenmqSlotRelease', { numberOfKeys: 1, lua: RELEASE_SLOT });
    client.defineCommand('tokenmqOwnerUndo', { numberOfKeys: 1, lua: UNDO });
    client.defineCommand('tokenmqSlotUndo', { numberOfKeys: 1, lua: UNDO_SLOT });
    // Key counts vary with the ancestors: given per call.
    client.defineCommand('tokenmqOwnerAdmit', { lua: ADMIT });
    client.defineCommand('tokenmqFindAdmit', { numberOfKeys: 1, lua: FIND_ADMIT });
    client.defineCommand('tokenmqOwnerEnd', { lua: END_SESSIONS });
    this.redis = client as Redis & OwnerCommands;
    this.batch = new TurnBatch(client, prefix);
    // A new connection may be to a Redis that lost its data (restarted): the next admission writes liveness again.
    client.on('ready', () => this.renewed.clear());
  }

  /** Every owner command goes through the turn's batch, so all keep the order they were asked in. */
  private send<T>(add: (r: OwnerClient) => Promise<unknown>): Promise<T> {
    return this.call(() => this.batch.run<T>(add));
  }

  async admit(c: OwnerClaim, slots: readonly SlotLimit[]): Promise<AdmitResult> {
    this.keepAlive(c.node);
    const keys = [this.ownerKey(c.clientId), `${this.prefix}owned:${c.tokenId}`, ...slots.map((sl) => this.slotsKey(sl.tokenId))];
    const argv = [
      String(c.tokenId), c.nonce, c.node, c.persistent ? '1' : '0', c.override ? '1' : '0', this.prefix, c.clientId,
      this.livenessTtl(c.node), ...slots.map((sl) => String(sl.limit)),
    ];
    const sentAt = Date.now();
    const [code, a, b, ...prev] = await this.send<[number, ...string[]]>((p) => p.tokenmqOwnerAdmit(keys.length, ...keys, ...argv));
    if (argv[7] !== '') this.renewed.set(c.node, sentAt);
    return admitResult(String(code), a, b, prev, slots[Number(a)]?.tokenId ?? c.tokenId);
  }

  /**
   * FIND_ADMIT: the raw lookup (id and field values, as StoreScripts.find) and
   * the admission when one was attempted.
   */
  async findAndAdmit(indexKey: string, req: AdmitRequest): Promise<{ id: string; fields: (string | null)[]; admission: AdmitResult | null; probed?: boolean[] } | null> {
    this.keepAlive(req.node);
    const ttl = this.livenessTtl(req.node);
    const sentAt = Date.now();
    const reply = await this.send<[string, (string | null)[], ...string[]] | null>((p) => p.tokenmqFindAdmit(
      indexKey, this.prefix, req.nonce, req.node, req.persistent ? '1' : '0', req.clientId, ttl, ...(req.probeKeys ?? []),
    ));
    if (reply === null) return null;
    const [id, fields, probed, code, a, b, ...prev] = reply;
    if (probed === undefined || code === undefined) return { id, fields, admission: null };
    // The admission ran, and with it the liveness write when one was asked for.
    if (ttl !== '') this.renewed.set(req.node, sentAt);
    const flags = req.probeKeys?.length ? Array.from(probed, (c) => c === '1') : undefined;
    return { id, fields, probed: flags, admission: admitResult(code, a, b, prev, Number(id)) };
  }

  async endSession(slots: readonly SessionSlot[], releaseOwner: boolean): Promise<void> {
    const first = slots[0];
    if (first === undefined) return;
    const keys = [this.ownerKey(first.clientId), ...slots.map((sl) => this.slotsKey(sl.tokenId))];
    const argv = [first.clientId, `${first.node}|${first.nonce}`, first.nonce, releaseOwner ? '1' : '0', String(slots.length)];
    await this.call(() => this.batch.end(keys, argv));
  }

  async claim(c: OwnerClaim): Promise<ClaimResult> {
    this.keepAlive(c.node);
    const [code, value, previous] = await this.send<[number, string, string?]>((p) => p.tokenmqOwnerClaim(
      this.ownerKey(c.clientId), `${this.prefix}owned:${c.tokenId}`,
      String(c.tokenId), c.nonce, c.node, c.persistent ? '1' : '0', c.override ? '1' : '0', this.prefix, c.clientId, String(NODE_TTL_MS),
    ));
    if (code === 1) return { ok: false, owner: Number(value) };
    return { ok: true, orphan: value === '1', previous: previous ? previous : null };
  }

  async undo(clientId: string, nonce: string, previous: string | null): Promise<void> {
    await this.send((p) => p.tokenmqOwnerUndo(this.ownerKey(clientId), nonce, this.prefix, clientId, previous ?? ''));
  }

  async release(clientId: string, nonce: string): Promise<void> {
    await this.send((p) => p.tokenmqOwnerRelease(this.ownerKey(clientId), nonce, this.prefix, clientId));
  }

  async dropToken(tokenId: number): Promise<string[]> {
    return this.send<string[]>((p) => p.tokenmqOwnerDrop(`${this.prefix}owned:${tokenId}`, String(tokenId), this.prefix));
  }

  async owner(clientId: string): Promise<number | null> {
    const tok = await this.send<string | null>((p) => p.hget(this.ownerKey(clientId), 'tok'));
    return tok === null ? null : Number(tok);
  }

  async claimSlot(slot: SessionSlot, limit: number): Promise<SlotClaim | null> {
    this.keepAlive(slot.node);
    const [granted, previous] = await this.send<[number, string]>((p) => p.tokenmqSlotClaim(
      this.slotsKey(slot.tokenId), slot.clientId, `${slot.node}|${slot.nonce}`, String(limit), this.prefix, slot.node, String(NODE_TTL_MS),
    ));
    return granted === 1 ? { previous: previous ? previous : null } : null;
  }

  async undoSlot(slot: SessionSlot, previous: string | null): Promise<void> {
    await this.send((p) => p.tokenmqSlotUndo(this.slotsKey(slot.tokenId), slot.clientId, `${slot.node}|${slot.nonce}`, previous ?? ''));
  }

  async releaseSlot(slot: SessionSlot): Promise<void> {
    await this.send((p) => p.tokenmqSlotRelease(this.slotsKey(slot.tokenId), slot.clientId, `${slot.node}|${slot.nonce}`));
  }

  async slotCount(tokenId: number): Promise<number> {
    return this.send<number>((p) => p.hlen(this.slotsKey(tokenId)));
  }

  private slotsKey(tokenId: number): string {
    return `${this.prefix}slots:${tokenId}`;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * Sends the owner commands still queued (releases of sessions that just ended)
   * and waits for their answers: the store calls it before it quits Redis, so a
   * clean shutdown leaves no claim behind (SPEC §1).
   */
  drain(): Promise<void> {
    return this.batch.drain();
  }

  private ownerKey(clientId: string): string {
    return `${this.prefix}owner:${clientId}`;
  }

  /** Renews the liveness key of each node that claimed through this store (SPEC §6: a dead node's clean claims go stale). */
  private keepAlive(node: string): void {
    this.nodes.add(node);
    if (this.timer) return;
    this.timer = setInterval(() => {
      for (const n of this.nodes) {
        const sentAt = Date.now();
        this.call(() => this.redis.set(`${this.prefix}owner-node:${n}`, '1', 'PX', NODE_TTL_MS))
          .then(() => { this.renewed.set(n, sentAt); }, () => { /* next round */ });
      }
    }, NODE_RENEW_MS);
    this.timer.unref();
  }

  /**
   * The TTL an admission renews the node's liveness key with, or '' when a
   * renewal sent less than NODE_RENEW_MS ago was answered (issue 10: one
   * command less per CONNECT). That key then lives at least
   * NODE_TTL_MS - NODE_RENEW_MS more, and the timer renews it before then.
   */
  private livenessTtl(node: string): string {
    const at = this.renewed.get(node);
    return at !== undefined && Date.now() - at < NODE_RENEW_MS ? '' : String(NODE_TTL_MS);
  }
}
