/**
 * The environment-neutral core: no `node:*` imports, Uint8Array in and out. Runs in Node and in browsers.
 */
export {
  VerityError,
  isVerityError,
  VERITY_ERROR_CODES,
  type VerityErrorCode,
  type VerityErrorData,
  type VerityErrorJson,
} from './errors.js';
export { DIGEST_SIZES, HASH_ALGORITHMS, resolveAlgorithm, digestSize, type HashAlgorithm } from './format/algorithms.js';
export { toHex, fromHex, parseUuid, formatUuid } from './binary/bytes.js';
export {
  DEFAULTS,
  MAX_BLOCK_SIZE,
  MAX_SALT_SIZE,
  MIN_BLOCK_SIZE,
  SUPERBLOCK_SIZE,
  validateParams,
  type VerityParams,
} from './format/params.js';
export {
  paramsForFormat,
  paramsFromSuperblock,
  paramsWithoutSuperblock,
  parseSalt,
  superblockFromParams,
  type TreeOptions,
} from './format/options.js';
export { parseSuperblock, serializeSuperblock, SUPERBLOCK_SIGNATURE, VERITY_SUPERBLOCK, type Superblock } from './format/superblock.js';
export type { Field, Placed, Struct, StructValue } from './binary/struct.js';
export { GPT_ENTRY, GPT_HEADER } from './image/gpt.js';
export { MBR } from './image/mbr.js';
export { VHD_DYNAMIC_HEADER, VHD_FOOTER } from './image/vhd.js';
export { computeGeometry, hashStartBlock, type TreeGeometry, type TreeLevel } from './format/geometry.js';
export type { BlockHasher, BlockHasherOptions, HashEngine, SaltPlacement } from './hash/engine.js';
export { hashWasmEngine } from './hash/hash-wasm-engine.js';
export { wasmSimdEngine } from './hash/wasm-simd-engine.js';
export { simdSupported } from './hash/wasm-kernel.js';
export { isZeroBlock, withZeroBlocks } from './hash/zero-blocks.js';
export { selfTest } from './hash/self-test.js';
export { bytesSource, MemorySink, readExactly, type ByteSink, type ByteSource, type ReadWriteSink } from './io/source.js';
export { planTree, type TreePlan } from './tree/plan.js';
export { buildTree, formatImage, writeSuperblock, type BuildResult } from './tree/build.js';
export { verifyTree, type LevelReport, type VerifyResult, type VerifyStatus } from './tree/verify.js';
export type { Progress, PassOptions } from './tree/progress.js';
export { RangeSet, type BlockRange } from './tree/ranges.js';
export { renderHeader, renderVerify, type FecReport } from './report/text.js';
export { computeFecGeometry, checkFecParams, type FecGeometry, type FecGeometryInput, type FecPlacement } from './fec/geometry.js';
export { createRsEncoder, DEFAULT_ROOTS, MAX_ROOTS, MIN_ROOTS, type RsEncoder } from './fec/rs.js';
export { encodeFec, type FecEncodeOptions, type FecInputs } from './fec/encode.js';
export { decodeErasures, restoreBlocks, type CoveredRange, type FecSources, type RestoreOptions, type RestoreSummary } from './fec/decode.js';
export { assessRepair, damagedCovered, withBlocks, type FecAssessment } from './tree/repairable.js';
export { SCHEMA_VERSION, dumpJson, formatJson, verifyJson } from './report/json.js';
export { sliceSource } from './io/slice.js';
export { openVhd, type VhdImage } from './image/vhd.js';
export {
  describePartition,
  partitionSource,
  readGpt,
  selectPartition,
  type GptPartition,
  type GptTable,
} from './image/gpt.js';
export { DPS_TYPES } from './image/dps.js';
export { findVerityPairs, type VerityPair } from './discovery/dps-pairs.js';
export { openVhdx, type VhdxImage, type VhdxInfo } from './image/vhdx/vhdx.js';
export { streamSource, type ByteStream, type StreamSource } from './io/sequential.js';
export type { OriginRun, SequentialMap } from './io/source.js';
export { filesystemSize, surveyImage, type Survey } from './discovery/survey.js';
export { findTargets, targetsClaiming, type RootHashClaim, type TargetSearch, type VerityTarget } from './discovery/targets.js';
export { inspectReport, renderInspect, type InspectReport } from './report/inspect.js';
export { imageVerifyJson, renderImageVerify, type ImageOutcome, type ImageStatus, type RootHashSource, type TargetOutcome } from './report/image.js';
export type { Scratch, VerifyTreeOptions } from './tree/verify.js';
