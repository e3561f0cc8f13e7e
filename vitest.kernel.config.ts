import { defineConfig } from 'vitest/config';

// `npm run test:kernel`: only the Linux-kernel dm-verity matrix (test/kernel/), which boots a VM under TCG.
export default defineConfig({
  test: {
    include: ['test/kernel/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 1_800_000,
    fileParallelism: false,
  },
});
