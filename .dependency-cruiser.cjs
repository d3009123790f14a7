// The import graph's layer rules (issue 10): tokens ← store ← access ← {broker, api} ← start ← main.
// `npm run depgraph` prints the folder-level graph and fails on any violation below.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      severity: 'error',
      comment: 'A cycle between our modules: layers must only point down.',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'tokens-is-pure',
      severity: 'error',
      comment: 'src/tokens imports nothing of ours outside itself (SPEC: tokens answer, others ask).',
      from: { path: '^src/tokens/' },
      to: { path: '^src/', pathNot: '^src/tokens/' },
    },
    {
      name: 'store-on-tokens-only',
      severity: 'error',
      comment: 'src/store builds on src/tokens only.',
      from: { path: '^src/store/' },
      to: { path: '^src/', pathNot: '^src/(store|tokens)/' },
    },
    {
      name: 'access-on-tokens-and-store-only',
      severity: 'error',
      comment: 'The gate knows tokens and the store, never a protocol.',
      from: { path: '^src/access/' },
      to: { path: '^src/', pathNot: '^src/(access|store|tokens)/' },
    },
    {
      name: 'api-not-broker',
      severity: 'error',
      comment: 'src/api gets ports (src/access/ports.ts), never src/broker (nor metrics, which reads the broker).',
      from: { path: '^src/api/' },
      to: { path: '^src/(broker/|metrics\\.ts$)' },
    },
    {
      name: 'broker-not-api',
      severity: 'error',
      from: { path: '^src/broker/' },
      to: { path: '^src/api/' },
    },
    {
      name: 'only-composition-on-top',
      severity: 'error',
      comment: 'Nothing imports the composition (start.ts, main.ts).',
      from: { path: '^src/', pathNot: '^src/main\\.ts$' },
      to: { path: '^src/(start|main)\\.ts$' },
    },
    {
      name: 'aedes-only-in-broker',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/broker/' },
      to: { path: 'node_modules/(aedes|aedes-persistence-redis|mqemitter-redis|mqemitter)/' },
    },
    {
      name: 'fastify-only-in-api',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/api/' },
      to: { path: 'node_modules/(fastify|@fastify/[^/]+)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'], extensions: ['.ts', '.js', '.cjs', '.mjs', '.json'] },
    reporterOptions: {
      text: { highlightFocused: true },
    },
  },
};
