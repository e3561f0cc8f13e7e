/** The Node entry: the core plus file and block-device I/O and the node:crypto engine. */
export * from './core.js';
export { nodeCryptoEngine } from './hash/node-engine.js';
export {
  dumpFile,
  ENGINES,
  formatFiles,
  readRootHashFile,
  verifyFiles,
  type DumpResult,
  type FormatOptions,
  type FormatResult,
  type RunOptions,
  type VerifyOptions,
  type VerifyOutcome,
} from './node/api.js';
export { EXIT } from './cli/exit-codes.js';
