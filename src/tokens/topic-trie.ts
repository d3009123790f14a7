// A set of topic filters compiled for the per-message question "does any of
// them match this topic?" (SPEC §4: per publish and per delivery, well under a
// microsecond). Filters share prefixes in a trie of levels; matching walks the
// topic with indexOf/startsWith and a stack preallocated at compile time, so it
// allocates nothing unless a node has many literal children (then one substring
// per level for the Map lookup).

const DOLLAR = 0x24;
/** Up to this many literal children are scanned with startsWith; more go into a Map. */
const SMALL_FANOUT = 8;

class TrieNode {
  /** Literal children while few: `keys[i]` leads to `nodes[i]`. */
  keys: string[] = [];
  nodes: TrieNode[] = [];
  /** Literal children once there are many (then `keys`/`nodes` are unused). */
  map: Map<string, TrieNode> | null = null;
  /** The `+` child: any one level. */
  plus: TrieNode | null = null;
  /** A filter `<path to here>/#` exists: this level and all below, including none. */
  hash = false;
  /** A filter ends exactly here. */
  end = false;
  /** Levels from the root (the root is 0). */
  readonly depth: number;

  constructor(depth: number) {
    this.depth = depth;
  }

  /** The literal child for `topic[start, end)`, or null. */
  child(topic: string, start: number, end: number): TrieNode | null {
    const map = this.map;
    if (map !== null) return map.get(topic.slice(start, end)) ?? null;
    const keys = this.keys;
    const length = end - start;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string;
      if (key.length === length && topic.startsWith(key, start)) return this.nodes[i] as TrieNode;
    }
    return null;
  }

  /** The literal child for `level`, created if missing (compile time only). */
  childFor(level: string): TrieNode {
    if (this.map !== null) {
      let node = this.map.get(level);
      if (node === undefined) {
        node = new TrieNode(this.depth + 1);
        this.map.set(level, node);
      }
      return node;
    }
    const index = this.keys.indexOf(level);
    if (index !== -1) return this.nodes[index] as TrieNode;
    const node = new TrieNode(this.depth + 1);
    this.keys.push(level);
    this.nodes.push(node);
    if (this.keys.length > SMALL_FANOUT) {
      this.map = new Map();
      for (let i = 0; i < this.keys.length; i++) this.map.set(this.keys[i] as string, this.nodes[i] as TrieNode);
      this.keys = [];
      this.nodes = [];
    }
    return node;
  }
}

export class TopicTrie {
  private readonly root = new TrieNode(0);
  private size = 0;
  private maxDepth = 0;
  /** DFS stack, sized at compile time: pending nodes and where their next level starts. */
  private stackNodes: TrieNode[] = [];
  private stackStarts: Int32Array = new Int32Array(0);

  /** Number of filters added. */
  get count(): number {
    return this.size;
  }

  /** Adds a valid topic filter (compile time). */
  add(filter: string): void {
    let node = this.root;
    const levels = filter.split('/');
    for (let i = 0; i < levels.length; i++) {
      const level = levels[i] as string;
      if (level === '#') {
        node.hash = true; // valid filters have `#` last [MQTT-4.7.1-2]
        break;
      }
      if (level === '+') {
        if (node.plus === null) node.plus = new TrieNode(node.depth + 1);
        node = node.plus;
      } else {
        node = node.childFor(level);
      }
      if (i === levels.length - 1) node.end = true;
    }
    this.size++;
    this.maxDepth = Math.max(this.maxDepth, levels.length);
    // The DFS holds at most one pending sibling per level, plus the node in hand.
    const capacity = this.maxDepth + 2;
    if (this.stackStarts.length < capacity) {
      const nodes: TrieNode[] = [];
      for (let i = 0; i < capacity; i++) nodes.push(this.root); // packed, one element kind
      this.stackNodes = nodes;
      this.stackStarts = new Int32Array(capacity);
    }
  }

  /**
   * Does any filter match `topic` (MQTT 3.1.1 §4.7)? A topic starting with `$`
   * is not matched by a filter whose first level is `+` or `#` [MQTT-4.7.2-1].
   * Iterative, so a filter with thousands of levels cannot overflow the stack.
   */
  match(topic: string): boolean {
    if (this.size === 0) return false;
    const root = this.root;
    const length = topic.length;
    const dollar = topic.charCodeAt(0) === DOLLAR;
    const stackNodes = this.stackNodes;
    const stackStarts = this.stackStarts;
    let sp = 0;
    let node = root;
    let start = 0; // where the next level of `topic` starts; length + 1 once all are consumed
    for (;;) {
      const wildcardsApply = node !== root || !dollar;
      if (node.hash && wildcardsApply) return true;
      if (start > length) {
        if (node.end) return true;
      } else {
        let end = topic.indexOf('/', start);
        if (end === -1) end = length;
        const plus = node.plus;
        if (plus !== null && wildcardsApply) {
          stackNodes[sp] = plus;
          stackStarts[sp] = end + 1;
          sp++;
        }
        const literal = node.child(topic, start, end);
        if (literal !== null) {
          stackNodes[sp] = literal;
          stackStarts[sp] = end + 1;
          sp++;
        }
      }
      if (sp === 0) return false;
      sp--;
      node = stackNodes[sp] as TrieNode;
      start = stackStarts[sp] as number;
    }
  }
}
