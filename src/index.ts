/** The Node entry: the core plus file and block-device I/O and the node:crypto engine. */
export * from './core.js';
export { nodeCryptoEngine } from './threads/node-crypto-engine.js';
export { ENGINE_NAMES, ENGINES, openEngine, type EngineName, type EngineOptions, type OpenedEngine } from './threads/engines.js';
export { createHashPool } from './threads/hash-pool.js';
export { openOperand, splitAddress, describeLayer, detectContent, type Operand, type Layer, type OpenOptions } from './containers/operand.js';
export { openZip, type ZipArchive, type ZipEntryInfo } from './containers/zip.js';
export { formatFiles, type FecResult, type FormatResult } from './api/format.js';
export { verifyFiles, type VerifyOutcome } from './api/verify.js';
export { repairFiles, type RepairOptions, type RepairOutcome } from './api/repair.js';
export { verifyImage } from './api/verify-image.js';
export { dumpFile, type DumpResult } from './api/dump.js';
export { inspectImage } from './api/inspect.js';
export { readRootHashFile } from './api/root-hash.js';
export type { FecOptions, FormatOptions, RunOptions, Sources, VerifyOptions } from './api/options.js';
export { EXIT } from './cli/exit-codes.js';
