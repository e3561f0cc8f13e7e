/** Types of wasm/build.mjs, for the TypeScript tests that rebuild the kernel. */
export interface Artifact {
  name: string;
  shared: boolean;
  exportName: string;
}
export declare const ARTIFACTS: readonly Artifact[];
export declare function assemble(): Promise<Array<Artifact & { wat: string; wasm: Uint8Array }>>;
/** Writes every build output under `root` (default: the repository) and returns name, size and sha256 of each .wasm. */
export declare function build(root?: string): Promise<Array<{ name: string; bytes: number; sha256: string }>>;
