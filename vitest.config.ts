import { defineConfig } from 'vitest/config';

// Workspace packages are resolved to their TypeScript sources through the "source"
// export condition, so tests never need a prior build.
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    // tools/*/test/unit: the tiers' support code against scripted peers (the tiers themselves run
    // with their own configs, never here).
    include: ['packages/*/test/**/*.test.ts', 'examples/test/**/*.test.ts', 'tools/*/test/unit/**/*.test.ts'],
    pool: 'forks',
    // Many cases run real sockets, child processes, worker threads and whole migrations; 5 s (the
    // default) was seen to run out on a loaded 2-core machine where each passed alone. A timeout
    // only catches a hang: nothing here measures speed (that is npm run bench).
    testTimeout: 30_000,
  },
});
