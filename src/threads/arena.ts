/**
 * The shared arena of a hash pool and the leases of its two slots: hands out buffers, tells whether a buffer is a
 * current lease, and recognises a stale one.
 *
 * The arena is a SharedArrayBuffer, or for the wasm-simd inner the buffer of a shared `WebAssembly.Memory`, so the
 * kernel hashes the reader's buffers in place. Layout (offsets 64-aligned, the slots 4096-aligned):
 *
 *   [control: claim counter] [thread 0: scratch, salt, read] … [thread N-1: …] [digest area] [slot 0] [slot 1]
 *
 * (scratch and salt only for the wasm-simd inner: the kernel's per-thread state and the salt its setup reads; the
 * kernel module has no data segments, so nothing else of its memory is taken). `read` is where a thread reads the
 * pieces of a batch that lies in files (READ_BYTES; pages never read into take no memory). Each slot holds one batch;
 * the digest area one batch's digests at 64 bytes per 512-byte block.
 *
 * One arena serves every pass, so memory stays fixed (2 × batchBytes and ~1/8 of that): the reader allocates two
 * chunk buffers per pass, which get slots 0 and 1, and the next pass gets them again. (A fresh arena per pass would
 * rely on the garbage collector to free the old ones, and worker threads that allocate almost nothing hardly ever
 * collect.) A pool therefore runs one pass at a time. Every allocation is a lease on a distinct SharedArrayBuffer
 * object aliasing the arena (structuredClone of a SharedArrayBuffer shares its memory), so a buffer whose slot has
 * since been leased again is recognised: using it rejects with E_INTERNAL and fails the pool, instead of hashing
 * another pass's data. Only a larger request than a slot re-creates the arena (the threads switch to the new one;
 * views of the old one are then hashed on the calling thread).
 */
import { MAX_BLOCK_SIZE, MAX_SALT_SIZE } from '../format/params.js';
import { VerityError } from '../errors.js';
import { wasmApi, type WasmMemory } from '../hash/wasm-kernel.js';
import { internal, type PoolInner, type ToWorker } from './protocol.js';

/**
 * Each thread's buffer for the pieces it reads from files: a piece is read and hashed while it is still in the core's
 * cache. At least one block of the largest size.
 */
export const READ_BYTES = Math.max(512 << 10, MAX_BLOCK_SIZE);
/** Fewer blocks than this are hashed on the calling thread: a round trip costs more. */
export const MIN_DISPATCH_BLOCKS = 64;
const CONTROL_BYTES = 64;
/** Scratch reserved per thread before a thread has reported the kernel's own need. */
const DEFAULT_SCRATCH = 64 << 10;
const WASM_PAGE = 64 << 10;
const SLOT_ALIGN = 4096;
/** Largest digest (sha512) and smallest block: the digest area holds one slot's digests at this density. */
const MAX_DIGEST = 64;
const MIN_BLOCK = 512;

const roundUp = (n: number, to: number): number => Math.ceil(n / to) * to;

/** One generation of the arena as the pool sees it: its memory, where the slots and the digest area lie, its leases. */
export interface Arena {
  id: number;
  buffer: SharedArrayBuffer;
  bytes: Uint8Array;
  counter: Int32Array;
  memory?: WasmMemory;
  slotBytes: number;
  slots: number[];
  /** Leases handed out per slot; a lease of an older generation is stale. */
  generations: number[];
  /** The slot the next allocation gets. */
  next: number;
  digest: number;
  digestBytes: number;
}

/** One `allocate` result: slot `slot` of `arena`, the `generation`-th time it was handed out. */
interface Lease {
  arena: Arena;
  slot: number;
  generation: number;
}

/** What the arenas need from the pool: its threads (to send each new arena to), and how to fail it. */
export interface ArenaHost {
  readonly name: string;
  readonly inner: PoolInner;
  readonly batchBytes: number;
  readonly threadCount: number;
  /** The kernel scratch each thread needs, once known. */
  readonly scratchBytes: number | undefined;
  post(index: number, message: ToWorker): void;
  fail(error: VerityError): never;
}

/** The pool's current arena and every lease handed out of it; replaces the arena when a request outgrows a slot. */
export class Arenas {
  /** The arena the threads hold; undefined once the pool has failed. */
  current: Arena | undefined;
  private nextArena = 1;
  /** Keyed by the SharedArrayBuffer object each lease's views are views of. */
  private readonly leases = new WeakMap<ArrayBufferLike, Lease>();

  constructor(private readonly host: ArenaHost) {}

  /** The arena the threads hold, made if there is none yet (a pass that reads nothing through `allocate`). */
  ensure(): Arena {
    return this.current ?? this.create(this.host.batchBytes);
  }

  /** A buffer of `bytes` in the next slot of the arena (a new, larger arena when a slot is too small). */
  allocate(bytes: number): Uint8Array {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw internal(`Cannot allocate ${bytes} bytes.`);
    let arena = this.current;
    if (!arena || bytes > arena.slotBytes) arena = this.create(Math.max(bytes, this.host.batchBytes));
    const slot = arena.next;
    arena.next = (slot + 1) % arena.slots.length;
    const lease: Lease = { arena, slot, generation: ++arena.generations[slot]! };
    // A distinct SharedArrayBuffer object over the same memory identifies this lease in every view derived from it.
    const alias = structuredClone(arena.buffer);
    this.leases.set(alias, lease);
    return new Uint8Array(alias, arena.slots[slot]!, bytes);
  }

  /**
   * Refuses a view whose slot has been leased again since (two passes at once on this pool, or a buffer kept past
   * its pass): its bytes may be another pass's. Fails the pool, so the other pass cannot complete either.
   */
  checkLease(src: Uint8Array): void {
    const lease = this.leases.get(src.buffer);
    if (!lease || lease.generation === lease.arena.generations[lease.slot]) return;
    this.host.fail(
      internal(
        `Hash pool ${this.host.name}: a buffer from allocate() was used after its memory was handed out again. ` +
          'A pool runs one pass at a time; use one pool per concurrent pass.',
      ),
    );
  }

  /** The current arena if `src` (its first `length` bytes) lies within the slot of a current lease. */
  locate(src: Uint8Array, length: number): Arena | undefined {
    const lease = this.leases.get(src.buffer);
    const arena = this.current;
    if (!lease || lease.arena !== arena || lease.generation !== arena.generations[lease.slot]) return undefined;
    const start = src.byteOffset;
    const slot = arena.slots[lease.slot]!;
    return start >= slot && start + length <= slot + arena.slotBytes ? arena : undefined;
  }

  /** A new arena with two slots of at least `bytes`, sent to every thread (which drop the previous one). */
  private create(bytes: number): Arena {
    const threads = this.host.threadCount;
    const wasm = this.host.inner === 'wasm-simd';
    const slotBytes = roundUp(Math.max(bytes, 1), SLOT_ALIGN);
    const scratchBytes = wasm ? roundUp(this.host.scratchBytes ?? DEFAULT_SCRATCH, 64) : 0;
    const saltBytes = wasm ? roundUp(MAX_SALT_SIZE, 64) : 0;
    const perThread = scratchBytes + saltBytes + READ_BYTES;
    const digest = CONTROL_BYTES + threads * perThread;
    const digestBytes = roundUp(Math.max(MIN_DISPATCH_BLOCKS, Math.floor(slotBytes / MIN_BLOCK)) * MAX_DIGEST, 64);
    const slot0 = roundUp(digest + digestBytes, SLOT_ALIGN);
    const total = slot0 + 2 * slotBytes;
    let buffer: SharedArrayBuffer;
    let memory: WasmMemory | undefined;
    if (wasm) {
      const pages = Math.ceil(total / WASM_PAGE);
      const api = wasmApi();
      if (!api) throw new VerityError('E_PARAM', 'This runtime has no WebAssembly; the wasm-simd pool cannot run.');
      memory = new api.Memory({ initial: pages, maximum: pages, shared: true });
      buffer = memory.buffer as SharedArrayBuffer;
    } else {
      buffer = new SharedArrayBuffer(total);
    }
    const arena: Arena = {
      id: this.nextArena++,
      buffer,
      bytes: new Uint8Array(buffer),
      counter: new Int32Array(buffer, 0, 1),
      slotBytes,
      slots: [slot0, slot0 + slotBytes],
      generations: [0, 0],
      next: 0,
      digest,
      digestBytes,
      ...(memory ? { memory } : {}),
    };
    for (let i = 0; i < threads; i++) {
      const scratch = CONTROL_BYTES + i * perThread;
      this.host.post(i, {
        t: 'arena',
        id: arena.id,
        scratch,
        scratchBytes,
        salt: scratch + scratchBytes,
        read: scratch + scratchBytes + saltBytes,
        counter: 0,
        ...(memory ? { memory } : { buffer }),
      });
    }
    this.current = arena;
    return arena;
  }
}
