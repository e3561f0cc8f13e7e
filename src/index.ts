/** The Node entry: the core plus file and block-device I/O and the node:crypto engine. */
export * from './core.js';
export { nodeCryptoEngine } from './threads/node-crypto-engine.js';
export { ENGINE_NAMES, ENGINES, openEngine, type EngineName, type EngineOptions, type OpenedEngine } from './threads/engines.js';
export { createHashPool } from './threads/hash-pool.js';
export { openOperand, splitAddress, describeLayer, detectContent, type Operand, type Layer, type OpenOptions } from './containers/operand.js';
export { openZip, type ZipArchive, type ZipEntryInfo } from './containers/zip.js';
export {
  dumpFile,
  formatFiles,
  inspectImage,
  type Sources,
  readRootHashFile,
  verifyFiles,
  type DumpResult,
  type FormatOptions,
  type FormatResult,
  type RunOptions,
  type VerifyOptions,
  type VerifyOutcome,
} from './api/api.js';
export { EXIT } from './cli/exit-codes.js';
