// Client id ownership in Redis (owners.ts), shared by every node, each change
// one Lua script (atomic: two nodes admitting two tokens with one client id at
// once, one wins).
//
// Layout under the prefix p:
//   {p}owner:{clientid}   HASH  tok nonce node pers
//   {p}owned:{tokenid}    SET   client ids whose record names this token (dropToken)
//   {p}owner-node:{node}  STRING, PX: the node is alive (renewed every few seconds while it holds claims)
//
// A record is stale, and another token may claim over it, when its token is no
// longer stored (deleted or expired while no node was there to drop it), or
// when it is a clean session's record from a node that stopped renewing its
// liveness key (SPEC §6: a node that died must not keep client ids forever).
// A persistent session's record stays whatever its node: the session is stored.
import type { Redis } from 'ioredis';
import type { ClaimResult, ClientOwners, OwnerClaim } from './owners.js';

const NODE_TTL_MS = 15_000;
const NODE_RENEW_MS = 5_000;

// KEYS: owner, owned(new token). ARGV: token, nonce, node, pers, override, prefix, clientId, nodeTtl.
const CLAIM = `
local p = ARGV[6]
redis.call('SET', p .. 'owner-node:' .. ARGV[3], '1', 'PX', ARGV[8])
local cur = redis.call('HMGET', KEYS[1], 'tok', 'node', 'pers')
local orphan = 0
if cur[1] and cur[1] ~= ARGV[1] then
  local gone = redis.call('EXISTS', p .. 'token:' .. cur[1]) == 0
  local dead = cur[3] ~= '1' and redis.call('EXISTS', p .. 'owner-node:' .. tostring(cur[2])) == 0
  if not gone and not dead and ARGV[5] ~= '1' then return {1, cur[1]} end
  if gone then orphan = 1 end
  redis.call('SREM', p .. 'owned:' .. cur[1], ARGV[7])
end
redis.call('HSET', KEYS[1], 'tok', ARGV[1], 'nonce', ARGV[2], 'node', ARGV[3], 'pers', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[7])
return {0, tostring(orphan)}`;

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
return out`;

interface OwnerCommands {
  tokenmqOwnerClaim(owner: string, owned: string, ...argv: string[]): Promise<[number, string]>;
  tokenmqOwnerRelease(owner: string, nonce: string, prefix: string, clientId: string): Promise<number>;
  tokenmqOwnerDrop(owned: string, tokenId: string, prefix: string): Promise<string[]>;
}

export class RedisOwners implements ClientOwners {
  private readonly redis: Redis & OwnerCommands;
  private readonly nodes = new Set<string>();
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
    this.redis = client as Redis & OwnerCommands;
  }

  async claim(c: OwnerClaim): Promise<ClaimResult> {
    this.keepAlive(c.node);
    const [code, value] = await this.call(() => this.redis.tokenmqOwnerClaim(
      this.ownerKey(c.clientId), `${this.prefix}owned:${c.tokenId}`,
      String(c.tokenId), c.nonce, c.node, c.persistent ? '1' : '0', c.override ? '1' : '0', this.prefix, c.clientId, String(NODE_TTL_MS),
    ));
    if (code === 1) return { ok: false, owner: Number(value) };
    return { ok: true, orphan: value === '1' };
  }

  async release(clientId: string, nonce: string): Promise<void> {
    await this.call(() => this.redis.tokenmqOwnerRelease(this.ownerKey(clientId), nonce, this.prefix, clientId));
  }

  async dropToken(tokenId: number): Promise<string[]> {
    return this.call(() => this.redis.tokenmqOwnerDrop(`${this.prefix}owned:${tokenId}`, String(tokenId), this.prefix));
  }

  async owner(clientId: string): Promise<number | null> {
    const tok = await this.call(() => this.redis.hget(this.ownerKey(clientId), 'tok'));
    return tok === null ? null : Number(tok);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
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
        this.call(() => this.redis.set(`${this.prefix}owner-node:${n}`, '1', 'PX', NODE_TTL_MS)).catch(() => { /* next round */ });
      }
    }, NODE_RENEW_MS);
    this.timer.unref();
  }
}
