// Starts a throwaway redis-server on a free loopback port. Used by jest's global
// setup, by benches and by tests that need to stop and restart Redis themselves.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import type { Redis } from 'ioredis';

export interface RedisServerHandle {
  url: string;
  port: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** A port that was free a moment ago (redis-server cannot take --port 0). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

function startOnce(port: number, bin: string, dir?: string): Promise<RedisServerHandle> {
  return new Promise((resolve, reject) => {
    // With `dir`, an append-only file that survives SIGKILL (fsync on every write).
    const persistence = dir ? ['--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
    const child = spawn(bin, [
      '--port', String(port), '--bind', '127.0.0.1',
      '--save', '', ...persistence,
      '--protected-mode', 'yes', '--loglevel', 'notice', '--daemonize', 'no',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      if (out.includes('Ready to accept connections')) {
        detach();
        const handle: RedisServerHandle = {
          url: `redis://127.0.0.1:${port}`,
          port,
          process: child,
          stop: () => new Promise<void>((res) => {
            if (child.exitCode !== null || child.signalCode !== null) return res();
            child.once('exit', () => res());
            child.kill('SIGKILL');
          }),
        };
        resolve(handle);
      }
    };
    const onExit = (code: number | null): void => {
      detach();
      reject(new Error(`redis-server exited with ${code} on port ${port}: ${out.trim()}`));
    };
    const onError = (err: Error): void => {
      detach();
      reject(new Error(`cannot run ${bin} (${err.message}); install it: apt-get install -y redis-server`));
    };
    // Only our own listeners are removed, so teardown's exit wait still works.
    function detach(): void {
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      child.off('error', onError);
      child.stdout?.resume();
      child.stderr?.resume();
    }
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (c: Buffer) => { out += c.toString(); });
    child.on('exit', onExit);
    child.on('error', onError);
  });
}

/** Starts redis-server, retrying on a port collision; a fixed port restarts Redis where a test stopped it. */
export async function startRedisServer(opts: { port?: number; bin?: string; dir?: string } = {}): Promise<RedisServerHandle> {
  const bin = opts.bin ?? process.env.REDIS_SERVER_BIN ?? 'redis-server';
  let lastErr: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = opts.port ?? await freePort();
    try {
      const handle = await startOnce(port, bin, opts.dir);
      process.once('exit', () => { handle.process.kill('SIGKILL'); });
      return handle;
    } catch (err) {
      lastErr = err;
      if (String(err).includes('cannot run') || opts.port !== undefined && attempt >= 2) break;
    }
  }
  throw lastErr;
}

/** Deletes every key under a prefix (tests and benches clean up after themselves). */
export async function deleteByPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== '0');
}

/**
 * After a run on Redis: stop the server we started, or, on a Redis of the
 * caller's (REDIS_URL), delete only our prefix and leave the rest as it was.
 */
export async function releaseRedis(server: RedisServerHandle | null, prefix: string): Promise<void> {
  if (server) return server.stop();
  const { Redis } = await import('ioredis');
  const redis = new Redis(process.env.REDIS_URL!);
  await deleteByPrefix(redis, prefix);
  redis.disconnect();
}
