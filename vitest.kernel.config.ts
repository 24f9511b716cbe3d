import { defineConfig } from 'vitest/config';

// The real-kernel tier (npm run test:kernel; tools/kernel-tier/): the host-generic test files,
// named *.host.test.ts, run inside a QEMU guest where LinuxHost has real VFIO and iommufd. As in
// vitest.config.ts, workspace packages resolve to their TypeScript sources. One file at a time,
// because files share the guest's devices; generous timeouts, because the guest runs under TCG.
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    include: ['packages/*/test/**/*.host.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
