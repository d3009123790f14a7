// A min-heap of (deadline, token id) for the memory store's one expiry timer.
// Entries are never updated in place: a changed deadline pushes a new entry
// and the old one is recognised as stale when popped (the caller compares it
// with the token's current deadline). `compact` bounds the garbage.

export interface DeadlineEntry {
  /** UNIX seconds. */
  at: number;
  id: number;
}

export class DeadlineQueue {
  private heap: DeadlineEntry[] = [];

  get size(): number {
    return this.heap.length;
  }

  push(at: number, id: number): void {
    const heap = this.heap;
    heap.push({ at, id });
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((heap[parent] as DeadlineEntry).at <= at) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  peek(): DeadlineEntry | undefined {
    return this.heap[0];
  }

  pop(): DeadlineEntry | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined || heap.length === 0) return top;
    heap[0] = last;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < heap.length && (heap[left] as DeadlineEntry).at < (heap[smallest] as DeadlineEntry).at) smallest = left;
      if (right < heap.length && (heap[right] as DeadlineEntry).at < (heap[smallest] as DeadlineEntry).at) smallest = right;
      if (smallest === i) break;
      this.swap(i, smallest);
      i = smallest;
    }
    return top;
  }

  /** Rebuilds the heap from the live deadlines only, dropping stale entries. */
  rebuild(live: Iterable<DeadlineEntry>): void {
    this.heap = [];
    for (const entry of live) this.push(entry.at, entry.id);
  }

  clear(): void {
    this.heap = [];
  }

  private swap(a: number, b: number): void {
    const heap = this.heap;
    const tmp = heap[a] as DeadlineEntry;
    heap[a] = heap[b] as DeadlineEntry;
    heap[b] = tmp;
  }
}
