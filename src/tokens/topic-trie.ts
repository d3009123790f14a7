// A set of topic filters compiled for the per-message question "does any of
// them match this topic?" (SPEC §4: per publish and per delivery, well under a
// microsecond). Filters share prefixes in a trie of levels; matching walks the
// topic with indexOf/startsWith and a stack preallocated at compile time, so it
// allocates nothing unless a node has many literal children (then one substring
// per level for the Map lookup).
//
// A trie may also hold template levels: a level that contains `${clientid}` or
// `${token_id}` (SPEC §3 placeholders) is kept as a template and compared, at
// match time, with the session's values (MatchContext). One trie then serves
// every session of every token with the same access; see Rights.forSession for
// when a session may use it.

const DOLLAR = 0x24;
/** Up to this many literal children are scanned with startsWith; more go into a Map. */
const SMALL_FANOUT = 8;

const CLIENT_ID = '${clientid}';
const TOKEN_ID = '${token_id}';
const PLACEHOLDERS = /\$\{clientid\}|\$\{token_id\}/g;
const SLOT_CLIENT_ID = 0;
const SLOT_TOKEN_ID = 1;

/** What a template level is compared with: the session's own values. */
export interface MatchContext {
  readonly clientId: string;
  /** The token id in decimal, as `${token_id}` would be replaced. */
  readonly tokenIdText: string;
}

/**
 * A level with placeholders, e.g. `dev-${clientid}`: literal text around
 * slots. It matches a topic level equal to the text with the slots filled in
 * (a literal level of the substituted filter), compared in place.
 */
class TemplateLevel {
  /** `literals[i]` precedes slot i; the last one follows the last slot. */
  readonly literals: string[];
  readonly slots: number[];
  readonly literalLength: number;
  readonly node: TrieNode;

  constructor(readonly text: string, node: TrieNode) {
    this.literals = [];
    this.slots = [];
    let last = 0;
    for (const m of text.matchAll(PLACEHOLDERS)) {
      this.literals.push(text.slice(last, m.index));
      this.slots.push(m[0] === CLIENT_ID ? SLOT_CLIENT_ID : SLOT_TOKEN_ID);
      last = m.index + m[0].length;
    }
    this.literals.push(text.slice(last));
    this.literalLength = this.literals.reduce((n, l) => n + l.length, 0);
    this.node = node;
  }

  /** Whether `topic[start, end)` is this level with `ctx`'s values in its slots. Allocation-free. */
  matches(topic: string, start: number, end: number, ctx: MatchContext): boolean {
    const slots = this.slots;
    const literals = this.literals;
    let length = this.literalLength;
    for (let i = 0; i < slots.length; i++) length += (slots[i] === SLOT_CLIENT_ID ? ctx.clientId : ctx.tokenIdText).length;
    if (length !== end - start) return false;
    let at = start;
    for (let i = 0; i < slots.length; i++) {
      const literal = literals[i] as string;
      if (!topic.startsWith(literal, at)) return false;
      at += literal.length;
      const value = slots[i] === SLOT_CLIENT_ID ? ctx.clientId : ctx.tokenIdText;
      if (!topic.startsWith(value, at)) return false;
      at += value.length;
    }
    return topic.startsWith(literals[slots.length] as string, at);
  }
}

/** Whether a filter level holds a placeholder. */
function isTemplate(level: string): boolean {
  return level.includes(CLIENT_ID) || level.includes(TOKEN_ID);
}

class TrieNode {
  /** Literal children while few: `keys[i]` leads to `nodes[i]`. */
  keys: string[] = [];
  nodes: TrieNode[] = [];
  /** Literal children once there are many (then `keys`/`nodes` are unused). */
  map: Map<string, TrieNode> | null = null;
  /** Template children (levels with placeholders), matched against the session's values. */
  templates: TemplateLevel[] | null = null;
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

  /** The template child for `level`, created if missing (compile time only). */
  templateFor(level: string): TrieNode {
    if (this.templates === null) this.templates = [];
    for (const t of this.templates) if (t.text === level) return t.node;
    const node = new TrieNode(this.depth + 1);
    this.templates.push(new TemplateLevel(level, node));
    return node;
  }
}

export class TopicTrie {
  private readonly root = new TrieNode(0);
  private size = 0;
  private maxDepth = 0;
  /** Most template children of one node: each may leave one more pending sibling on the stack. */
  private maxTemplates = 0;
  private templated = false;
  /** DFS stack, sized at compile time: pending nodes and where their next level starts. */
  private stackNodes: TrieNode[] = [];
  private stackStarts: Int32Array = new Int32Array(0);

  /** Number of filters added. */
  get count(): number {
    return this.size;
  }

  /** True when some filter has a template level: `match` then needs a MatchContext. */
  get hasTemplates(): boolean {
    return this.templated;
  }

  /**
   * Adds a valid topic filter (compile time). With `templates`, levels holding
   * `${clientid}` or `${token_id}` are template levels; without, they are
   * literal text like any other.
   */
  add(filter: string, templates = false): void {
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
      } else if (templates && isTemplate(level)) {
        const parent = node;
        node = parent.templateFor(level);
        this.templated = true;
        this.maxTemplates = Math.max(this.maxTemplates, parent.templates?.length ?? 0);
      } else {
        node = node.childFor(level);
      }
      if (i === levels.length - 1) node.end = true;
    }
    this.size++;
    this.maxDepth = Math.max(this.maxDepth, levels.length);
    // The DFS holds at most one pending sibling per level (plus, literal and the
    // templates, minus the one taken next), plus the node in hand.
    const capacity = (this.maxDepth + 2) * (1 + this.maxTemplates);
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
   * Template levels match the level `ctx` fills in; without `ctx` they match
   * nothing. Iterative, so a filter with thousands of levels cannot overflow the stack.
   */
  match(topic: string, ctx?: MatchContext): boolean {
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
        const templates = node.templates;
        if (templates !== null && ctx !== undefined) {
          for (let i = 0; i < templates.length; i++) {
            const t = templates[i] as TemplateLevel;
            if (t.matches(topic, start, end, ctx)) {
              stackNodes[sp] = t.node;
              stackStarts[sp] = end + 1;
              sp++;
            }
          }
        }
      }
      if (sp === 0) return false;
      sp--;
      node = stackNodes[sp] as TrieNode;
      start = stackStarts[sp] as number;
    }
  }
}
