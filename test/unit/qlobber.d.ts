// Just enough of qlobber 8 (a CommonJS package without types) for the reference
// matcher in topic.test.ts.
declare module 'qlobber' {
  interface QlobberOptions {
    separator?: string;
    wildcard_one?: string;
    wildcard_some?: string;
    match_empty_levels?: boolean;
    max_words?: number;
    max_wildcard_somes?: number;
  }
  interface QlobberTrue {
    add(topic: string): QlobberTrue;
    test(topic: string): boolean;
  }
  const qlobber: { QlobberTrue: new (options?: QlobberOptions) => QlobberTrue };
  export default qlobber;
}
