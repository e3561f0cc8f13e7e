/**
 * The hash worker (hash-worker.ts and everything it imports) as one self-contained CommonJS script, started with
 * `new Worker(source, { eval: true })`. Nothing has to be found on disk, so a pool still starts when an application
 * bundler (esbuild, webpack, rollup) has folded this package into one file and no `hash-worker.js` sits beside it.
 *
 * In the sources this is `undefined`; `npm run build` replaces the compiled module with the bundled script
 * (scripts/finish-build.mjs). Until then (tests running the TypeScript sources) thread-set.ts starts the worker from
 * its file.
 */
export const HASH_WORKER_SOURCE: string | undefined = undefined;
