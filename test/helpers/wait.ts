// Awaiting in tests: an event with an upper bound, or a polled condition with a
// deadline (for state that announces no event, such as listings across nodes).
// Neither keeps running after its deadline.

export function within<T>(promise: Promise<T>, ms: number, what = 'event'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `check` until it returns a truthy value; fails after `ms` (an upper bound, not a sleep). */
export async function eventually<T>(check: () => T | Promise<T>, ms = 5000, what = 'condition', everyMs = 20): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
