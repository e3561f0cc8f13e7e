import { defineConfig } from 'vitest/config';

// The Windows job (npm run test:windows): the CLI as a Windows program under Wine. One file at a time: each test
// starts node.exe processes, and Wine's server is shared.
export default defineConfig({
  test: {
    include: ['test/windows/**/*.test.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    fileParallelism: false,
  },
});
