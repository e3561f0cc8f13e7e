/** Types of wasm/build.mjs, for the TypeScript tests that rebuild the kernel. */
export interface Artifact {
  name: string;
  shared: boolean;
  exportName: string;
}
export declare const ARTIFACTS: readonly Artifact[];
/** The committed module's path, relative to the repository root. */
export declare const MODULE_PATH: string;
export declare function assemble(): Promise<Array<Artifact & { wat: string; wasm: Uint8Array }>>;
/** The text of the committed module for `built`. */
export declare function base64Module(built: Array<Artifact & { wasm: Uint8Array }>, header?: string[]): string;
/** The binaries of a module text written by base64Module(), each checked against its recorded sha256 (else throws). */
export declare function parseModule(text: string): Array<Artifact & { wasm: Uint8Array; sha256: string }>;
/** parseModule() of the committed module under `root` (default: the repository). */
export declare function readModule(root?: string): Array<Artifact & { wasm: Uint8Array; sha256: string }>;
/** Writes the module under `root` (default: the repository), with `inspect` also the WAT and .wasm to wasm/out/. */
export declare function build(
  root?: string,
  options?: { inspect?: boolean },
): Promise<Array<{ name: string; bytes: number; sha256: string }>>;
/** The Reed–Solomon encoder's modules (src/fec/wasm-rs-binary.ts). */
export declare const RS_ARTIFACTS: readonly Artifact[];
/** The Reed–Solomon encoder's committed module, relative to the repository root. */
export declare const RS_MODULE_PATH: string;
export declare function assembleRs(): Promise<Array<Artifact & { wat: string; wasm: Uint8Array }>>;
export declare function parseRsModule(text: string): Array<Artifact & { wasm: Uint8Array; sha256: string }>;
export declare function readRsModule(root?: string): Array<Artifact & { wasm: Uint8Array; sha256: string }>;
/** Writes the Reed–Solomon encoder's module under `root` (default: the repository), with `inspect` its WAT and .wasm. */
export declare function buildRs(
  root?: string,
  options?: { inspect?: boolean },
): Promise<Array<{ name: string; bytes: number; sha256: string }>>;
