/**
 * Generates the WAT text of the 4-lane WebAssembly SIMD SHA-256 kernel (wasm/README.md): every v128 holds the same
 * SHA-256 word of 4 independent messages, one per 32-bit lane. The generator, rather than hand-written WAT, gives exact
 * control over unrolling and register naming: the 8 state words rotate names from round to round, so no moves are
 * emitted, and after 8 rounds the names are back where they started, which makes 8 rounds the natural loop body.
 *
 * The design: W in linear memory, rounds as loops over an 8-round body with each message-schedule step interleaved
 * into its round. Those choices keep TurboFan's live set near the 15 XMM registers V8 allocates on x64 (xmm15 is its
 * scratch register). Σ/σ are balanced xor trees and each round reads its W[t] back from memory, which measured a few
 * percent faster here than xor chains or reusing the computed W[t] (DEFAULT_TUNING; wasm/README.md, "Tuning").
 *
 * Sources: SHA-256 is FIPS 180-4 (Secure Hash Standard, 2015): functions §4.1.2, constants K §4.2.2, padding
 * §5.1.1, initial hash value §5.3.3, message schedule and compression §6.2.2. The instructions are WebAssembly's
 * fixed-width SIMD (the v128 instructions of the WebAssembly 2.0 core specification; github.com/WebAssembly/simd) and,
 * in the shared build, a shared memory import from the threads proposal (github.com/WebAssembly/threads).
 *
 *   generate({ shared: false })  -> module importing a plain memory
 *   generate({ shared: true })   -> the same module importing a shared memory (worker threads)
 */
/** Scratch layout: byte offsets from the caller's 16-byte aligned scratch pointer. */
export const LAYOUT = Object.freeze({
  /** K[t] splatted to 4 lanes, 64 × v128. */
  K: 0,
  /** Message schedule W[t] of the 4-lane group being compressed, 64 × v128. */
  W: 1024,
  /** Chaining value of the group being hashed, 8 × v128 (a..h). */
  STATE: 2048,
  /** Chaining value every group starts from: H0, or the midstate after the salt's whole 64-byte chunks. */
  INIT: 2176,
  /** Per-tree parameters computed by setup (i32 fields, PARAM below). */
  PARAMS: 2304,
  /** Copy of the salt (at most 256 bytes). */
  SALT: 2368,
  /** Per-lane staging of the chunks that mix block bytes with salt or padding: 4 lanes × STAGE_LANE bytes. */
  STAGE: 2624,
  /** Scratch size in bytes (the value of scratch_bytes()). */
  SIZE: 4672,
});

/** Staged 64-byte chunks per lane. The most any (salt, block) needs is 6: a partial block chunk, 256 B salt, padding. */
export const STAGE_CHUNKS = 8;
const STAGE_LANE = STAGE_CHUNKS * 64;

/** Largest block size setup accepts: the message bit length 8 (salt_len + block_size) must fit in 32 bits. */
export const MAX_BLOCK = 0x1fffff00 - 256;

/** Offsets of the i32 fields in the PARAMS area. */
const PARAM = {
  B: 0, // block size
  HC: 4, // staged head chunks per lane (salt ‖ start of block)
  ND: 8, // chunks read straight from the block
  TC: 12, // staged tail chunks per lane (end of block ‖ [salt] ‖ padding)
  DOFF: 16, // offset in the block of the first direct chunk
  HSRC: 20, // head copy: block offset, staging offset, length
  HDST: 24,
  HLEN: 28,
  TSRC: 32, // tail copy: block offset, staging offset, length
  TDST: 36,
  TLEN: 40,
  F: 44, // whole salt chunks folded into INIT (format 1 only)
  N: 48, // 64-byte chunks per padded message
};

/** K[0..63], the SHA-256 round constants (FIPS 180-4 §4.2.2). */
const K = [
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
  0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
  0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
  0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
  0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];
/** H(0), the SHA-256 initial hash value (FIPS 180-4 §5.3.3). */
const H0 = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

// ---------------------------------------------------------------------------------------------------------------------
// S-expressions: arrays ['op', ...args] printed inline when short, one argument per line otherwise.

const WIDTH = 118;

function flat(x) {
  return Array.isArray(x) ? `(${x.map(flat).join(' ')})` : String(x);
}

function print(x, indent) {
  const pad = ' '.repeat(indent);
  const one = flat(x);
  if (!Array.isArray(x) || pad.length + one.length <= WIDTH) return pad + one;
  // Keep the operator and its immediates (non-list arguments) on the first line.
  let head = 1;
  while (head < x.length && !Array.isArray(x[head])) head++;
  // Conditions stay on the line of their `if`.
  if (x[0] === 'if' && head < x.length && pad.length + 5 + flat(x[head]).length <= WIDTH) head++;
  const lines = [`${pad}(${x.slice(0, head).map(flat).join(' ')}`];
  for (const arg of x.slice(head)) lines.push(print(arg, indent + 2));
  lines[lines.length - 1] += ')';
  return lines.join('\n');
}

/** A function body: statements (S-expressions) and comments, printed at a fixed indent. */
class Body {
  constructor(indent = 4) {
    this.lines = [];
    this.indent = indent;
  }
  add(...stmts) {
    for (const s of stmts) this.lines.push(print(s, this.indent));
    return this;
  }
  comment(text) {
    this.lines.push(`${' '.repeat(this.indent)};; ${text}`);
    return this;
  }
  raw(text) {
    for (const line of text.split('\n')) this.lines.push(line.length ? ' '.repeat(this.indent) + line : '');
    return this;
  }
  nest(open, fill, close = ')') {
    this.lines.push(' '.repeat(this.indent) + open);
    this.indent += 2;
    fill(this);
    this.indent -= 2;
    this.lines[this.lines.length - 1] += close;
    return this;
  }
  toString() {
    return this.lines.join('\n');
  }
}

const get = (name) => ['local.get', `$${name}`];
const set = (name, value) => ['local.set', `$${name}`, value];
const i32 = (n) => ['i32.const', n];
const add = (x, y) => ['i32x4.add', x, y];
const xor = (x, y) => ['v128.xor', x, y];
const and = (x, y) => ['v128.and', x, y];
const shr = (x, n) => ['i32x4.shr_u', x, i32(n)];
const shl = (x, n) => ['i32x4.shl', x, i32(n)];
const load = (offset, addr) => (offset ? ['v128.load', `offset=${offset}`, addr] : ['v128.load', addr]);
const store = (offset, addr, value) => (offset ? ['v128.store', `offset=${offset}`, addr, value] : ['v128.store', addr, value]);
const splat = (n) => ['v128.const', 'i32x4', ...Array(4).fill(`0x${(n >>> 0).toString(16).padStart(8, '0')}`)];

/** xor of the terms, as one sequential chain (((t0 ^ t1) ^ t2) ^ ...) (tuning alternative). */
const xorChain = (terms) => terms.reduce((acc, t) => xor(acc, t));

/** rotr as two shifts whose bits never overlap, so they can be combined with xor (no rotate in wasm SIMD). */
const rotrTerms = (x, n) => [shr(x, n), shl(x, 32 - n)];
/** xor of the terms as a balanced tree ((t0 ^ t1) ^ (t2 ^ t3)) ^ ... */
const xorTree = (terms) => (terms.length === 1 ? terms[0] : xor(xorTree(terms.slice(0, terms.length >> 1)), xorTree(terms.slice(terms.length >> 1))));

/** Tuning knobs; the defaults are what the committed kernel uses (wasm/README.md, "Tuning"). */
export const DEFAULT_TUNING = Object.freeze({
  /** Σ/σ as one sequential xor chain ('chain') or a balanced tree ('tree'). */
  sigma: 'tree',
  /** Rounds 16..63 use the W[t] just computed ('value') or load it back from memory ('reload'). */
  roundW: 'reload',
  /** Schedule steps interleaved with their rounds ('interleaved') or all 8 of an iteration first ('batched'). */
  schedule: 'interleaved',
  /** Byte swap as i8x16.shuffle ('shuffle') or i8x16.swizzle with a constant mask ('swizzle'). */
  bswap: 'swizzle',
});
let tuning = DEFAULT_TUNING;

const xors = (terms) => (tuning.sigma === 'tree' ? xorTree(terms) : xorChain(terms));
// Σ0, Σ1, σ0, σ1 of FIPS 180-4 §4.1.2 (Ch and Maj are in round() below).
const bigSigma0 = (x) => xors([...rotrTerms(x, 2), ...rotrTerms(x, 13), ...rotrTerms(x, 22)]);
const bigSigma1 = (x) => xors([...rotrTerms(x, 6), ...rotrTerms(x, 11), ...rotrTerms(x, 25)]);
const smallSigma0 = (x) => xors([...rotrTerms(x, 7), ...rotrTerms(x, 18), shr(x, 3)]);
const smallSigma1 = (x) => xors([...rotrTerms(x, 17), ...rotrTerms(x, 19), shr(x, 10)]);

// 4×4 transpose of 32-bit words and byte swap, as i8x16.shuffle patterns V8 lowers to punpck* and a byte shuffle.
const bytes = (...words) => words.flatMap((w) => [4 * w, 4 * w + 1, 4 * w + 2, 4 * w + 3]);
const SHUF = {
  lo32: bytes(0, 4, 1, 5), // [x0 y0 x1 y1]
  hi32: bytes(2, 6, 3, 7), // [x2 y2 x3 y3]
  lo64: bytes(0, 1, 4, 5), // [x0 x1 y0 y1]
  hi64: bytes(2, 3, 6, 7), // [x2 x3 y2 y3]
  bswap: [3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12],
};
const shuffle = (pattern, x, y) => ['i8x16.shuffle', ...pattern, x, y];
const bswap = (x) =>
  tuning.bswap === 'swizzle' ? ['i8x16.swizzle', x, ['v128.const', 'i8x16', ...SHUF.bswap]] : shuffle(SHUF.bswap, x, x);

/**
 * Transposes four vectors holding 4 consecutive big-endian words of lanes 0..3 into 4 vectors each holding one word of
 * all lanes, byte-swapped: the message load (lanes → words) and, run backwards, the digest store (words → lanes).
 * `u` names 4 temporaries; returns the 4 result expressions.
 */
function transpose(body, [x0, x1, x2, x3], u) {
  body.add(
    set(u[0], shuffle(SHUF.lo32, x0, x1)),
    set(u[1], shuffle(SHUF.lo32, x2, x3)),
    set(u[2], shuffle(SHUF.hi32, x0, x1)),
    set(u[3], shuffle(SHUF.hi32, x2, x3)),
  );
  return [
    bswap(shuffle(SHUF.lo64, get(u[0]), get(u[1]))),
    bswap(shuffle(SHUF.hi64, get(u[0]), get(u[1]))),
    bswap(shuffle(SHUF.lo64, get(u[2]), get(u[3]))),
    bswap(shuffle(SHUF.hi64, get(u[2]), get(u[3]))),
  ];
}

// ---------------------------------------------------------------------------------------------------------------------
// The compression rounds

/**
 * One round t of FIPS 180-4 §6.2.2 step 3, with Ch(e, f, g) = g ^ (e & (f ^ g)), equal to the standard's
 * (e & f) ^ (~e & g). `v` maps a..h to local names for this round; `carry` names the two locals that alternate holding
 * a ^ b, so Maj(a, b, c) = b ^ ((a ^ b) & (b ^ c)) reuses the previous round's a ^ b as this round's b ^ c. `wk` is the
 * expression W[t] + K[t].
 */
function round(body, t, v, carry, wk) {
  const [a, b, , d, e, f, g, h] = v;
  const prev = carry[t & 1];
  const cur = carry[(t + 1) & 1];
  body.comment(`round ${t}`);
  body.add(
    set('t1', add(get(h), wk)),
    set('t1', add(get('t1'), xor(get(g), and(get(e), xor(get(f), get(g)))))), // Ch(e, f, g)
    set('t1', add(get('t1'), bigSigma1(get(e)))),
    set(d, add(get(d), get('t1'))),
    set(cur, xor(get(a), get(b))),
    set(h, add(get('t1'), add(bigSigma0(get(a)), xor(get(b), and(get(cur), get(prev)))))), // Σ0(a) + Maj(a, b, c)
  );
}

/** Local names of a..h in round t: they rotate by one each round, so 8 rounds bring them back. */
function names(t) {
  const base = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
  return base.map((_, i) => base[(i - (t % 8) + 8) % 8]);
}

/**
 * $run(scratch, p0, p1, p2, p3, n): compresses n ≥ 1 consecutive 64-byte chunks of 4 messages into STATE; lane i reads
 * its chunks at p_i, p_i + 64, ...
 */
function runFunction() {
  const b = new Body(4);
  const s = get('s');
  const carry = ['x0', 'x1'];

  b.nest('(loop $chunk', (b) => {
    b.comment('W[0..15] = the 4 lanes\' chunks, transposed to one word per vector and byte-swapped to big-endian');
    for (let c = 0; c < 4; c++) {
      const lanes = [0, 1, 2, 3].map((i) => load(16 * c || 0, get(`p${i}`)));
      const words = transpose(b, lanes, ['u0', 'u1', 'u2', 'u3']);
      words.forEach((w, j) => b.add(store(LAYOUT.W + 16 * (4 * c + j), s, w)));
    }
    b.comment('a..h = STATE');
    'abcdefgh'.split('').forEach((n, i) => b.add(set(n, load(LAYOUT.STATE + 16 * i, s))));
    b.add(set(carry[0], xor(get('b'), get('c'))));

    b.comment('rounds 0..15: 2 × 8 rounds over W[t] as loaded');
    b.add(set('q', s), set('i', i32(2)));
    b.nest('(loop $rounds0_15', (b) => {
      for (let j = 0; j < 8; j++) {
        const wk = add(load(LAYOUT.W + 16 * j, get('q')), load(LAYOUT.K + 16 * j, get('q')));
        round(b, j, names(j), carry, wk);
      }
      b.add(set('q', ['i32.add', get('q'), i32(128)]));
      b.add(['br_if', '$rounds0_15', ['local.tee', '$i', ['i32.sub', get('i'), i32(1)]]]);
    });

    b.comment('rounds 16..63: 6 × 8 rounds, each computing its W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16]');
    b.comment('q = scratch + 16 (t0 - 16), so W[t - 16] is at offset W + 16 j and W[t] at W + 256 + 16 j');
    b.add(set('q', s), set('i', i32(6)));
    b.nest('(loop $rounds16_63', (b) => {
      const scheduleStep = (j) => {
        const w = (back) => load(LAYOUT.W + 16 * (j + 16 - back), get('q'));
        b.comment(`W[t] for t = 16 + 8 i + ${j}`);
        b.add(
          set('w', add(add(add(smallSigma1(w(2)), w(7)), smallSigma0(w(15))), w(16))),
          store(LAYOUT.W + 16 * (j + 16), get('q'), get('w')),
        );
      };
      const k = (j) => load(LAYOUT.K + 256 + 16 * j, get('q'));
      const reload = (j) => add(load(LAYOUT.W + 256 + 16 * j, get('q')), k(j));
      if (tuning.schedule === 'batched') {
        for (let j = 0; j < 8; j++) scheduleStep(j);
        for (let j = 0; j < 8; j++) round(b, j, names(j), carry, reload(j));
      } else {
        for (let j = 0; j < 8; j++) {
          scheduleStep(j);
          round(b, j, names(j), carry, tuning.roundW === 'reload' ? reload(j) : add(get('w'), k(j)));
        }
      }
      b.add(set('q', ['i32.add', get('q'), i32(128)]));
      b.add(['br_if', '$rounds16_63', ['local.tee', '$i', ['i32.sub', get('i'), i32(1)]]]);
    });

    b.comment('STATE += a..h');
    'abcdefgh'.split('').forEach((n, i) => b.add(store(LAYOUT.STATE + 16 * i, s, add(load(LAYOUT.STATE + 16 * i, s), get(n)))));
    b.comment('next chunk of every lane');
    for (let i = 0; i < 4; i++) b.add(set(`p${i}`, ['i32.add', get(`p${i}`), i32(64)]));
    b.add(['br_if', '$chunk', ['local.tee', '$n', ['i32.sub', get('n'), i32(1)]]]);
  });

  const v128Locals = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 't1', 'x0', 'x1', 'w', 'u0', 'u1', 'u2', 'u3'];
  return `  ;; Compresses n >= 1 consecutive 64-byte chunks of 4 messages into STATE; lane i reads them from p_i onwards.
  (func $run (param $s i32) (param $p0 i32) (param $p1 i32) (param $p2 i32) (param $p3 i32) (param $n i32)
    ${v128Locals.map((n) => `(local $${n} v128)`).join(' ')}
    (local $q i32) (local $i i32)
${b}
  )`;
}

// ---------------------------------------------------------------------------------------------------------------------
// setup and hash

function setupFunction() {
  const b = new Body(4);
  const s = get('s');
  b.raw(`;; salt_len 0..256 and block_size 1..${MAX_BLOCK} (8 L must fit in 32 bits), or trap
(if (i32.or (i32.gt_u (local.get $salt_len) (i32.const 256))
      (i32.gt_u (i32.sub (local.get $B) (i32.const 1)) (i32.const ${MAX_BLOCK - 1})))
  (then unreachable))`);
  b.comment('K table, splatted to 4 lanes');
  K.forEach((k, t) => b.add(store(LAYOUT.K + 16 * t, s, splat(k))));
  b.raw(`;; keep a copy of the salt
(memory.copy (i32.add (local.get $s) (i32.const ${LAYOUT.SALT})) (local.get $salt) (local.get $salt_len))

;; The message is salt ‖ block (format 1) or block ‖ salt (format 0), L bytes, padded to N 64-byte chunks. The block
;; starts at message offset bs, the salt at sp. Chunks [d0, d1) lie entirely inside the block and are read from it in
;; place; chunks [f, d0) ("head") and [d1, N) ("tail") are staged per lane. Chunks [0, f) hold salt only and are folded
;; into the initial state once, here.
(local.set $L (i32.add (local.get $salt_len) (local.get $B)))
(local.set $N (i32.shr_u (i32.add (local.get $L) (i32.const 72)) (i32.const 6)))
(if (local.get $salt_first)
  (then
    (local.set $bs (local.get $salt_len))
    (local.set $sp (i32.const 0))
    (local.set $f (i32.shr_u (local.get $salt_len) (i32.const 6))))
  (else
    (local.set $bs (i32.const 0))
    (local.set $sp (local.get $B))
    (local.set $f (i32.const 0))))
(local.set $d0 (i32.shr_u (i32.add (local.get $bs) (i32.const 63)) (i32.const 6)))
(local.set $d1 (i32.shr_u (i32.add (local.get $bs) (local.get $B)) (i32.const 6)))
;; a block too short to hold a whole chunk: stage everything from chunk f on as the head
(if (i32.le_u (local.get $d1) (local.get $d0))
  (then
    (local.set $d0 (local.get $N))
    (local.set $d1 (local.get $N))))
(local.set $hc (i32.sub (local.get $d0) (local.get $f)))
(local.set $tc (i32.sub (local.get $N) (local.get $d1)))
(if (i32.gt_u (i32.add (local.get $hc) (local.get $tc)) (i32.const ${STAGE_CHUNKS}))
  (then unreachable))
(i32.store offset=${LAYOUT.PARAMS + PARAM.B} (local.get $s) (local.get $B))
(i32.store offset=${LAYOUT.PARAMS + PARAM.HC} (local.get $s) (local.get $hc))
(i32.store offset=${LAYOUT.PARAMS + PARAM.ND} (local.get $s) (i32.sub (local.get $d1) (local.get $d0)))
(i32.store offset=${LAYOUT.PARAMS + PARAM.TC} (local.get $s) (local.get $tc))
(i32.store offset=${LAYOUT.PARAMS + PARAM.DOFF} (local.get $s)
  (i32.sub (i32.shl (local.get $d0) (i32.const 6)) (local.get $bs)))
(i32.store offset=${LAYOUT.PARAMS + PARAM.F} (local.get $s) (local.get $f))
(i32.store offset=${LAYOUT.PARAMS + PARAM.N} (local.get $s) (local.get $N))

;; head copy: the block bytes inside message range [64 f, 64 d0)
(local.set $lo (select (i32.shl (local.get $f) (i32.const 6)) (local.get $bs)
  (i32.gt_u (i32.shl (local.get $f) (i32.const 6)) (local.get $bs))))
(local.set $hi (select (i32.shl (local.get $d0) (i32.const 6)) (i32.add (local.get $bs) (local.get $B))
  (i32.lt_u (i32.shl (local.get $d0) (i32.const 6)) (i32.add (local.get $bs) (local.get $B)))))
(if (i32.gt_u (local.get $hi) (local.get $lo))
  (then
    (i32.store offset=${LAYOUT.PARAMS + PARAM.HSRC} (local.get $s) (i32.sub (local.get $lo) (local.get $bs)))
    (i32.store offset=${LAYOUT.PARAMS + PARAM.HDST} (local.get $s)
      (i32.sub (local.get $lo) (i32.shl (local.get $f) (i32.const 6))))
    (i32.store offset=${LAYOUT.PARAMS + PARAM.HLEN} (local.get $s) (i32.sub (local.get $hi) (local.get $lo))))
  (else
    (i32.store offset=${LAYOUT.PARAMS + PARAM.HSRC} (local.get $s) (i32.const 0))
    (i32.store offset=${LAYOUT.PARAMS + PARAM.HDST} (local.get $s) (i32.const 0))
    (i32.store offset=${LAYOUT.PARAMS + PARAM.HLEN} (local.get $s) (i32.const 0))))
;; tail copy: the block bytes inside message range [64 d1, 64 N)
(local.set $lo (select (i32.shl (local.get $d1) (i32.const 6)) (local.get $bs)
  (i32.gt_u (i32.shl (local.get $d1) (i32.const 6)) (local.get $bs))))
(local.set $hi (i32.add (local.get $bs) (local.get $B)))
(if (i32.gt_u (local.get $hi) (local.get $lo))
  (then
    (i32.store offset=${LAYOUT.PARAMS + PARAM.TSRC} (local.get $s) (i32.sub (local.get $lo) (local.get $bs)))
    (i32.store offset=${LAYOUT.PARAMS + PARAM.TDST} (local.get $s)
      (i32.add (i32.shl (local.get $hc) (i32.const 6)) (i32.sub (local.get $lo) (i32.shl (local.get $d1) (i32.const 6)))))
    (i32.store offset=${LAYOUT.PARAMS + PARAM.TLEN} (local.get $s) (i32.sub (local.get $hi) (local.get $lo))))
  (else
    (i32.store offset=${LAYOUT.PARAMS + PARAM.TSRC} (local.get $s) (i32.const 0))
    (i32.store offset=${LAYOUT.PARAMS + PARAM.TDST} (local.get $s) (i32.const 0))
    (i32.store offset=${LAYOUT.PARAMS + PARAM.TLEN} (local.get $s) (i32.const 0))))

;; Staging template of lane 0: every staged byte that is not a block byte (salt, 0x80, zeros, the bit length 8 L as a
;; big-endian 64-bit number, of which the top 32 bits are zero: FIPS 180-4 §5.1.1). hash() overwrites only the block
;; bytes.
(local.set $j (i32.const 0))
(block $template_done
  (loop $template
    (br_if $template_done (i32.ge_u (local.get $j) (i32.add (local.get $hc) (local.get $tc))))
    (local.set $k (select (i32.add (local.get $f) (local.get $j))
      (i32.add (local.get $d1) (i32.sub (local.get $j) (local.get $hc)))
      (i32.lt_u (local.get $j) (local.get $hc))))
    (local.set $i (i32.const 0))
    (loop $byte
      (local.set $m (i32.add (i32.shl (local.get $k) (i32.const 6)) (local.get $i)))
      (i32.store8 offset=${LAYOUT.STAGE}
        (i32.add (local.get $s) (i32.add (i32.shl (local.get $j) (i32.const 6)) (local.get $i)))
        (if (result i32) (i32.lt_u (i32.sub (local.get $m) (local.get $sp)) (local.get $salt_len))
          (then (i32.load8_u offset=${LAYOUT.SALT} (i32.add (local.get $s) (i32.sub (local.get $m) (local.get $sp)))))
          (else
            (if (result i32) (i32.eq (local.get $m) (local.get $L))
              (then (i32.const 0x80))
              (else
                (if (result i32) (i32.ge_u (local.get $m) (i32.sub (i32.shl (local.get $N) (i32.const 6)) (i32.const 4)))
                  (then
                    (i32.and
                      (i32.shr_u (i32.shl (local.get $L) (i32.const 3))
                        (i32.shl (i32.sub (i32.sub (i32.shl (local.get $N) (i32.const 6)) (i32.const 1)) (local.get $m))
                          (i32.const 3)))
                      (i32.const 0xff)))
                  (else (i32.const 0))))))))
      (br_if $byte (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 64))))
    (local.set $j (i32.add (local.get $j) (i32.const 1)))
    (br $template)))
;; lanes 1..3 start as copies of lane 0
${[1, 2, 3]
  .map(
    (lane) => `(memory.copy (i32.add (local.get $s) (i32.const ${LAYOUT.STAGE + lane * STAGE_LANE}))
  (i32.add (local.get $s) (i32.const ${LAYOUT.STAGE})) (i32.shl (i32.add (local.get $hc) (local.get $tc)) (i32.const 6)))`,
  )
  .join('\n')}
`);
  b.comment('INIT = H0, splatted');
  H0.forEach((h, i) => b.add(store(LAYOUT.INIT + 16 * i, s, splat(h))));
  b.raw(`;; format 1: fold the salt's whole chunks into INIT (all 4 lanes read the same salt copy)
(if (local.get $f)
  (then
    (memory.copy (i32.add (local.get $s) (i32.const ${LAYOUT.STATE})) (i32.add (local.get $s) (i32.const ${LAYOUT.INIT}))
      (i32.const 128))
    (local.set $p (i32.add (local.get $s) (i32.const ${LAYOUT.SALT})))
    (call $run (local.get $s) (local.get $p) (local.get $p) (local.get $p) (local.get $p) (local.get $f))
    (memory.copy (i32.add (local.get $s) (i32.const ${LAYOUT.INIT})) (i32.add (local.get $s) (i32.const ${LAYOUT.STATE}))
      (i32.const 128))))`);

  const i32Locals = ['L', 'N', 'bs', 'sp', 'f', 'd0', 'd1', 'hc', 'tc', 'lo', 'hi', 'j', 'k', 'i', 'm', 'p'];
  return `  ;; setup(scratch, salt, salt_len, block_size, salt_first): per-tree constants into the scratch area.
  (func $setup (export "setup")
    (param $s i32) (param $salt i32) (param $salt_len i32) (param $B i32) (param $salt_first i32)
    ${i32Locals.map((n) => `(local $${n} i32)`).join(' ')}
${b}
  )`;
}

function hashFunction() {
  const b = new Body(4);
  const s = get('s');
  const param = (name) => ['i32.load', `offset=${LAYOUT.PARAMS + PARAM[name]}`, s];
  b.add(
    ['if', ['i32.le_s', get('count'), i32(0)], ['then', ['return']]],
    set('o0', get('dst')),
    set('B', param('B')),
    set('hc', param('HC')),
    set('nd', param('ND')),
    set('tc', param('TC')),
    set('doff', param('DOFF')),
    set('hsrc', param('HSRC')),
    set('hdst', param('HDST')),
    set('hlen', param('HLEN')),
    set('tsrc', param('TSRC')),
    set('tdst', param('TDST')),
    set('tlen', param('TLEN')),
  );
  for (let i = 0; i < 4; i++) b.add(set(`st${i}`, ['i32.add', s, i32(LAYOUT.STAGE + i * STAGE_LANE)]));
  b.nest('(loop $group', (b) => {
    b.comment('r = lanes in this group (1..4); dummy lanes repeat the last real block and are not stored');
    b.add(
      set('r', ['select', get('count'), i32(4), ['i32.lt_u', get('count'), i32(4)]]),
      set('p0', get('src')),
      set('p1', ['select', ['i32.add', get('p0'), get('B')], get('p0'), ['i32.gt_u', get('r'), i32(1)]]),
      set('p2', ['select', ['i32.add', get('p1'), get('B')], get('p1'), ['i32.gt_u', get('r'), i32(2)]]),
      set('p3', ['select', ['i32.add', get('p2'), get('B')], get('p2'), ['i32.gt_u', get('r'), i32(3)]]),
    );
    b.comment('stage the block bytes that share chunks with salt or padding');
    for (const [len, dst, src] of [['hlen', 'hdst', 'hsrc'], ['tlen', 'tdst', 'tsrc']]) {
      const copies = [0, 1, 2, 3].map((i) => [
        'memory.copy',
        ['i32.add', get(`st${i}`), get(dst)],
        ['i32.add', get(`p${i}`), get(src)],
        get(len),
      ]);
      b.add(['if', get(len), ['then', ...copies]]);
    }
    b.comment('STATE = INIT');
    for (let i = 0; i < 8; i++) b.add(store(LAYOUT.STATE + 16 * i, s, load(LAYOUT.INIT + 16 * i, s)));
    const run = (ptrs, n) => ['if', get(n), ['then', ['call', '$run', s, ...ptrs, get(n)]]];
    const st = (off) => [0, 1, 2, 3].map((i) => (off ? ['i32.add', get(`st${i}`), off] : get(`st${i}`)));
    b.comment('head (staged), middle (in place), tail (staged)');
    b.add(
      run(st(null), 'hc'),
      run([0, 1, 2, 3].map((i) => ['i32.add', get(`p${i}`), get('doff')]), 'nd'),
      run(st(['i32.shl', get('hc'), i32(6)]), 'tc'),
    );
    b.comment('digests: transpose STATE back to one 32-byte big-endian digest per lane');
    for (let i = 1; i < 4; i++) {
      b.add(set(`o${i}`, ['i32.add', get(`o${i - 1}`), get('stride')]));
    }
    for (let half = 0; half < 2; half++) {
      const words = [0, 1, 2, 3].map((i) => load(LAYOUT.STATE + 16 * (4 * half + i), s));
      const lanes = transpose(b, words, ['u0', 'u1', 'u2', 'u3']);
      lanes.forEach((v, i) => b.add(set(`v${i}`, v)));
      b.add(store(16 * half, get('o0'), get('v0')));
      for (let i = 1; i < 4; i++) {
        b.add(['if', ['i32.gt_u', get('r'), i32(i)], ['then', store(16 * half, get(`o${i}`), get(`v${i}`))]]);
      }
    }
    b.add(
      set('src', ['i32.add', get('src'), ['i32.shl', get('B'), i32(2)]]),
      set('o0', ['i32.add', get('o3'), get('stride')]),
      ['br_if', '$group', ['i32.gt_s', ['local.tee', '$count', ['i32.sub', get('count'), get('r')]], i32(0)]],
    );
  });
  const i32Locals = ['B', 'hc', 'nd', 'tc', 'doff', 'hsrc', 'hdst', 'hlen', 'tsrc', 'tdst', 'tlen', 'r'];
  const ptrLocals = ['p0', 'p1', 'p2', 'p3', 'st0', 'st1', 'st2', 'st3', 'o0', 'o1', 'o2', 'o3'];
  return `  ;; hash(scratch, src, count, dst, dst_stride): digest of block i (block_size bytes at src + i block_size) to
  ;; dst + i dst_stride, 32 bytes each, nothing else written outside the scratch area.
  (func $hash (export "hash") (param $s i32) (param $src i32) (param $count i32) (param $dst i32) (param $stride i32)
    ${i32Locals.map((n) => `(local $${n} i32)`).join(' ')}
    ${ptrLocals.map((n) => `(local $${n} i32)`).join(' ')}
    (local $u0 v128) (local $u1 v128) (local $u2 v128) (local $u3 v128)
    (local $v0 v128) (local $v1 v128) (local $v2 v128) (local $v3 v128)
${b}
  )`;
}

/**
 * The kernel's WAT text. `shared` selects the imported memory: shared (worker threads) or not; `tune` overrides
 * DEFAULT_TUNING (for experiments; the build uses the defaults).
 */
export function generate({ shared, tune = {} }) {
  tuning = { ...DEFAULT_TUNING, ...tune };
  const memory = shared ? '(memory 1 65536 shared)' : '(memory 1)';
  return `;; 4-lane WebAssembly SIMD SHA-256 for dm-verity: sha256(salt ‖ block) or sha256(block ‖ salt) of many blocks.
;; GENERATED by wasm/src/gen-sha256.mjs (npm run build:wasm); do not edit. See wasm/README.md for the ABI.
;;
;; Scratch layout (offsets from the caller's 16-byte aligned scratch pointer, ${LAYOUT.SIZE} bytes):
;;   ${LAYOUT.K} K[64] splatted · ${LAYOUT.W} W[64] · ${LAYOUT.STATE} STATE[8] · ${LAYOUT.INIT} INIT[8] · ${LAYOUT.PARAMS} params · ${LAYOUT.SALT} salt[256] · ${LAYOUT.STAGE} staging 4 × ${STAGE_LANE}
(module
  (import "env" "memory" ${memory})

  ;; scratch_bytes(): bytes of scratch per instance.
  (func $scratch_bytes (export "scratch_bytes") (result i32)
    (i32.const ${LAYOUT.SIZE}))

${setupFunction()}

${hashFunction()}

${runFunction()}
)
`;
}
