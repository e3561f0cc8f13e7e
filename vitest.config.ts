import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['**/node_modules/**', 'test/kernel/**', 'test/windows/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
