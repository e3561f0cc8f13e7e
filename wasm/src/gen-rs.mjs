/**
 * Generates the WAT text of the WebAssembly SIMD Reed–Solomon encoder of dm-verity's FEC (wasm/README.md, "The
 * Reed–Solomon encoder"): RS(255, 255 − R) over GF(2^8) with the polynomial 0x11d, first consecutive root α^0, as
 * cryptsetup lib/verity/rs_encode_char.c (encode_rs_char) and the kernel's lib/reed_solomon define it, for every R
 * (roots) from 2 to 24.
 *
 * One round of veritysetup's FEC (lib/verity/verity_fec.c) encodes B codewords whose symbol i is byte b of message
 * block i: 16 adjacent codewords are 16 adjacent bytes of the same rows, so each v128 lane runs the LFSR of its own
 * codeword and one instruction steps 16 of them. The LFSR of a systematic encoder (divide m(x) · x^R by g(x)):
 *
 *   fb = m_i ^ p_0;   p_k = p_(k+1) ^ fb · g_(R−1−k)  (k < R − 1);   p_(R−1) = fb · g_0
 *
 * A product by a constant c is two 16-entry table lookups (split nibbles): c · fb = lo_c[fb & 15] ^ hi_c[fb >> 4],
 * with lo_c[n] = c · n and hi_c[n] = c · (n << 4); i8x16.swizzle is the lookup (one pshufb on x64, after V8's range
 * fix-up). The caller writes the 2R tables of g, in the order of k, at `tab` (32 bytes per k: lo then hi).
 *
 * The registers p_k live in v128 locals; V vectors (16·V codewords) advance together to give the CPU independent work.
 * In the generated code p_k is updated in increasing k, which reads each p_(k+1) before it is overwritten, so the
 * shift of the register costs no moves. After the last symbol the registers go to a scratch area and are scattered to
 * the FEC area's order (byte k of codeword b at `par + b·R + k`), a byte at a time: 16·V·R bytes per rsn·16·V
 * message bytes, under 4% of the work.
 *
 * Exports, one per R: `encode_R(tab, msg, stride, rsn, width, par, scr)`: codeword b (0 ≤ b < width, width a
 * multiple of 16·V(R)) has symbol i at `msg + i·stride + b`; its R parity bytes go to `par + b·R`; `scr` is 16·V·R
 * bytes of scratch, 16-byte aligned. And `lanes(R)`: 16·V(R), the multiple `width` must be.
 *
 *   generate({ shared: false })  -> module importing a plain memory
 *   generate({ shared: true })   -> the same importing a shared memory (worker threads)
 */

export const MIN_ROOTS = 2;
export const MAX_ROOTS = 24;

/**
 * Vectors per step for each R: more gives the out-of-order core independent dependency chains (the R updates of one
 * vector form a chain through fb), fewer keeps the R·V registers and the 2R tables nearer the 15 XMM registers V8
 * allocates on x64, so less spill traffic (measured: wasm/README.md, "Tuning").
 */
export function vectorsFor(roots, tune = {}) {
  return tune.vectors?.(roots) ?? (roots <= 3 ? 8 : 4);
}

/**
 * Keep the 2R table vectors in locals up to this R (loaded once per call; V8 spills what does not fit); above, load
 * them where they are used. Locals measured as fast or faster for every R.
 */
const TABLES_IN_LOCALS = 24;

function encodeFunction(R, tune) {
  const V = vectorsFor(R, tune);
  const inLocals = R <= (tune.tablesInLocals ?? TABLES_IN_LOCALS);
  const out = [];
  const emit = (s) => out.push(`    ${s}`);
  const locals = ['(local $col i32)', '(local $p i32)', '(local $i i32)', '(local $q i32)', '(local $s i32)', '(local $j i32)', '(local $mask v128)'];
  for (let v = 0; v < V; v++) locals.push(`(local $fb${v} v128)`, `(local $lo${v} v128)`, `(local $hi${v} v128)`);
  for (let k = 0; k < R; k++) for (let v = 0; v < V; v++) locals.push(`(local $r${k}_${v} v128)`);
  if (inLocals) for (let k = 0; k < R; k++) locals.push(`(local $tl${k} v128)`, `(local $th${k} v128)`);
  out.push(`  (func $encode_${R} (export "encode_${R}") (param $tab i32) (param $msg i32) (param $stride i32) (param $rsn i32) (param $width i32) (param $par i32) (param $scr i32)`);
  out.push(`    ${locals.join(' ')}`);
  emit('(local.set $mask (v128.const i8x16 15 15 15 15 15 15 15 15 15 15 15 15 15 15 15 15))');
  if (inLocals) {
    for (let k = 0; k < R; k++) {
      emit(`(local.set $tl${k} (v128.load offset=${32 * k} (local.get $tab)))`);
      emit(`(local.set $th${k} (v128.load offset=${32 * k + 16} (local.get $tab)))`);
    }
  }
  const tl = (k) => (inLocals ? `(local.get $tl${k})` : `(v128.load offset=${32 * k} (local.get $tab))`);
  const th = (k) => (inLocals ? `(local.get $th${k})` : `(v128.load offset=${32 * k + 16} (local.get $tab))`);
  emit('(block $done');
  emit('  (loop $cols');
  emit('    (br_if $done (i32.ge_u (local.get $col) (local.get $width)))');
  for (let k = 0; k < R; k++) for (let v = 0; v < V; v++) emit(`    (local.set $r${k}_${v} (v128.const i64x2 0 0))`);
  emit('    (local.set $p (i32.add (local.get $msg) (local.get $col)))');
  emit('    (local.set $i (local.get $rsn))');
  emit('    (loop $sym');
  for (let v = 0; v < V; v++) {
    emit(`      (local.set $fb${v} (v128.xor (v128.load offset=${16 * v} (local.get $p)) (local.get $r0_${v})))`);
    emit(`      (local.set $lo${v} (v128.and (local.get $fb${v}) (local.get $mask)))`);
    emit(`      (local.set $hi${v} (i8x16.shr_u (local.get $fb${v}) (i32.const 4)))`);
  }
  for (let k = 0; k < R; k++) {
    for (let v = 0; v < V; v++) {
      const product = `(v128.xor (i8x16.swizzle ${tl(k)} (local.get $lo${v})) (i8x16.swizzle ${th(k)} (local.get $hi${v})))`;
      emit(`      (local.set $r${k}_${v} ${k < R - 1 ? `(v128.xor (local.get $r${k + 1}_${v}) ${product})` : product})`);
    }
  }
  emit('      (local.set $p (i32.add (local.get $p) (local.get $stride)))');
  emit('      (br_if $sym (local.tee $i (i32.sub (local.get $i) (i32.const 1)))))');
  // Register k, vector v to scr + k·16V + 16v: byte j of the 16V codewords of this step is at scr + k·16V + j.
  for (let k = 0; k < R; k++) for (let v = 0; v < V; v++) emit(`    (v128.store offset=${16 * (k * V + v)} (local.get $scr) (local.get $r${k}_${v}))`);
  emit(`    (local.set $q (i32.add (local.get $par) (i32.mul (local.get $col) (i32.const ${R}))))`);
  emit('    (local.set $s (local.get $scr))');
  emit(`    (local.set $j (i32.const ${16 * V}))`);
  emit('    (loop $scatter');
  for (let k = 0; k < R; k++) emit(`      (i32.store8 offset=${k} (local.get $q) (i32.load8_u offset=${16 * V * k} (local.get $s)))`);
  emit(`      (local.set $q (i32.add (local.get $q) (i32.const ${R})))`);
  emit('      (local.set $s (i32.add (local.get $s) (i32.const 1)))');
  emit('      (br_if $scatter (local.tee $j (i32.sub (local.get $j) (i32.const 1)))))');
  emit(`    (local.set $col (i32.add (local.get $col) (i32.const ${16 * V})))`);
  emit('    (br $cols)))');
  out.push('  )');
  return out.join('\n');
}

/** The module's WAT text; `shared` selects the memory import (a plain or a shared memory, otherwise identical). */
export function generate({ shared = false, tune = {} } = {}) {
  const parts = [
    ';; GENERATED by wasm/src/gen-rs.mjs: the WebAssembly SIMD Reed–Solomon encoder of dm-verity FEC (wasm/README.md).',
    '(module',
    `  (import "env" "memory" (memory 1${shared ? ' 65536 shared' : ''}))`,
  ];
  // lanes(R): the codewords one step encodes, the multiple a call's width must be.
  const lanes = [];
  for (let R = MIN_ROOTS; R <= MAX_ROOTS; R++) lanes.push(`(if (i32.eq (local.get $r) (i32.const ${R})) (then (return (i32.const ${16 * vectorsFor(R, tune)}))))`);
  parts.push(`  (func (export "lanes") (param $r i32) (result i32)\n    ${lanes.join('\n    ')}\n    (i32.const 0))`);
  for (let R = MIN_ROOTS; R <= MAX_ROOTS; R++) parts.push(encodeFunction(R, tune));
  parts.push(')');
  return `${parts.join('\n')}\n`;
}
