import { configDefaults, defineConfig } from 'vitest/config';

// The vfio-user tier (npm run test:vfio-user; tools/vfio-user-tier/): QEMU 11.1 from Debian
// trixie-backports, run in the tier's prepared root, with a qtest socket playing the guest. As in
// vitest.config.ts, workspace packages resolve to their TypeScript sources. One file at a time:
// each file starts its own QEMU (and device server), and the machine is small.
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    include: ['tools/vfio-user-tier/test/**/*.test.ts'],
    // The support code's unit tests need no QEMU: they run in npm test.
    exclude: [...configDefaults.exclude, 'tools/vfio-user-tier/test/unit/**'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
