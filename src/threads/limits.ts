/**
 * The names and bounds the command line declares its options with, apart from the modules that use them, so that
 * declaring the options loads no engine, worker pool or WebAssembly.
 */

/** The engines `--engine` accepts: `auto` picks one at run time (engines.ts). */
export const ENGINE_NAMES = ['auto', 'node-crypto', 'wasm-simd', 'hash-wasm'] as const;
/** One of ENGINE_NAMES. */
export type EngineName = (typeof ENGINE_NAMES)[number];

/** The most threads a pool starts. */
export const MAX_THREADS = 64;

/** Below this much data a pass hashes on the calling thread: starting worker threads costs more than it saves. */
export const MIN_BYTES_FOR_THREADS = 16 << 20;
