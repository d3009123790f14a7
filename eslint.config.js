import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'error',
    },
  },
  // Layers (issue 10): tokens pure; Aedes and its Redis parts only in broker/; Fastify only in api/;
  // api/ never reaches into broker/ (it gets ports, access/ports.ts). `npm run depgraph` checks the graph too.
  {
    files: ['src/tokens/**'],
    rules: {
      'no-restricted-imports': ['error', {
        // node:net only for its pure parts (address parsing and matching), never sockets.
        paths: [{ name: 'node:net', allowImportNames: ['BlockList', 'isIP', 'isIPv4', 'isIPv6'], message: 'src/tokens is pure: node:net for BlockList/isIP only.' }],
        patterns: [
          { group: ['node:*', '!node:net', 'fs', 'fs/*', 'net', 'http', 'https', 'http2', 'tls', 'dgram', 'child_process', 'cluster', 'worker_threads', 'dns', 'stream', 'readline'], message: 'src/tokens is pure: no I/O modules.' },
          { group: ['../store/*', '../broker/*', '../api/*', '../access/*', '../*.js'], message: 'src/tokens imports nothing of ours outside src/tokens.' },
          { group: ['aedes', 'aedes-*', 'mqemitter-*', 'fastify', '@fastify/*', 'ioredis', 'pino'], message: 'src/tokens is pure.' },
        ],
      }],
    },
  },
  {
    files: ['src/**/*.ts'],
    // Each folder below has its own block: in flat config the last block naming a rule wins.
    ignores: ['src/broker/**', 'src/api/**', 'src/tokens/**'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['aedes', 'aedes-*', 'mqemitter-redis', 'mqemitter'], message: 'Only src/broker knows Aedes and its Redis parts.' },
          { group: ['fastify', '@fastify/*'], message: 'Only src/api knows Fastify.' },
        ],
      }],
    },
  },
  {
    files: ['src/broker/**'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['fastify', '@fastify/*'], message: 'Only src/api knows Fastify.' },
          { group: ['../api/*'], message: 'src/broker never imports src/api.' },
        ],
      }],
    },
  },
  {
    files: ['src/api/**'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['aedes', 'aedes-*', 'mqemitter-redis', 'mqemitter'], message: 'Only src/broker knows Aedes and its Redis parts.' },
          { group: ['../broker/*', '../broker'], message: 'src/api gets ports (src/access/ports.ts), never src/broker.' },
          { group: ['../metrics.js'], message: 'src/api sees metrics through access/ports.ts (RestMetrics).' },
        ],
      }],
    },
  },
  {
    // The console runs in the browser (SPEC §9).
    files: ['src/console/**/*.js'],
    languageOptions: { globals: { ...globals.browser } },
  },
  {
    files: ['test/**', 'bench/**'],
    rules: { 'no-console': 'off', '@typescript-eslint/no-non-null-assertion': 'off' },
  },
);
