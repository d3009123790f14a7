// The Lua scripts of the Redis store. Every change that touches more than one
// key runs as one script, so it is atomic: no half-written token after a crash
// and no lost field when two nodes write the same token (SPEC §7). Scripts are
// registered once per connection with `defineCommand` (EVALSHA, with a
// fallback to EVAL after a Redis restart flushed the script cache).
//
// Keys are passed as KEYS wherever the caller can name them. Some cannot
// be: the key index of a token being changed (its name comes from the token's
// stored `hash` field), in the sweeper and the master checks the token
// hashes of ids read inside the script, and the children sets and the
// descendants' keys that a cascade (SPEC §2) finds as it goes. With a prefix holding a hash tag
// (`{tokenmq}:`) every key lives in one slot, so the scripts also run on Redis
// Cluster.
//
// Layout (p = prefix), see redis-store.ts:
//   {p}token:{id}  HASH  info enabled expire ttl created accessed access ips metadata hash parent clientids limits
//   {p}key:{sha}   STRING  id
//   {p}ids         ZSET  id -> deadline in ms
//   {p}masters     SET   ids of master tokens
//   {p}next_id     STRING  INCR counter
//   {p}children:{id} SET  ids of the children of token id (SPEC §2 `parent`)
//   channel {p}changes  {"id":N,"kind":"created|updated|deleted"}

import type { Redis } from 'ioredis';
import { HASH_FIELDS } from './redis-codec.js';

/**
 * Helpers shared by the scripts. Numbers are formatted with %.0f: Redis would
 * turn a large Lua number into exponent notation, which PEXPIREAT refuses.
 */
export const PRELUDE = `
local function int(v)
  if type(v) ~= 'string' or #v > 15 or not string.match(v, '^%d+$') then return nil end
  return tonumber(v)
end
local function fmt(n) return string.format('%.0f', n) end
-- The stored fields in HASH_FIELDS order (redis-codec.ts), for HMGET replies.
local FIELDS = {${HASH_FIELDS.map((f) => `'${f}'`).join(', ')}}
local function read_token(tk) return redis.call('HMGET', tk, unpack(FIELDS)) end
local function is_sha(h) return type(h) == 'string' and #h == 64 and string.match(h, '^[0-9a-f]+$') ~= nil end
-- SPEC §2: valid by time iff now < expire (expire > 0) or now < max(created, accessed) + ttl (ttl > 0).
local function deadline(expire, ttl, created, accessed)
  local d = 0
  if expire > 0 then d = expire end
  if ttl > 0 then
    local last = created
    if accessed > last then last = accessed end
    if last + ttl > d then d = last + ttl end
  end
  return d
end
local function token_key(prefix, id) return prefix .. 'token:' .. id end
local function index_key(prefix, sha) return prefix .. 'key:' .. sha end
local function event(id, kind) return '{"id":' .. id .. ',"kind":"' .. kind .. '"}' end
local function corrupt(id, message)
  return redis.error_reply('TOKENMQ_CORRUPT ' .. id .. ' token ' .. id .. ': ' .. message)
end
-- Reads the clocks of a token hash; returns expire, ttl, created, accessed, sha or nil and the bad field.
local function clocks(tk)
  local v = redis.call('HMGET', tk, 'expire', 'ttl', 'created', 'accessed', 'hash')
  local names = {'expire', 'ttl', 'created', 'accessed'}
  local out = {}
  for i = 1, 4 do
    out[i] = int(v[i])
    if out[i] == nil then return nil, names[i] end
  end
  if not is_sha(v[5]) then return nil, 'hash' end
  return out, v[5]
end
-- Deletes a token: its hash, its key index (only if it still names this id),
-- its zset entry and master mark. Returns the type the token key had and
-- whether the zset held the id.
local function children_key(prefix, id) return prefix .. 'children:' .. id end
local function remove(tk, ids, masters, prefix, id)
  local kind = redis.call('TYPE', tk).ok
  if kind == 'hash' then
    local sha = redis.call('HGET', tk, 'hash')
    if is_sha(sha) then
      local ik = index_key(prefix, sha)
      if redis.call('TYPE', ik).ok == 'string' and redis.call('GET', ik) == id then redis.call('DEL', ik) end
    end
    local parent = int(redis.call('HGET', tk, 'parent'))
    if parent ~= nil and parent > 0 and redis.call('TYPE', children_key(prefix, fmt(parent))).ok == 'set' then
      redis.call('SREM', children_key(prefix, fmt(parent)), id)
    end
  end
  if kind ~= 'none' then redis.call('DEL', tk) end
  local listed = redis.call('ZREM', ids, id)
  redis.call('SREM', masters, id)
  return kind, listed == 1
end
-- SPEC §2: deletes the children of token id, theirs and so on (not id itself),
-- publishing \`deleted\` for each so that every node closes their sessions.
-- Iterative: a chain of children may be deep. Ids only grow from parent to
-- child, and each children set is deleted when read, so it ends on any data.
local function remove_descendants(ids, masters, prefix, channel, id)
  local stack = {id}
  while #stack > 0 do
    local ck = children_key(prefix, table.remove(stack))
    if redis.call('TYPE', ck).ok == 'set' then
      local kids = redis.call('SMEMBERS', ck)
      redis.call('DEL', ck)
      for _, kid in ipairs(kids) do
        if string.match(kid, '^%d+$') then
          local kind, listed = remove(token_key(prefix, kid), ids, masters, prefix, kid)
          if kind ~= 'none' or listed then redis.call('PUBLISH', channel, event(kid, 'deleted')) end
          stack[#stack + 1] = kid
        end
      end
    end
  end
end
`;

/**
 * create. KEYS: ids, masters, then per token its hash and key index.
 * ARGV: mode, prefix, channel, parent id, parent access, parent ips, max
 * children (the four '' unless mode is 'child'), then per token 15 values:
 * id, the 13 hash fields (HASH_FIELDS order), master flag. Modes: 'strict' (a
 * taken key is an error), 'nx' (a taken key: create nothing, return 0),
 * 'nomaster' (a stored master: create nothing, return 0), 'child' (children
 * of the parent, which must still be stored, enabled, with the access and ips
 * the caller checked them against, and keep at most max children: else a
 * TOKENMQ_CHILD error). All tokens or none.
 */
const CREATE = `${PRELUDE}
local ids, masters = KEYS[1], KEYS[2]
local mode, prefix, channel = ARGV[1], ARGV[2], ARGV[3]
local n = (#KEYS - 2) / 2
if mode == 'nomaster' then
  for _, m in ipairs(redis.call('SMEMBERS', masters)) do
    if redis.call('TYPE', token_key(prefix, m)).ok == 'hash' then return 0 end
  end
end
if mode == 'child' then
  local ptk, ck = token_key(prefix, ARGV[4]), children_key(prefix, ARGV[4])
  if redis.call('TYPE', ptk).ok ~= 'hash' then return redis.error_reply('TOKENMQ_CHILD parent the parent token is gone') end
  local v = redis.call('HMGET', ptk, 'enabled', 'access', 'ips')
  -- Checked against what the caller read: a change committed since (which deleted the
  -- children it knew of) must not let a child made under the old rights survive.
  if v[1] ~= '1' or v[2] ~= ARGV[5] or v[3] ~= ARGV[6] then
    return redis.error_reply('TOKENMQ_CHILD parent the parent token changed meanwhile, try again')
  end
  if redis.call('TYPE', ck).ok == 'set' then
    -- Children that expired by themselves leave their id behind: not counted.
    for _, kid in ipairs(redis.call('SMEMBERS', ck)) do
      if redis.call('EXISTS', token_key(prefix, kid)) == 0 then redis.call('SREM', ck, kid) end
    end
  elseif redis.call('TYPE', ck).ok ~= 'none' then
    return corrupt(ARGV[4], 'the children index holds a ' .. redis.call('TYPE', ck).ok .. ', not a set')
  end
  if redis.call('SCARD', ck) + n > tonumber(ARGV[7]) then
    return redis.error_reply('TOKENMQ_CHILD limit the token already has ' .. redis.call('SCARD', ck) .. ' children (at most ' .. ARGV[7] .. ')')
  end
end
local deadlines = {}
for i = 1, n do
  local tk, ik, b = KEYS[1 + 2 * i], KEYS[2 + 2 * i], 7 + (i - 1) * 15
  local id = ARGV[b + 1]
  if redis.call('EXISTS', ik) == 1 then
    if mode == 'nx' then return 0 end
    return redis.error_reply('TOKENMQ_CONFLICT the key index of new token ' .. id .. ' is taken')
  end
  if redis.call('EXISTS', tk) == 1 or redis.call('ZSCORE', ids, id) then
    return redis.error_reply('TOKENMQ_CONFLICT token ' .. id .. ' already exists: next_id is behind the stored ids')
  end
  deadlines[i] = deadline(int(ARGV[b + 4]), int(ARGV[b + 5]), int(ARGV[b + 6]), int(ARGV[b + 7]))
end
for i = 1, n do
  local tk, ik, b = KEYS[1 + 2 * i], KEYS[2 + 2 * i], 7 + (i - 1) * 15
  local id = ARGV[b + 1]
  redis.call('HSET', tk, 'info', ARGV[b + 2], 'enabled', ARGV[b + 3], 'expire', ARGV[b + 4], 'ttl', ARGV[b + 5],
    'created', ARGV[b + 6], 'accessed', ARGV[b + 7], 'access', ARGV[b + 8], 'ips', ARGV[b + 9],
    'metadata', ARGV[b + 10], 'hash', ARGV[b + 11], 'parent', ARGV[b + 12],
    'clientids', ARGV[b + 13], 'limits', ARGV[b + 14])
  redis.call('SET', ik, id)
  -- SPEC §2: the keys expire by themselves when the token becomes invalid by time.
  local at = fmt(deadlines[i] * 1000)
  redis.call('PEXPIREAT', tk, at)
  redis.call('PEXPIREAT', ik, at)
  redis.call('ZADD', ids, at, id)
  if ARGV[b + 15] == '1' then redis.call('SADD', masters, id) end
  if mode == 'child' then redis.call('SADD', children_key(prefix, ARGV[4]), id) end
  redis.call('PUBLISH', channel, event(id, 'created'))
end
return n
`;

/**
 * update. KEYS: ids, masters, then the token hashes. ARGV: now (s), prefix,
 * channel, master flag ('1', '0', '' = access unchanged), count of patch
 * values, the patch as field/value pairs, then one id per token hash.
 * Only the patched fields are written (HSET), so concurrent writers of
 * different fields never lose one. All checks run before any write: a
 * refused patch changes nothing. Returns [id, fields, ...] of the tokens
 * still valid; those the change made invalid by time are deleted.
 */
const UPDATE = `${PRELUDE}
local ids, masters = KEYS[1], KEYS[2]
local now, prefix, channel, master = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local npatch = tonumber(ARGV[5])
local patch, fields = {}, {}
for j = 6, 5 + npatch, 2 do
  patch[ARGV[j]] = ARGV[j + 1]
  fields[#fields + 1] = ARGV[j]
  fields[#fields + 1] = ARGV[j + 1]
end
local todo = {}
for i = 3, #KEYS do
  local tk, id = KEYS[i], ARGV[3 + npatch + i]
  local kind = redis.call('TYPE', tk).ok
  if kind == 'hash' then
    local c, sha = clocks(tk)
    if c == nil then return corrupt(id, "stored field '" .. sha .. "' is malformed") end
    local expire, ttl = c[1], c[2]
    if patch.expire then expire = int(patch.expire) end
    if patch.ttl then ttl = int(patch.ttl) end
    -- SPEC §2: a token needs a non-zero expire or ttl.
    if expire == 0 and ttl == 0 then return redis.error_reply('TOKENMQ_INVALID expire/ttl') end
    todo[#todo + 1] = {tk, id, deadline(expire, ttl, c[3], c[4]), sha}
  elseif kind ~= 'none' then
    return corrupt(id, 'the stored key holds a ' .. kind .. ', not a hash')
  end
end
local out = {}
for _, t in ipairs(todo) do
  local tk, id, d, sha = t[1], t[2], t[3], t[4]
  if d <= now then
    -- SPEC §2: invalid by time means deleted.
    remove(tk, ids, masters, prefix, id)
    redis.call('PUBLISH', channel, event(id, 'deleted'))
    remove_descendants(ids, masters, prefix, channel, id)
  else
    -- SPEC §2: disabling a token, or changing its access or ips, deletes its children (and theirs).
    local cascade = patch.enabled == '0'
      or (patch.access ~= nil and redis.call('HGET', tk, 'access') ~= patch.access)
      or (patch.ips ~= nil and redis.call('HGET', tk, 'ips') ~= patch.ips)
    if #fields > 0 then redis.call('HSET', tk, unpack(fields)) end
    local at = fmt(d * 1000)
    redis.call('PEXPIREAT', tk, at)
    redis.call('PEXPIREAT', index_key(prefix, sha), at)
    redis.call('ZADD', ids, at, id)
    if master == '1' then redis.call('SADD', masters, id) elseif master == '0' then redis.call('SREM', masters, id) end
    redis.call('PUBLISH', channel, event(id, 'updated'))
    if cascade then remove_descendants(ids, masters, prefix, channel, id) end
    out[#out + 1] = id
    out[#out + 1] = read_token(tk)
  end
end
return out
`;

/**
 * delete. KEYS: ids, masters, then the token hashes. ARGV: prefix, channel,
 * then one id per token hash. Returns the ids that were stored. A token that
 * expired by itself but was not swept yet is cleaned up and reported as
 * deleted here, since the sweeper will no longer see it.
 */
const DELETE = `${PRELUDE}
local ids, masters, prefix, channel = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local out = {}
-- Read first: a token asked for may be a descendant of an earlier one, deleted by its cascade.
local stored = {}
for i = 3, #KEYS do stored[i] = redis.call('TYPE', KEYS[i]).ok == 'hash' end
for i = 3, #KEYS do
  local id = ARGV[i]
  local kind, listed = remove(KEYS[i], ids, masters, prefix, id)
  if stored[i] then out[#out + 1] = id end
  if kind ~= 'none' or listed then redis.call('PUBLISH', channel, event(id, 'deleted')) end
  remove_descendants(ids, masters, prefix, channel, id)
end
return out
`;

/**
 * touch. KEYS: ids, then the token hashes. ARGV: now (s), prefix, then one
 * id per token hash. accessed = max(accessed, now) and the deadline moves
 * with it. Missing, malformed and already expired tokens are skipped: one
 * bad token must not stop the others' refresh. No change event (touch is
 * frequent and changes nothing a session depends on). Returns the ids of
 * the skipped ones (gone: missing, malformed or expired), so that the caller
 * never takes a touch that wrote nothing for a live token (SPEC §4).
 */
const TOUCH = `${PRELUDE}
local ids, now, prefix = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local gone = {}
for i = 2, #KEYS do
  local tk, id = KEYS[i], ARGV[i + 1]
  local live = false
  -- No TYPE check (issue 10: a touch per CONNECT): clocks' HMGET fails on another type.
  local okc, c, sha = pcall(clocks, tk)
  if okc then
    if c ~= nil and deadline(c[1], c[2], c[3], c[4]) > now then
      live = true
      if c[4] < now then
        redis.call('HSET', tk, 'accessed', ARGV[1])
        local at = fmt(deadline(c[1], c[2], c[3], now) * 1000)
        redis.call('PEXPIREAT', tk, at)
        redis.call('PEXPIREAT', index_key(prefix, sha), at)
        redis.call('ZADD', ids, at, id)
      end
    end
  end
  if not live then gone[#gone + 1] = id end
end
return gone
`;

/**
 * sweep. KEYS: ids, masters. ARGV: prefix, channel, batch size. Deletes up
 * to a batch of tokens whose deadline passed by Redis's own clock (the clock
 * PEXPIREAT uses) and publishes `deleted` for each. Atomic: when every node
 * runs the sweeper, each expiry is reported exactly once. Returns the count.
 */
const SWEEP = `${PRELUDE}
local ids, masters, prefix, channel = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', ids, '-inf', fmt(now_ms), 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(due) do
  if string.match(id, '^%d+$') then
    remove(token_key(prefix, id), ids, masters, prefix, id)
    redis.call('PUBLISH', channel, event(id, 'deleted'))
    -- SPEC §2: an expired token takes its children with it.
    remove_descendants(ids, masters, prefix, channel, id)
  else
    redis.call('ZREM', ids, id)
  end
end
return due
`;

/**
 * findByKey. KEYS: the key index. ARGV: prefix. One round trip: the id the
 * index names, then its fields (HASH_FIELDS order). Returns nil or {id, fields}.
 */
/**
 * The lookup of findByKey, shared with the owners' find-and-admit script
 * (redis-owners.ts): KEYS[1] the key index, ARGV[1] the prefix; leaves `id`
 * and `fields` (HASH_FIELDS order) or returns.
 */
export const FIND_LOOKUP = `
-- No TYPE checks on this path (issue 10: it runs per CONNECT): GET and HMGET
-- fail on a key of another type, and only then is the type asked, for the message.
local id = redis.pcall('GET', KEYS[1])
if type(id) == 'table' then
  return redis.error_reply('TOKENMQ_CORRUPT - a key index holds a ' .. redis.call('TYPE', KEYS[1]).ok .. ', not a token id')
end
if not id then return false end
if not string.match(id, '^%d+$') then return redis.error_reply('TOKENMQ_CORRUPT - a key index holds no token id') end
local tk = token_key(ARGV[1], id)
local fields = redis.pcall('HMGET', tk, unpack(FIELDS))
if fields.err then return corrupt(id, 'the stored key holds a ' .. redis.call('TYPE', tk).ok .. ', not a hash') end
-- info, enabled and hash are always stored: all three nil is a missing token, or a malformed hash.
if not fields[1] and not fields[2] and not fields[10] and redis.call('EXISTS', tk) == 0 then return false end
`;

const FIND = `${PRELUDE}${FIND_LOOKUP}
return {id, fields}
`;

/**
 * hasMaster. KEYS: masters. ARGV: prefix. The set can hold for a moment the
 * id of a master that expired by itself and was not swept yet, so each
 * member's hash is checked.
 */
const HAS_MASTER = `
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('TYPE', ARGV[1] .. 'token:' .. m).ok == 'hash' then return 1 end
end
return 0
`;

/** count. KEYS: ids. Tokens whose deadline is still ahead by Redis's clock (expired, unswept ones excluded). */
const COUNT = `
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%.0f', now_ms), '+inf')
`;

/** Script names as registered on the connection; `numberOfKeys` unset means the caller passes it first. */
const DEFINITIONS = {
  tokenmqCreate: { lua: CREATE },
  tokenmqUpdate: { lua: UPDATE },
  tokenmqDelete: { lua: DELETE },
  tokenmqTouch: { lua: TOUCH },
  tokenmqSweep: { lua: SWEEP, numberOfKeys: 2 },
  tokenmqFind: { lua: FIND, numberOfKeys: 1 },
  tokenmqHasMaster: { lua: HAS_MASTER, numberOfKeys: 1 },
  tokenmqCount: { lua: COUNT, numberOfKeys: 1 },
} as const;

type ScriptName = keyof typeof DEFINITIONS;
type ScriptCall = (...args: (string | number)[]) => Promise<unknown>;

export type CreateMode = 'strict' | 'nx' | 'nomaster' | 'child';

/** What mode 'child' checks the stored parent against (its id, access and ips as read), and the children cap. */
export interface ChildGuard {
  parent: string;
  access: string;
  ips: string;
  max: string;
}

/** Typed calls of the scripts on one connection (the only place that knows their argument layout). */
export class StoreScripts {
  constructor(private readonly client: Redis) {
    for (const [name, definition] of Object.entries(DEFINITIONS)) client.defineCommand(name, definition);
  }

  private invoke(name: ScriptName, ...args: (string | number)[]): Promise<unknown> {
    // defineCommand adds methods that ioredis's types do not know of.
    const call = (this.client as unknown as Record<ScriptName, ScriptCall>)[name];
    return call.apply(this.client, args);
  }

  /**
   * `tokens[i]` is [tokenKey, indexKey, id, ...11 fields, masterFlag]. Resolves to the count created
   * (0: refused by mode). `child`: the parent guard of mode 'child'.
   */
  async create(
    ids: string, masters: string, mode: CreateMode, prefix: string, channel: string, tokens: string[][], child?: ChildGuard,
  ): Promise<number> {
    const keys: string[] = [ids, masters];
    const args: string[] = [mode, prefix, channel, child?.parent ?? '', child?.access ?? '', child?.ips ?? '', child?.max ?? ''];
    for (const [tokenKey, indexKey, ...values] of tokens) {
      keys.push(tokenKey as string, indexKey as string);
      args.push(...values);
    }
    return Number(await this.invoke('tokenmqCreate', keys.length, ...keys, ...args));
  }

  /** Resolves to [id, field values, ...] of the updated tokens (values in HASH_FIELDS order). */
  async update(
    keys: { ids: string; masters: string; tokens: string[] },
    now: number,
    prefix: string,
    channel: string,
    masterFlag: '' | '0' | '1',
    patchPairs: string[],
    idList: string[],
  ): Promise<unknown[]> {
    const reply = await this.invoke(
      'tokenmqUpdate',
      2 + keys.tokens.length, keys.ids, keys.masters, ...keys.tokens,
      now, prefix, channel, masterFlag, patchPairs.length, ...patchPairs, ...idList,
    );
    return Array.isArray(reply) ? reply : [];
  }

  async delete(keys: { ids: string; masters: string; tokens: string[] }, prefix: string, channel: string, idList: string[]): Promise<string[]> {
    const reply = await this.invoke('tokenmqDelete', 2 + keys.tokens.length, keys.ids, keys.masters, ...keys.tokens, prefix, channel, ...idList);
    return Array.isArray(reply) ? reply.map(String) : [];
  }

  /** Resolves to the ids that were not live tokens (nothing written for them). */
  async touch(keys: { ids: string; tokens: string[] }, now: number, prefix: string, idList: string[]): Promise<number[]> {
    const reply = await this.invoke('tokenmqTouch', 1 + keys.tokens.length, keys.ids, ...keys.tokens, now, prefix, ...idList);
    return Array.isArray(reply) ? reply.map(Number) : [];
  }

  /** The index entries swept (token ids, and any non-numeric entries removed). */
  async sweep(ids: string, masters: string, prefix: string, channel: string, batch: number): Promise<string[]> {
    const reply = await this.invoke('tokenmqSweep', ids, masters, prefix, channel, batch);
    return Array.isArray(reply) ? reply.map(String) : [];
  }

  /** Null, or the id and field values (HASH_FIELDS order) of the token the key index names. */
  async find(indexKey: string, prefix: string): Promise<[string, unknown] | null> {
    const reply = await this.invoke('tokenmqFind', indexKey, prefix);
    if (!Array.isArray(reply) || reply.length !== 2) return null;
    return [String(reply[0]), reply[1]];
  }

  async hasMaster(masters: string, prefix: string): Promise<boolean> {
    return Number(await this.invoke('tokenmqHasMaster', masters, prefix)) === 1;
  }

  async count(ids: string): Promise<number> {
    return Number(await this.invoke('tokenmqCount', ids));
  }
}
