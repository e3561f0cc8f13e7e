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
export declare function base64Module(built: Array<Artifact & { wasm: Uint8Array }>): string;
/** Writes the module under `root` (default: the repository), with `inspect` also the WAT and .wasm to wasm/out/. */
export declare function build(
  root?: string,
  options?: { inspect?: boolean },
): Promise<Array<{ name: string; bytes: number; sha256: string }>>;
