export default async function globalTeardown(): Promise<void> {
  const redis = globalThis.__TOKENMQ_REDIS__;
  if (redis) {
    await redis.stop();
    globalThis.__TOKENMQ_REDIS__ = undefined;
  }
}
