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
  },
});
