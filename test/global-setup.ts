// Jest global setup: one throwaway redis-server for the whole run, unless REDIS_URL is given.
// Workers inherit process.env, so tests read process.env.REDIS_URL.
import { startRedisServer, type RedisServerHandle } from './helpers/redis-server.ts';

declare global {
  var __TOKENMQ_REDIS__: RedisServerHandle | undefined;
}

export default async function globalSetup(): Promise<void> {
  if (process.env.REDIS_URL) return;
  const redis = await startRedisServer();
  globalThis.__TOKENMQ_REDIS__ = redis;
  process.env.REDIS_URL = redis.url;
  process.env.TOKENMQ_TEST_REDIS_OWNED = '1';
}
