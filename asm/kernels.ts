import { BinaryCode, UnaryCode } from "../src/backends/wasm-codes";
/**
 * WASM SIMD kernels (AssemblyScript, compiled by `npm run build:wasm` to build/kernels-shared.wasm
 * and build/kernels-relaxed.wasm, both over an imported shared memory).
 *
 * Memory is managed by the host: it copies operands into the linear memory above `heapBase()`,
 * passes byte addresses, and reads results back. Nothing here allocates.
 *
 * matmul: op(A) @ op(B) = C, row-major (GotoBLAS-style loops). Per K-block of KC, op(B) is packed
 * into NR-column panels and, per row block of MC, op(A) into MR-row micro-panels (both zero
 * padded), so the four transpose combinations differ only in packing and one register-blocked
 * micro-kernel (MR x NR tile, 8 v128 accumulators) streams both panels with immediate offsets.
 * The n mod 8 tail columns of an f32 product (n = 10 in a classifier's last layer) are not padded
 * to a full panel: column kernels keep C columns in the accumulators (16 rows x 2 columns), so
 * C is exactly n wide. In f64 the last panel is 2 or 4 wide and `compactRows` squeezes the
 * column padding out in place, so the host reads the m x n result with one copy. Each C
 * element is summed in the fixed order p = 0..K-1 whatever the blocking, so results depend only
 * on the operands and shapes. Each step is mul then add (no fusion) in the SIMD builds; the
 * relaxed-SIMD build (build/kernels-relaxed.wasm, `--enable relaxed-simd`) uses one
 * relaxed_madd instead, which the engine fuses or not once per machine: still one fixed result.
 */

// NOTE: a 4x8 f32 tile (8 accumulators) with no K-loop unrolling was the fastest shape under
// V8 11.3 on Zen 4; larger tiles spill and unrolling did not help. Packing A as well (rather than
// reading it in place with strides) saves the per-row address arithmetic that made the loop
// front-end bound: 43-49 GFLOP/s instead of 37-39.
const MR32: i32 = 4;
const NR32: i32 = 8;
const MR64: i32 = 4;
const NR64: i32 = 4;
/** K-block: one packed B panel (KC x NR) stays in L1 while a row block of A streams by. */
const KC: i32 = 256;
/** Row block: MC x KC of A stays in L2 while every column panel is swept. */
const MC: i32 = 64;

/**
 * c + a * b per lane: one relaxed_madd in the relaxed-SIMD build, else mul then add (Binaryen
 * inlines it; the constant condition is folded at compile time).
 */
function madd32(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

/** c + a * b per f64 lane (as madd32). */
function madd64(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f64x2.relaxed_madd(a, b, c);
  return f64x2.add(c, f64x2.mul(a, b));
}

/** First free byte of the linear memory: the host places operands from here on. */
export function heapBase(): usize {
  return (__heap_base + 15) & ~(<usize>15);
}

/** Rows of C the f32 kernel writes (m rounded up to the tile height). */
export function paddedRowsF32(m: i32): i32 {
  return (m + MR32 - 1) & ~(MR32 - 1);
}

/**
 * Columns of C the f32 kernel writes: exactly n (full 8-wide panels write whole rows of 8; the
 * 1..7 tail columns are written one by one by the column kernels).
 */
export function paddedColsF32(n: i32): i32 {
  return n;
}

/** Width of the packed f32 tail panel: the n mod 8 tail columns rounded up to a pair. */
function tailWidthF32(n: i32): i32 {
  return ((n & (NR32 - 1)) + 1) & ~1;
}

/** Rows of C the f64 kernel writes. */
export function paddedRowsF64(m: i32): i32 {
  return (m + MR64 - 1) & ~(MR64 - 1);
}

/** Columns of C the f64 kernel writes: full 4-wide panels, then a 2- or 4-wide last one. */
export function paddedColsF64(n: i32): i32 {
  const full = n & ~(NR64 - 1);
  const rest = n - full;
  return rest == 0 ? full : rest <= 2 ? full + 2 : full + NR64;
}

/**
 * Moves rows of C (m rows of rowBytes, ldc bytes apart) together in place, so row i starts at
 * c + i * rowBytes: the padded result becomes a dense m x n matrix. Rows only move down.
 */
export function compactRows(c: usize, m: i32, rowBytes: i32, ldc: i32): void {
  if (rowBytes == ldc) return;
  for (let i = 1; i < m; i++) {
    memory.copy(c + <usize>i * rowBytes, c + <usize>i * ldc, <usize>rowBytes);
  }
}

/**
 * Zeroes `bytes` bytes at `ptr`: the host's zero-fill of a reused array in a shared memory, where
 * TypedArray.prototype.fill is several times slower than this bulk `memory.fill`.
 */
export function zeroBytes(ptr: usize, bytes: usize): void {
  memory.fill(ptr, 0, bytes);
}

/** Bytes of packing scratch the f32 matmul needs for n columns. */
export function packBytesF32(n: i32, k: i32): i32 {
  return min(k, KC) * ((n & ~(NR32 - 1)) + tailWidthF32(n) + MC) * 4;
}

/** Bytes for all of op(B) packed once (every K-block, {@link prepackBF32}) and the A scratch. */
export function prepackBytesF32(n: i32, k: i32): i32 {
  return (k * ((n & ~(NR32 - 1)) + tailWidthF32(n)) + min(k, KC) * MC) * 4;
}

/**
 * Packs all of op(B) (k x n) at `pack`, K-block after K-block, for matmulF32 with `prepacked`:
 * a B that several products share (the weights, across a step's micro-shards) is packed once.
 */
export function prepackBF32(b: usize, pack: usize, n: i32, k: i32, transB: bool): void {
  const width = (n & ~(NR32 - 1)) + tailWidthF32(n);
  for (let p0 = 0; p0 < k; p0 += KC) {
    packB32(b, pack + <usize>(p0 * width * 4), n, k, p0, min(KC, k - p0), transB);
  }
}

/** Bytes of packing scratch the f64 matmul needs for n columns. */
export function packBytesF64(n: i32, k: i32): i32 {
  return min(k, KC) * (paddedColsF64(n) + MC) * 8;
}

/**
 * Packs op(B)[p0 : p0+kc, 0:n] into column panels, the one starting at column j0 at
 * pack + j0*kc*4: NR32 wide, then a tail of tailWidthF32(n) columns (zero past n).
 */
function packB32(b: usize, pack: usize, n: i32, k: i32, p0: i32, kc: i32, transB: bool): void {
  const full = n & ~(NR32 - 1);
  for (let j0 = 0; j0 < n; j0 += NR32) {
    const width = j0 < full ? NR32 : tailWidthF32(n);
    const w = min(width, n - j0);
    const rowBytes = <usize>(width << 2);
    const panel = pack + <usize>(j0 * kc * 4);
    if (!transB) {
      // B is k x n: each panel row is a contiguous slice of a B row.
      for (let p = 0; p < kc; p++) {
        const src = b + ((<usize>(p0 + p) * n + j0) << 2);
        const dst = panel + <usize>p * rowBytes;
        if (w == NR32) {
          v128.store(dst, v128.load(src));
          v128.store(dst, v128.load(src, 16), 16);
        } else {
          if (w < width) store<f32>(dst + ((<usize>w) << 2), 0);
          for (let j = 0; j < w; j++) store<f32>(dst + (j << 2), load<f32>(src + (j << 2)));
        }
      }
    } else {
      // B is n x k: column j of op(B) is row j of B, contiguous in p.
      if (w < width) memory.fill(panel, 0, <usize>kc * rowBytes);
      for (let j = 0; j < w; j++) {
        const src = b + ((<usize>(j0 + j) * k + p0) << 2);
        const dst = panel + (j << 2);
        for (let p = 0; p < kc; p++) {
          store<f32>(dst + <usize>p * rowBytes, load<f32>(src + (p << 2)));
        }
      }
    }
  }
}

/**
 * Packs rows i0 .. i0+rows of op(A)[:, p0 : p0+kc] (rows a multiple of MR32) into MR32-row
 * micro-panels, element (r, p) at dst + (t * kc + p * MR32 + r) * 4; rows past m are zero.
 */
function packA32(
  a: usize,
  dst: usize,
  m: i32,
  k: i32,
  i0: i32,
  rows: i32,
  p0: i32,
  kc: i32,
  transA: bool,
): void {
  let t = 0;
  if (transA) {
    // A is k x m: a 64-byte line of A row p holds 16 rows of op(A), i.e. four micro-panels. Take
    // whole lines: walking one micro-panel at a time down a power-of-two stride (m = 256: 1 KB)
    // maps every line to the same few L1 sets and re-reads each line from L2 four times.
    const step = (<usize>m) << 2;
    const quad = <usize>(kc * MR32 * 4);
    for (; t + 4 * MR32 <= rows && i0 + t + 4 * MR32 <= m; t += 4 * MR32) {
      const panel = dst + <usize>(t * kc * 4);
      let src = a + ((<usize>p0 * m + i0 + t) << 2);
      for (let p = 0; p < kc; p++) {
        const out = panel + ((<usize>p) << 4);
        v128.store(out, v128.load(src));
        v128.store(out + quad, v128.load(src, 16));
        v128.store(out + 2 * quad, v128.load(src, 32));
        v128.store(out + 3 * quad, v128.load(src, 48));
        src += step;
      }
    }
  }
  for (; t < rows; t += MR32) {
    const panel = dst + <usize>(t * kc * 4);
    const i = i0 + t;
    if (i + MR32 <= m && transA) {
      // A is k x m: the tile's four values at each p are contiguous.
      const step = (<usize>m) << 2;
      let src = a + ((<usize>p0 * m + i) << 2);
      for (let p = 0; p < kc; p++) {
        v128.store(panel + ((<usize>p) << 4), v128.load(src));
        src += step;
      }
    } else if (i + MR32 <= m) {
      // A is m x k: transpose 4 x 4 blocks of four contiguous rows.
      const r0 = a + ((<usize>i * k + p0) << 2);
      const rs = (<usize>k) << 2;
      let p = 0;
      for (; p + 4 <= kc; p += 4) {
        const o = (<usize>p) << 2;
        const x0 = v128.load(r0 + o);
        const x1 = v128.load(r0 + rs + o);
        const x2 = v128.load(r0 + 2 * rs + o);
        const x3 = v128.load(r0 + 3 * rs + o);
        const t0 = v128.shuffle<f32>(x0, x1, 0, 4, 1, 5);
        const t1 = v128.shuffle<f32>(x0, x1, 2, 6, 3, 7);
        const t2 = v128.shuffle<f32>(x2, x3, 0, 4, 1, 5);
        const t3 = v128.shuffle<f32>(x2, x3, 2, 6, 3, 7);
        const out = panel + ((<usize>p) << 4);
        v128.store(out, v128.shuffle<f32>(t0, t2, 0, 1, 4, 5));
        v128.store(out, v128.shuffle<f32>(t0, t2, 2, 3, 6, 7), 16);
        v128.store(out, v128.shuffle<f32>(t1, t3, 0, 1, 4, 5), 32);
        v128.store(out, v128.shuffle<f32>(t1, t3, 2, 3, 6, 7), 48);
      }
      for (; p < kc; p++) {
        const o = (<usize>p) << 2;
        const out = panel + ((<usize>p) << 4);
        store<f32>(out, load<f32>(r0 + o));
        store<f32>(out, load<f32>(r0 + rs + o), 4);
        store<f32>(out, load<f32>(r0 + 2 * rs + o), 8);
        store<f32>(out, load<f32>(r0 + 3 * rs + o), 12);
      }
    } else {
      // The last, partial tile: scalar, zero past m.
      for (let r = 0; r < MR32; r++) {
        const out = panel + (r << 2);
        for (let p = 0; p < kc; p++) {
          let v: f32 = 0;
          if (i + r < m) {
            v = transA
              ? load<f32>(a + ((<usize>(p0 + p) * m + i + r) << 2))
              : load<f32>(a + ((<usize>(i + r) * k + p0 + p) << 2));
          }
          store<f32>(out + ((<usize>p) << 4), v);
        }
      }
    }
  }
}

/** C[4 x 8] (+)= packed A[4 x kc] @ packed B[kc x 8]; C row stride ldc bytes. */
function kernel32(ap: usize, bp: usize, c: usize, ldc: usize, kc: i32, accumulate: bool): void {
  let c00 = f32x4.splat(0);
  let c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0);
  let c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0);
  let c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0);
  let c31 = f32x4.splat(0);
  if (accumulate) {
    c00 = v128.load(c);
    c01 = v128.load(c, 16);
    c10 = v128.load(c + ldc);
    c11 = v128.load(c + ldc, 16);
    c20 = v128.load(c + 2 * ldc);
    c21 = v128.load(c + 2 * ldc, 16);
    c30 = v128.load(c + 3 * ldc);
    c31 = v128.load(c + 3 * ldc, 16);
  }
  const bEnd = bp + <usize>(kc * NR32 * 4);
  do {
    const b0 = v128.load(bp);
    const b1 = v128.load(bp, 16);
    let x = v128.load32_splat(ap);
    c00 = madd32(x, b0, c00);
    c01 = madd32(x, b1, c01);
    x = v128.load32_splat(ap, 4);
    c10 = madd32(x, b0, c10);
    c11 = madd32(x, b1, c11);
    x = v128.load32_splat(ap, 8);
    c20 = madd32(x, b0, c20);
    c21 = madd32(x, b1, c21);
    x = v128.load32_splat(ap, 12);
    c30 = madd32(x, b0, c30);
    c31 = madd32(x, b1, c31);
    ap += 16;
    bp += 32;
  } while (bp < bEnd);
  v128.store(c, c00);
  v128.store(c, c01, 16);
  v128.store(c + ldc, c10);
  v128.store(c + ldc, c11, 16);
  v128.store(c + 2 * ldc, c20);
  v128.store(c + 2 * ldc, c21, 16);
  v128.store(c + 3 * ldc, c30);
  v128.store(c + 3 * ldc, c31, 16);
}

/** C[0..3, 0] (rows ldc bytes apart) as one vector. */
function loadColumn(c: usize, ldc: usize): v128 {
  let v = v128.load32_zero(c);
  v = f32x4.replace_lane(v, 1, load<f32>(c + ldc));
  v = f32x4.replace_lane(v, 2, load<f32>(c + 2 * ldc));
  return f32x4.replace_lane(v, 3, load<f32>(c + 3 * ldc));
}

/** Stores v into C[0..3, 0] (rows ldc bytes apart). */
function storeColumn(c: usize, ldc: usize, v: v128): void {
  store<f32>(c, f32x4.extract_lane(v, 0));
  store<f32>(c + ldc, f32x4.extract_lane(v, 1));
  store<f32>(c + 2 * ldc, f32x4.extract_lane(v, 2));
  store<f32>(c + 3 * ldc, f32x4.extract_lane(v, 3));
}

/**
 * C[16 x cols] (+)= four packed A micro-panels (a, a+mp, a+2mp, a+3mp) @ B[kc x 2] (rows bs
 * bytes apart), cols 1 or 2: the narrow tail of n (n = 10: columns 8, 9). The accumulators hold
 * columns of C, so a micro-panel's four rows at p are one load and B is splat: 6 loads per 8
 * multiply-adds, where a row-form 8 x 4 tile needs 9 and wastes half its lanes on padding.
 */
function kernel32x16x2(
  a: usize,
  mp: usize,
  bp: usize,
  bs: usize,
  c: usize,
  ldc: usize,
  kc: i32,
  cols: i32,
  accumulate: bool,
): void {
  let c00 = f32x4.splat(0);
  let c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0);
  let c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0);
  let c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0);
  let c31 = f32x4.splat(0);
  const l4: usize = ldc << 2;
  if (accumulate) {
    c00 = loadColumn(c, ldc);
    c10 = loadColumn(c + l4, ldc);
    c20 = loadColumn(c + 2 * l4, ldc);
    c30 = loadColumn(c + 3 * l4, ldc);
    if (cols == 2) {
      c01 = loadColumn(c + 4, ldc);
      c11 = loadColumn(c + l4 + 4, ldc);
      c21 = loadColumn(c + 2 * l4 + 4, ldc);
      c31 = loadColumn(c + 3 * l4 + 4, ldc);
    }
  }
  let a1 = a + mp;
  let a2 = a1 + mp;
  let a3 = a2 + mp;
  const aEnd = a + <usize>(kc * 16);
  do {
    const s0 = v128.load32_splat(bp);
    const s1 = v128.load32_splat(bp, 4);
    let x = v128.load(a);
    c00 = madd32(x, s0, c00);
    c01 = madd32(x, s1, c01);
    x = v128.load(a1);
    c10 = madd32(x, s0, c10);
    c11 = madd32(x, s1, c11);
    x = v128.load(a2);
    c20 = madd32(x, s0, c20);
    c21 = madd32(x, s1, c21);
    x = v128.load(a3);
    c30 = madd32(x, s0, c30);
    c31 = madd32(x, s1, c31);
    a += 16;
    a1 += 16;
    a2 += 16;
    a3 += 16;
    bp += bs;
  } while (a < aEnd);
  storeColumn(c, ldc, c00);
  storeColumn(c + l4, ldc, c10);
  storeColumn(c + 2 * l4, ldc, c20);
  storeColumn(c + 3 * l4, ldc, c30);
  if (cols == 2) {
    storeColumn(c + 4, ldc, c01);
    storeColumn(c + l4 + 4, ldc, c11);
    storeColumn(c + 2 * l4 + 4, ldc, c21);
    storeColumn(c + 3 * l4 + 4, ldc, c31);
  }
}

/** C[4 x cols] (+)= one packed A micro-panel @ B[kc x 2]: the tail rows of kernel32x16x2. */
function kernel32x4x2(
  a: usize,
  bp: usize,
  bs: usize,
  c: usize,
  ldc: usize,
  kc: i32,
  cols: i32,
  accumulate: bool,
): void {
  let c0 = f32x4.splat(0);
  let c1 = f32x4.splat(0);
  if (accumulate) {
    c0 = loadColumn(c, ldc);
    if (cols == 2) c1 = loadColumn(c + 4, ldc);
  }
  const aEnd = a + <usize>(kc * 16);
  do {
    const x = v128.load(a);
    c0 = madd32(x, v128.load32_splat(bp), c0);
    c1 = madd32(x, v128.load32_splat(bp, 4), c1);
    a += 16;
    bp += bs;
  } while (a < aEnd);
  storeColumn(c, ldc, c0);
  if (cols == 2) storeColumn(c + 4, ldc, c1);
}

/**
 * C = op(A) @ op(B) in f32. A is m x k (k x m when transA), B is k x n (n x k when transB), both
 * row-major at byte addresses a, b. pack: packBytesF32 scratch; c: paddedRowsF32(m) x
 * paddedColsF32(n).
 */
export function matmulF32(
  a: usize,
  b: usize,
  pack: usize,
  c: usize,
  m: i32,
  n: i32,
  k: i32,
  transA: bool,
  transB: bool,
  prepacked: bool,
): void {
  const mPad = paddedRowsF32(m);
  const nPad = paddedColsF32(n);
  const ldc = (<usize>nPad) << 2;
  if (k == 0) {
    memory.fill(c, 0, <usize>mPad * ldc);
    return;
  }
  const full = n & ~(NR32 - 1);
  const width = full + tailWidthF32(n);
  // prepacked: `pack` holds all of op(B) (prepackBF32), the A scratch after it.
  const packA = pack + <usize>((prepacked ? k : min(k, KC)) * width * 4);
  for (let p0 = 0; p0 < k; p0 += KC) {
    const kc = min(KC, k - p0);
    const accumulate = p0 > 0;
    const packB = prepacked ? pack + <usize>(p0 * width * 4) : pack;
    if (!prepacked) packB32(b, pack, n, k, p0, kc, transB);
    for (let i0 = 0; i0 < mPad; i0 += MC) {
      const rows = min(MC, mPad - i0);
      packA32(a, packA, m, k, i0, rows, p0, kc, transA);
      const cRow = c + <usize>i0 * ldc;
      for (let j0 = 0; j0 < full; j0 += NR32) {
        const bp = packB + <usize>(j0 * kc * 4);
        const cCol = cRow + <usize>(j0 * 4);
        for (let t = 0; t < rows; t += MR32) {
          const ap = packA + <usize>(t * kc * 4);
          kernel32(ap, bp, cCol + <usize>t * ldc, ldc, kc, accumulate);
        }
      }
      if (full < n) tailColumnsF32(packB, packA, cRow, ldc, n, rows, kc, accumulate);
    }
  }
}

/**
 * C[0 : rows, full : n] (+)= packed A rows @ the packed tail panel of B: the n mod 8 tail columns
 * two at a time, 16 rows (then 4) at a time.
 */
// NOTE: exported only so that Binaryen does not inline it into matmulF32: with the tail kernels
// inlined there, V8 compiled matmulF32's main loop about 7% slower on large shapes.
export function tailColumnsF32(
  pack: usize,
  packA: usize,
  cRow: usize,
  ldc: usize,
  n: i32,
  rows: i32,
  kc: i32,
  accumulate: bool,
): void {
  const full = n & ~(NR32 - 1);
  const microPanel = <usize>(kc * MR32 * 4);
  const tail = pack + <usize>(full * kc * 4);
  const bs = <usize>(tailWidthF32(n) << 2);
  for (let j = full; j < n; j += 2) {
    const cols = min(2, n - j);
    const bp = tail + <usize>((j - full) << 2);
    const cCol = cRow + <usize>(j << 2);
    let t = 0;
    for (; t + 4 * MR32 <= rows; t += 4 * MR32) {
      const ap = packA + <usize>(t * kc * 4);
      kernel32x16x2(ap, microPanel, bp, bs, cCol + <usize>t * ldc, ldc, kc, cols, accumulate);
    }
    for (; t < rows; t += MR32) {
      const ap = packA + <usize>(t * kc * 4);
      kernel32x4x2(ap, bp, bs, cCol + <usize>t * ldc, ldc, kc, cols, accumulate);
    }
  }
}

/** Packs op(B)[p0 : p0+kc, 0:n] into f64 panels: NR64 wide, the last 2 or 4 (as packB32). */
function packB64(b: usize, pack: usize, n: i32, k: i32, p0: i32, kc: i32, transB: bool): void {
  const nPad = paddedColsF64(n);
  for (let j0 = 0; j0 < nPad; j0 += NR64) {
    const width = min(NR64, nPad - j0);
    const w = min(width, n - j0);
    const rowBytes = <usize>(width << 3);
    const panel = pack + <usize>(j0 * kc * 8);
    if (!transB) {
      for (let p = 0; p < kc; p++) {
        const src = b + ((<usize>(p0 + p) * n + j0) << 3);
        const dst = panel + <usize>p * rowBytes;
        if (w == NR64) {
          v128.store(dst, v128.load(src));
          v128.store(dst, v128.load(src, 16), 16);
        } else if (w == 2) {
          v128.store(dst, v128.load(src));
        } else {
          memory.fill(dst, 0, rowBytes);
          for (let j = 0; j < w; j++) store<f64>(dst + (j << 3), load<f64>(src + (j << 3)));
        }
      }
    } else {
      if (w < width) memory.fill(panel, 0, <usize>kc * rowBytes);
      for (let j = 0; j < w; j++) {
        const src = b + ((<usize>(j0 + j) * k + p0) << 3);
        const dst = panel + (j << 3);
        for (let p = 0; p < kc; p++) {
          store<f64>(dst + <usize>p * rowBytes, load<f64>(src + (p << 3)));
        }
      }
    }
  }
}

/** Packs rows i0 .. i0+rows of op(A)[:, p0 : p0+kc] into MR64-row f64 micro-panels (as packA32). */
function packA64(
  a: usize,
  dst: usize,
  m: i32,
  k: i32,
  i0: i32,
  rows: i32,
  p0: i32,
  kc: i32,
  transA: bool,
): void {
  for (let t = 0; t < rows; t += MR64) {
    const panel = dst + <usize>(t * kc * 8);
    const i = i0 + t;
    if (i + MR64 <= m && transA) {
      const step = (<usize>m) << 3;
      let src = a + ((<usize>p0 * m + i) << 3);
      for (let p = 0; p < kc; p++) {
        const out = panel + ((<usize>p) << 5);
        v128.store(out, v128.load(src));
        v128.store(out, v128.load(src, 16), 16);
        src += step;
      }
    } else if (i + MR64 <= m) {
      // A is m x k: transpose 2 x 2 blocks of row pairs.
      const r0 = a + ((<usize>i * k + p0) << 3);
      const rs = (<usize>k) << 3;
      let p = 0;
      for (; p + 2 <= kc; p += 2) {
        const o = (<usize>p) << 3;
        const out = panel + ((<usize>p) << 5);
        for (let r = 0; r < MR64; r += 2) {
          const x0 = v128.load(r0 + <usize>r * rs + o);
          const x1 = v128.load(r0 + <usize>(r + 1) * rs + o);
          v128.store(out + ((<usize>r) << 3), v128.shuffle<f64>(x0, x1, 0, 2));
          v128.store(out + ((<usize>r) << 3), v128.shuffle<f64>(x0, x1, 1, 3), 32);
        }
      }
      for (; p < kc; p++) {
        const out = panel + ((<usize>p) << 5);
        for (let r = 0; r < MR64; r++) {
          store<f64>(out + ((<usize>r) << 3), load<f64>(r0 + <usize>r * rs + ((<usize>p) << 3)));
        }
      }
    } else {
      for (let r = 0; r < MR64; r++) {
        const out = panel + (r << 3);
        for (let p = 0; p < kc; p++) {
          let v: f64 = 0;
          if (i + r < m) {
            v = transA
              ? load<f64>(a + ((<usize>(p0 + p) * m + i + r) << 3))
              : load<f64>(a + ((<usize>(i + r) * k + p0 + p) << 3));
          }
          store<f64>(out + ((<usize>p) << 5), v);
        }
      }
    }
  }
}

/** C[4 x 4] (+)= packed A[4 x kc] @ packed B[kc x 4] in f64; C row stride ldc bytes. */
function kernel64(ap: usize, bp: usize, c: usize, ldc: usize, kc: i32, accumulate: bool): void {
  let c00 = f64x2.splat(0);
  let c01 = f64x2.splat(0);
  let c10 = f64x2.splat(0);
  let c11 = f64x2.splat(0);
  let c20 = f64x2.splat(0);
  let c21 = f64x2.splat(0);
  let c30 = f64x2.splat(0);
  let c31 = f64x2.splat(0);
  if (accumulate) {
    c00 = v128.load(c);
    c01 = v128.load(c, 16);
    c10 = v128.load(c + ldc);
    c11 = v128.load(c + ldc, 16);
    c20 = v128.load(c + 2 * ldc);
    c21 = v128.load(c + 2 * ldc, 16);
    c30 = v128.load(c + 3 * ldc);
    c31 = v128.load(c + 3 * ldc, 16);
  }
  const bEnd = bp + <usize>(kc * NR64 * 8);
  do {
    const b0 = v128.load(bp);
    const b1 = v128.load(bp, 16);
    let x = v128.load64_splat(ap);
    c00 = madd64(x, b0, c00);
    c01 = madd64(x, b1, c01);
    x = v128.load64_splat(ap, 8);
    c10 = madd64(x, b0, c10);
    c11 = madd64(x, b1, c11);
    x = v128.load64_splat(ap, 16);
    c20 = madd64(x, b0, c20);
    c21 = madd64(x, b1, c21);
    x = v128.load64_splat(ap, 24);
    c30 = madd64(x, b0, c30);
    c31 = madd64(x, b1, c31);
    ap += 32;
    bp += 32;
  } while (bp < bEnd);
  v128.store(c, c00);
  v128.store(c, c01, 16);
  v128.store(c + ldc, c10);
  v128.store(c + ldc, c11, 16);
  v128.store(c + 2 * ldc, c20);
  v128.store(c + 2 * ldc, c21, 16);
  v128.store(c + 3 * ldc, c30);
  v128.store(c + 3 * ldc, c31, 16);
}

/** C[8 x 2] (+)= two packed f64 A micro-panels (rows 0-3 at a0, 4-7 at a1) @ packed B[kc x 2]. */
function kernel64x8x2(
  a0: usize,
  a1: usize,
  bp: usize,
  c: usize,
  ldc: usize,
  kc: i32,
  accumulate: bool,
): void {
  let c0 = f64x2.splat(0);
  let c1 = f64x2.splat(0);
  let c2 = f64x2.splat(0);
  let c3 = f64x2.splat(0);
  let c4 = f64x2.splat(0);
  let c5 = f64x2.splat(0);
  let c6 = f64x2.splat(0);
  let c7 = f64x2.splat(0);
  const c4p = c + 4 * ldc;
  if (accumulate) {
    c0 = v128.load(c);
    c1 = v128.load(c + ldc);
    c2 = v128.load(c + 2 * ldc);
    c3 = v128.load(c + 3 * ldc);
    c4 = v128.load(c4p);
    c5 = v128.load(c4p + ldc);
    c6 = v128.load(c4p + 2 * ldc);
    c7 = v128.load(c4p + 3 * ldc);
  }
  const bEnd = bp + <usize>(kc * 16);
  do {
    const b = v128.load(bp);
    c0 = madd64(v128.load64_splat(a0), b, c0);
    c1 = madd64(v128.load64_splat(a0, 8), b, c1);
    c2 = madd64(v128.load64_splat(a0, 16), b, c2);
    c3 = madd64(v128.load64_splat(a0, 24), b, c3);
    c4 = madd64(v128.load64_splat(a1), b, c4);
    c5 = madd64(v128.load64_splat(a1, 8), b, c5);
    c6 = madd64(v128.load64_splat(a1, 16), b, c6);
    c7 = madd64(v128.load64_splat(a1, 24), b, c7);
    a0 += 32;
    a1 += 32;
    bp += 16;
  } while (bp < bEnd);
  v128.store(c, c0);
  v128.store(c + ldc, c1);
  v128.store(c + 2 * ldc, c2);
  v128.store(c + 3 * ldc, c3);
  v128.store(c4p, c4);
  v128.store(c4p + ldc, c5);
  v128.store(c4p + 2 * ldc, c6);
  v128.store(c4p + 3 * ldc, c7);
}

/** C[4 x 2] (+)= packed f64 A[4 x kc] @ packed B[kc x 2]: the narrow panel's last 4 rows. */
function kernel64x4x2(ap: usize, bp: usize, c: usize, ldc: usize, kc: i32, accumulate: bool): void {
  let c0 = f64x2.splat(0);
  let c1 = f64x2.splat(0);
  let c2 = f64x2.splat(0);
  let c3 = f64x2.splat(0);
  if (accumulate) {
    c0 = v128.load(c);
    c1 = v128.load(c + ldc);
    c2 = v128.load(c + 2 * ldc);
    c3 = v128.load(c + 3 * ldc);
  }
  const bEnd = bp + <usize>(kc * 16);
  do {
    const b = v128.load(bp);
    c0 = madd64(v128.load64_splat(ap), b, c0);
    c1 = madd64(v128.load64_splat(ap, 8), b, c1);
    c2 = madd64(v128.load64_splat(ap, 16), b, c2);
    c3 = madd64(v128.load64_splat(ap, 24), b, c3);
    ap += 32;
    bp += 16;
  } while (bp < bEnd);
  v128.store(c, c0);
  v128.store(c + ldc, c1);
  v128.store(c + 2 * ldc, c2);
  v128.store(c + 3 * ldc, c3);
}

/** C = op(A) @ op(B) in f64; the same contract as matmulF32 with 8-byte elements. */
export function matmulF64(
  a: usize,
  b: usize,
  pack: usize,
  c: usize,
  m: i32,
  n: i32,
  k: i32,
  transA: bool,
  transB: bool,
): void {
  const mPad = paddedRowsF64(m);
  const nPad = paddedColsF64(n);
  const ldc = (<usize>nPad) << 3;
  if (k == 0) {
    memory.fill(c, 0, <usize>mPad * ldc);
    return;
  }
  const packA = pack + <usize>(min(k, KC) * nPad * 8);
  for (let p0 = 0; p0 < k; p0 += KC) {
    const kc = min(KC, k - p0);
    const accumulate = p0 > 0;
    const microPanel = <usize>(kc * MR64 * 8);
    packB64(b, pack, n, k, p0, kc, transB);
    for (let i0 = 0; i0 < mPad; i0 += MC) {
      const rows = min(MC, mPad - i0);
      packA64(a, packA, m, k, i0, rows, p0, kc, transA);
      const cRow = c + <usize>i0 * ldc;
      for (let j0 = 0; j0 < nPad; j0 += NR64) {
        const bp = pack + <usize>(j0 * kc * 8);
        const cCol = cRow + <usize>(j0 * 8);
        if (j0 + NR64 <= nPad) {
          for (let t = 0; t < rows; t += MR64) {
            const ap = packA + <usize>(t * kc * 8);
            kernel64(ap, bp, cCol + <usize>t * ldc, ldc, kc, accumulate);
          }
        } else {
          let t = 0;
          for (; t + 2 * MR64 <= rows; t += 2 * MR64) {
            const ap = packA + <usize>(t * kc * 8);
            kernel64x8x2(ap, ap + microPanel, bp, cCol + <usize>t * ldc, ldc, kc, accumulate);
          }
          if (t < rows) {
            kernel64x4x2(
              packA + <usize>(t * kc * 8),
              bp,
              cCol + <usize>t * ldc,
              ldc,
              kc,
              accumulate,
            );
          }
        }
      }
    }
  }
}

// The element-wise kernels below are generic over the element type T (f32 or f64): one body, so a
// fix cannot miss its twin. A v128 holds 16 / sizeof<T>() lanes; element i sits at i << alignof<T>().

/** out[i] = x[i] (op) y[i] for n elements of T; op 0 add, 1 sub, 2 mul, 3 div. */
function binary<T>(op: i32, x: usize, y: usize, out: usize, n: i32): void {
  if (<u32>op > <u32>BinaryCode.div) unreachable(); // no such kernel: trap, never another op's
  const shift = alignof<T>();
  const lanes = 16 / <i32>sizeof<T>();
  const nv = n & ~(lanes - 1);
  let i = 0;
  if (op == BinaryCode.add) {
    for (; i < nv; i += lanes) {
      const o = (<usize>i) << shift;
      v128.store(out + o, v128.add<T>(v128.load(x + o), v128.load(y + o)));
    }
  } else if (op == BinaryCode.sub) {
    for (; i < nv; i += lanes) {
      const o = (<usize>i) << shift;
      v128.store(out + o, v128.sub<T>(v128.load(x + o), v128.load(y + o)));
    }
  } else if (op == BinaryCode.mul) {
    for (; i < nv; i += lanes) {
      const o = (<usize>i) << shift;
      v128.store(out + o, v128.mul<T>(v128.load(x + o), v128.load(y + o)));
    }
  } else {
    for (; i < nv; i += lanes) {
      const o = (<usize>i) << shift;
      v128.store(out + o, v128.div<T>(v128.load(x + o), v128.load(y + o)));
    }
  }
  for (; i < n; i++) {
    const o = (<usize>i) << shift;
    const u = load<T>(x + o);
    const v = load<T>(y + o);
    store<T>(
      out + o,
      op == BinaryCode.add
        ? u + v
        : op == BinaryCode.sub
          ? u - v
          : op == BinaryCode.mul
            ? u * v
            : u / v,
    );
  }
}

/** out[i] = x[i] (op) y[i] for n f32 elements; op 0 add, 1 sub, 2 mul, 3 div. */
export function binaryF32(op: i32, x: usize, y: usize, out: usize, n: i32): void {
  binary<f32>(op, x, y, out, n);
}

/** out[i] = x[i] (op) y[i] for n f64 elements (as binaryF32). */
export function binaryF64(op: i32, x: usize, y: usize, out: usize, n: i32): void {
  binary<f64>(op, x, y, out, n);
}

/** out[i] = f(x[i]) for n elements of T; op 0 relu (x > 0 ? x : 0), 1 step (x > 0 ? 1 : 0). */
function unary<T>(op: i32, x: usize, out: usize, n: i32): void {
  if (<u32>op > <u32>UnaryCode.step) unreachable(); // 0 relu, 1 step; no other kernel: trap
  const shift = alignof<T>();
  const lanes = 16 / <i32>sizeof<T>();
  const nv = n & ~(lanes - 1);
  const zero = v128.splat<T>(<T>0);
  let i = 0;
  // x > 0 is false for -0 and NaN, so both give +0, as the js loops do.
  if (op == UnaryCode.relu) {
    for (; i < nv; i += lanes) {
      const o = (<usize>i) << shift;
      const v = v128.load(x + o);
      v128.store(out + o, v128.and(v, v128.gt<T>(v, zero)));
    }
  } else {
    const one = v128.splat<T>(<T>1);
    for (; i < nv; i += lanes) {
      const o = (<usize>i) << shift;
      v128.store(out + o, v128.and(one, v128.gt<T>(v128.load(x + o), zero)));
    }
  }
  for (; i < n; i++) {
    const o = (<usize>i) << shift;
    const v = load<T>(x + o);
    store<T>(out + o, v > <T>0 ? (op == UnaryCode.relu ? v : <T>1) : <T>0);
  }
}

/** out[i] = f(x[i]) for n f32 elements; op 0 relu, 1 step. */
export function unaryF32(op: i32, x: usize, out: usize, n: i32): void {
  unary<f32>(op, x, out, n);
}

/** out[i] = f(x[i]) for n f64 elements (as unaryF32). */
export function unaryF64(op: i32, x: usize, out: usize, n: i32): void {
  unary<f64>(op, x, out, n);
}

/**
 * out[r, c] = x[r, c] (op) y[c] for a rows x cols f32 matrix x and a row y of cols (the bias
 * add); op as binaryF32: each row one call of the same-shape kernel.
 */
export function rowBinaryF32(op: i32, x: usize, y: usize, out: usize, rows: i32, cols: i32): void {
  const rowBytes = (<usize>cols) << 2;
  for (let r = 0; r < rows; r++) {
    binary<f32>(op, x + <usize>r * rowBytes, y, out + <usize>r * rowBytes, cols);
  }
}

/** out[r, c] = x[r, c] (op) y[c] in f64 (as rowBinaryF32). */
export function rowBinaryF64(op: i32, x: usize, y: usize, out: usize, rows: i32, cols: i32): void {
  const rowBytes = (<usize>cols) << 3;
  for (let r = 0; r < rows; r++) {
    binary<f64>(op, x + <usize>r * rowBytes, y, out + <usize>r * rowBytes, cols);
  }
}

/**
 * out[c] = sum of x[r, c] over the rows of a rows x cols matrix of T (the bias gradient): each
 * column from 0, adding rows top to bottom and rounding after every addition, the js backend's
 * order, so the two are bitwise equal. Four vectors of columns at a time in four accumulators.
 */
function columnSum<T>(x: usize, out: usize, rows: i32, cols: i32): void {
  const shift = alignof<T>();
  const lanes = 16 / <i32>sizeof<T>();
  const rowBytes = (<usize>cols) << shift;
  const end = x + <usize>rows * rowBytes;
  let c = 0;
  for (; c + 4 * lanes <= cols; c += 4 * lanes) {
    let s0 = v128.splat<T>(<T>0);
    let s1 = s0;
    let s2 = s0;
    let s3 = s0;
    for (let p = x + ((<usize>c) << shift); p < end; p += rowBytes) {
      s0 = v128.add<T>(s0, v128.load(p));
      s1 = v128.add<T>(s1, v128.load(p, 16));
      s2 = v128.add<T>(s2, v128.load(p, 32));
      s3 = v128.add<T>(s3, v128.load(p, 48));
    }
    const o = out + ((<usize>c) << shift);
    v128.store(o, s0);
    v128.store(o, s1, 16);
    v128.store(o, s2, 32);
    v128.store(o, s3, 48);
  }
  for (; c + lanes <= cols; c += lanes) {
    let s = v128.splat<T>(<T>0);
    for (let p = x + ((<usize>c) << shift); p < end; p += rowBytes)
      s = v128.add<T>(s, v128.load(p));
    v128.store(out + ((<usize>c) << shift), s);
  }
  for (; c < cols; c++) {
    let s = <T>0;
    for (let p = x + ((<usize>c) << shift); p < end; p += rowBytes) s += load<T>(p);
    store<T>(out + ((<usize>c) << shift), s);
  }
}

/** out[c] = sum of x[r, c] over the rows of a rows x cols f32 matrix (as columnSum). */
export function columnSumF32(x: usize, out: usize, rows: i32, cols: i32): void {
  columnSum<f32>(x, out, rows, cols);
}

/** out[c] = sum of x[r, c] over the rows, in f64 (as columnSumF32). */
export function columnSumF64(x: usize, out: usize, rows: i32, cols: i32): void {
  columnSum<f64>(x, out, rows, cols);
}

// The host's Math.log (imported as "kernels"."log"): one call per row, the js kernels' function.
declare function log(x: f64): f64;

// exp(x) = 2^k exp(r), k = nearest(x / ln 2), r = x - k ln 2 (ln 2 in two parts, so that k * LN2_HI
// is exact: |r| <= ln 2 / 2 to within an ulp). exp(r) by its Taylor polynomial to r^13 (the
// first term left out is below 1e-17 relative); 2^k applied as two factors 2^(k >> 1) and
// 2^(k - (k >> 1)), each a normal number, so a subnormal result is rounded once and a large one
// overflows to infinity. x is clamped to [-746, 710] first (exp(-746) rounds to 0 and exp(710) to
// infinity, as exp does) by pmin and pmax (one instruction each; min and max are long sequences
// on x64, 40% of the time), which keep a NaN in their first operand. Plain multiplies and adds,
// no fused multiply-add: the same bits in both builds.
const LOG2E = 1.4426950408889634;
const LN2_HI = 6.9314718036912381649e-1;
const LN2_LO = 1.90821492927058770002e-10;

/** exp of both f64 lanes of `x` (see above): within 2 ulp of the correctly rounded value. */
function expLanes(x: v128): v128 {
  x = f64x2.pmin(f64x2.pmax(x, f64x2.splat(-746.0)), f64x2.splat(710.0));
  const k = f64x2.nearest(f64x2.mul(x, f64x2.splat(LOG2E)));
  const r = f64x2.sub(
    f64x2.sub(x, f64x2.mul(k, f64x2.splat(LN2_HI))),
    f64x2.mul(k, f64x2.splat(LN2_LO)),
  );
  // Estrin's scheme: the terms in pairs, then pairs of pairs, so the dependent chain is four
  // multiply-adds deep instead of Horner's thirteen (the kernel was latency-bound: 9 ns an exp).
  const r2 = f64x2.mul(r, r);
  const r4 = f64x2.mul(r2, r2);
  const r8 = f64x2.mul(r4, r4);
  const q0 = f64x2.add(f64x2.splat(1.0), r);
  const q1 = f64x2.add(f64x2.splat(0.5), f64x2.mul(r, f64x2.splat(1.0 / 6.0)));
  const q2 = f64x2.add(f64x2.splat(1.0 / 24.0), f64x2.mul(r, f64x2.splat(1.0 / 120.0)));
  const q3 = f64x2.add(f64x2.splat(1.0 / 720.0), f64x2.mul(r, f64x2.splat(1.0 / 5040.0)));
  const q4 = f64x2.add(f64x2.splat(1.0 / 40320.0), f64x2.mul(r, f64x2.splat(1.0 / 362880.0)));
  const q5 = f64x2.add(f64x2.splat(1.0 / 3628800.0), f64x2.mul(r, f64x2.splat(1.0 / 39916800.0)));
  const q6 = f64x2.add(
    f64x2.splat(1.0 / 479001600.0),
    f64x2.mul(r, f64x2.splat(1.0 / 6227020800.0)),
  );
  const s0 = f64x2.add(q0, f64x2.mul(q1, r2));
  const s1 = f64x2.add(q2, f64x2.mul(q3, r2));
  const s2 = f64x2.add(q4, f64x2.mul(q5, r2));
  const u0 = f64x2.add(s0, f64x2.mul(s1, r4));
  const u1 = f64x2.add(s2, f64x2.mul(q6, r4));
  const p = f64x2.add(u0, f64x2.mul(u1, r8));
  // k in [-1076, 1024]: both halves' biased exponents stay within [485, 1535].
  const ki = i32x4.trunc_sat_f64x2_s_zero(k);
  const lo = i32x4.shr_s(ki, 1);
  const hi = i32x4.sub(ki, lo);
  const bias = i32x4.splat(1023);
  const twoLo = i64x2.shl(i64x2.extend_low_i32x4_s(i32x4.add(lo, bias)), 52);
  const twoHi = i64x2.shl(i64x2.extend_low_i32x4_s(i32x4.add(hi, bias)), 52);
  return f64x2.mul(f64x2.mul(p, twoLo), twoHi);
}

/** exp(x) for one f64 (the lanes' function on lane 0: the same bits as a pair's). */
function exp1(x: f64): f64 {
  return f64x2.extract_lane(expLanes(f64x2.splat(x)), 0);
}

/** exp(x) in WASM ({@link expLanes}) for n f64 values: the kernel the tests hold to Math.exp. */
export function expF64(x: usize, out: usize, n: i32): void {
  let i = 0;
  for (; i + 2 <= n; i += 2) {
    const at = (<usize>i) << 3;
    v128.store(out + at, expLanes(v128.load(x + at)));
  }
  if (i < n) store<f64>(out + ((<usize>i) << 3), exp1(load<f64>(x + ((<usize>i) << 3))));
}

/** Elements p and p + 1 of a T row at `base` as two f64 lanes. */
function pairOf<T>(base: usize, p: usize): v128 {
  const size = <usize>sizeof<T>();
  return f64x2.replace_lane(
    f64x2.splat(<f64>load<T>(base + p * size)),
    1,
    <f64>load<T>(base + (p + 1) * size),
  );
}

/**
 * softmaxCrossEntropy over the last axis of rows x n logits `x` against targets `t` (both T), in
 * f64: per row the max (NaN wins), the sum of exp(x - max) in index order, lse = max + log(sum),
 * the loss -sum(t (x - lse)) summed over the rows and stored at `loss` (where not 0); where `grad`
 * is not 0, exp(x - max) / sum * sum(t) - t into it, exp(x - max) kept there (rounded to T) between
 * the passes. Each stored value is then divided by `divisor` ({@link divided}; 1 leaves it as it
 * is). exp is {@link expLanes}, two elements at a time.
 */
function crossEntropy<T>(
  x: usize,
  t: usize,
  loss: usize,
  grad: usize,
  rows: i32,
  n: i32,
  divisor: f64,
): void {
  const size = <usize>sizeof<T>();
  const pairs = <usize>(n & ~1);
  let total = 0.0;
  for (let r = 0; r < rows; r++) {
    const base = <usize>(r * n) * size;
    const xr = x + base;
    let m = -Infinity;
    for (let p: usize = 0; p < <usize>n; p++) {
      const v = <f64>load<T>(xr + p * size);
      if (v > m || v != v) m = v;
    }
    const mm = f64x2.splat(m);
    const gr = grad + base;
    const tr = t + base;
    // Each exp(x - max) once: summed, and kept in the gradient's place (rounded to T) for it.
    let s = 0.0;
    let p: usize = 0;
    for (; p < pairs; p += 2) {
      const e = expLanes(f64x2.sub(pairOf<T>(xr, p), mm));
      const e0 = f64x2.extract_lane(e, 0);
      const e1 = f64x2.extract_lane(e, 1);
      s += e0;
      s += e1;
      if (grad != 0) {
        store<T>(gr + p * size, <T>e0);
        store<T>(gr + (p + 1) * size, <T>e1);
      }
    }
    if (p < <usize>n) {
      const e = exp1(<f64>load<T>(xr + p * size) - m);
      s += e;
      if (grad != 0) store<T>(gr + p * size, <T>e);
    }
    const lse = m + log(s);
    let row = 0.0;
    let rowSum = 0.0;
    for (let q: usize = 0; q < <usize>n; q++) {
      const tq = <f64>load<T>(tr + q * size);
      row += tq * (<f64>load<T>(xr + q * size) - lse);
      rowSum += tq;
    }
    total -= row;
    if (grad != 0) {
      // softmax * sum(t) - t, the softmax as exp(x - max) / sum: one exp per element, not two.
      const w = rowSum / s;
      for (let q: usize = 0; q < <usize>n; q++) {
        const at = q * size;
        const g = <f64>load<T>(gr + at) * w - <f64>load<T>(tr + at);
        store<T>(gr + at, divided<T>(g, divisor));
      }
    }
  }
  if (loss != 0) store<T>(loss, divided<T>(total, divisor));
}

/**
 * v rounded to T, then divided by `divisor` and rounded again: what the op's compute does to the
 * kernel's output for a mean (the same bits as dividing the stored T in JS).
 */
function divided<T>(v: f64, divisor: f64): T {
  return <T>(<f64>(<T>v) / divisor);
}

/** {@link crossEntropy} over f32 (`width` 4) or f64 (`width` 8) arrays. */
export function crossEntropyOf(
  width: i32,
  x: usize,
  t: usize,
  loss: usize,
  grad: usize,
  rows: i32,
  n: i32,
  divisor: f64,
): void {
  if (width == 4) crossEntropy<f32>(x, t, loss, grad, rows, n, divisor);
  else crossEntropy<f64>(x, t, loss, grad, rows, n, divisor);
}

/**
 * Row `rows[i]` of a table of `rowBytes`-byte rows at `src` to row i at `dst`, for i < count
 * (`rows`: i32 indices): a training shard's gathered rows in one call.
 */
export function gatherRows(src: usize, rows: usize, dst: usize, count: i32, rowBytes: i32): void {
  const bytes = <usize>rowBytes;
  for (let i = 0; i < count; i++) {
    const row = <usize>load<i32>(rows + ((<usize>i) << 2));
    memory.copy(dst + <usize>i * bytes, src + row * bytes, bytes);
  }
}

/**
 * count products C_i = op(A_i) @ op(B_i), A_i at a + i * strideA bytes and B_i at b + i * strideB
 * (a stride of 0 broadcasts one matrix), each the 2-D kernel's call; C_i dense (m x n) at
 * c + i * m * n elements, so c needs (count - 1) * m * n + paddedRows(m) * paddedCols(n) elements:
 * each product is written padded, then compacted before the next one overwrites its padding.
 */
function matmulBatch(
  f32: bool,
  a: usize,
  b: usize,
  pack: usize,
  c: usize,
  m: i32,
  n: i32,
  k: i32,
  transA: bool,
  transB: bool,
  count: i32,
  strideA: usize,
  strideB: usize,
): void {
  const elem = f32 ? 4 : 8;
  const rowBytes = n * elem;
  const ldc = (f32 ? paddedColsF32(n) : paddedColsF64(n)) * elem;
  const outBytes = <usize>m * rowBytes;
  for (let i = 0; i < count; i++) {
    const ci = c + <usize>i * outBytes;
    const ai = a + <usize>i * strideA;
    const bi = b + <usize>i * strideB;
    if (f32) matmulF32(ai, bi, pack, ci, m, n, k, transA, transB, false);
    else matmulF64(ai, bi, pack, ci, m, n, k, transA, transB);
    compactRows(ci, m, rowBytes, ldc);
  }
}

/** {@link matmulBatch} in f32. */
export function matmulBatchF32(
  a: usize,
  b: usize,
  pack: usize,
  c: usize,
  m: i32,
  n: i32,
  k: i32,
  transA: bool,
  transB: bool,
  count: i32,
  strideA: usize,
  strideB: usize,
): void {
  matmulBatch(true, a, b, pack, c, m, n, k, transA, transB, count, strideA, strideB);
}

/** {@link matmulBatch} in f64. */
export function matmulBatchF64(
  a: usize,
  b: usize,
  pack: usize,
  c: usize,
  m: i32,
  n: i32,
  k: i32,
  transA: bool,
  transB: bool,
  count: i32,
  strideA: usize,
  strideB: usize,
): void {
  matmulBatch(false, a, b, pack, c, m, n, k, transA, transB, count, strideA, strideB);
}

/**
 * A convolution's patches of x [n, c, h, w] as the columns of cols [c*kh*kw, n*oh*ow] (row
 * (ch, p, q), column (b, i, j) holds x[b, ch, i*sh - ph + p, j*sw - pw + q], 0 in the padding):
 * with `scatter`, the reverse: x is zeroed and each column entry added back to its pixel (col2im).
 * geometry: [n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow] as i32 at `dims`.
 */
function patches<T>(x: usize, cols: usize, dims: usize, scatter: bool): void {
  const n = load<i32>(dims);
  const c = load<i32>(dims, 4);
  const h = load<i32>(dims, 8);
  const w = load<i32>(dims, 12);
  const kh = load<i32>(dims, 16);
  const kw = load<i32>(dims, 20);
  const sh = load<i32>(dims, 24);
  const sw = load<i32>(dims, 28);
  const ph = load<i32>(dims, 32);
  const pw = load<i32>(dims, 36);
  const oh = load<i32>(dims, 40);
  const ow = load<i32>(dims, 44);
  const shift = alignof<T>();
  if (scatter) memory.fill(x, 0, (<usize>n * c * h * w) << shift);
  let dst = cols;
  for (let ch = 0; ch < c; ch++) {
    for (let p = 0; p < kh; p++) {
      for (let q = 0; q < kw; q++) {
        // Output columns j whose input column j*sw - pw + q lies inside [0, w).
        let j0 = 0;
        while (j0 < ow && j0 * sw - pw + q < 0) j0++;
        let j1 = ow;
        while (j1 > j0 && (j1 - 1) * sw - pw + q >= w) j1--;
        for (let b = 0; b < n; b++) {
          const plane = x + ((<usize>(b * c + ch) * h * w) << shift);
          for (let i = 0; i < oh; i++, dst += (<usize>ow) << shift) {
            const row = i * sh - ph + p;
            if (row < 0 || row >= h) {
              if (!scatter) memory.fill(dst, 0, (<usize>ow) << shift);
              continue;
            }
            const src = plane + ((<usize>(row * w + j0 * sw - pw + q)) << shift);
            const step = (<usize>sw) << shift;
            if (!scatter) {
              for (let j = 0; j < j0; j++) store<T>(dst + ((<usize>j) << shift), <T>0);
              for (let j = j1; j < ow; j++) store<T>(dst + ((<usize>j) << shift), <T>0);
              if (sw == 1)
                memory.copy(dst + ((<usize>j0) << shift), src, (<usize>(j1 - j0)) << shift);
              else
                for (let j = j0, s = src; j < j1; j++, s += step)
                  store<T>(dst + ((<usize>j) << shift), load<T>(s));
            } else {
              for (let j = j0, s = src; j < j1; j++, s += step)
                store<T>(s, load<T>(s) + load<T>(dst + ((<usize>j) << shift)));
            }
          }
        }
      }
    }
  }
}

/** {@link patches} in f32. */
export function patchesF32(x: usize, cols: usize, dims: usize, scatter: bool): void {
  patches<f32>(x, cols, dims, scatter);
}

/** {@link patches} in f64. */
export function patchesF64(x: usize, cols: usize, dims: usize, scatter: bool): void {
  patches<f64>(x, cols, dims, scatter);
}

/** dst [b, a, s] = src [a, b, s]: swaps the two leading axes, s elements of `bytes` each a run. */
export function swapLeading(src: usize, dst: usize, a: i32, b: i32, runBytes: usize): void {
  for (let i = 0; i < a; i++) {
    for (let j = 0; j < b; j++) {
      memory.copy(
        dst + <usize>(j * a + i) * runBytes,
        src + <usize>(i * b + j) * runBytes,
        runBytes,
      );
    }
  }
}

/** Whether e takes the window's maximum from v: larger, or the window's first NaN. */
function beats<T>(e: T, v: T): bool {
  return ((<i32>(e > v)) | ((<i32>(e != e)) & (<i32>(v == v)))) != 0;
}

/**
 * Output k of the select (u at the window's maximum, element `best` of x), or its gradient:
 * u[k] added into out at `best`.
 */
function placeChoice<T>(u: usize, out: usize, k: i32, best: i32, scatter: bool): void {
  const shift = alignof<T>();
  if (scatter) {
    const o = out + ((<usize>best) << shift);
    store<T>(o, load<T>(o) + load<T>(u + ((<usize>k) << shift)));
  } else {
    store<T>(out + ((<usize>k) << shift), load<T>(u + ((<usize>best) << shift)));
  }
}

/**
 * Max-pooling by the first maximum of each window of x [planes, h, w] (a NaN wins, its first):
 * out[k] = u[best] for window k (the pooled values when u is x), or with `scatter` out (x's
 * size) zeroed, then out[best] += u[k] window by window (the gradient), the js kernels' order.
 * geometry: [planes, h, w, oh, ow, kh, kw, sh, sw] as i32 at `dims`.
 */
function pool<T>(x: usize, u: usize, out: usize, dims: usize, scatter: bool): void {
  const planes = load<i32>(dims);
  const h = load<i32>(dims, 4);
  const w = load<i32>(dims, 8);
  const oh = load<i32>(dims, 12);
  const ow = load<i32>(dims, 16);
  const kh = load<i32>(dims, 20);
  const kw = load<i32>(dims, 24);
  const sh = load<i32>(dims, 28);
  const sw = load<i32>(dims, 32);
  const shift = alignof<T>();
  if (scatter) memory.fill(out, 0, (<usize>planes * h * w) << shift);
  if (kh == 2 && kw == 2 && sh == 2 && sw == 2) {
    pool2x2<T>(x, u, out, planes, h, w, oh, ow, scatter);
    return;
  }
  let k = 0;
  for (let plane = 0; plane < planes; plane++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++, k++) {
        let best = (plane * h + i * sh) * w + j * sw;
        let v = load<T>(x + ((<usize>best) << shift));
        for (let p = 0; p < kh; p++) {
          const row = (plane * h + i * sh + p) * w + j * sw;
          for (let q = 0; q < kw; q++) {
            const e = load<T>(x + ((<usize>(row + q)) << shift));
            const take = beats<T>(e, v);
            best = select<i32>(row + q, best, take);
            v = select<T>(e, v, take);
          }
        }
        placeChoice<T>(u, out, k, best, scatter);
      }
    }
  }
}

/**
 * {@link pool} for the common 2x2 window at stride 2, unrolled: the window's four elements in
 * the general loop's order, each taken branch-free (wasm select). The loop nest of the general
 * case cost about 20 ns a window (0.73 ms for the tutorial cnn's first pool of 32 images).
 */
function pool2x2<T>(
  x: usize,
  u: usize,
  out: usize,
  planes: i32,
  h: i32,
  w: i32,
  oh: i32,
  ow: i32,
  scatter: bool,
): void {
  const shift = alignof<T>();
  let k = 0;
  for (let plane = 0; plane < planes; plane++) {
    for (let i = 0; i < oh; i++) {
      const top = (plane * h + 2 * i) * w;
      let j = 0;
      if (sizeof<T>() == 4) {
        // Four windows at a time in f32x4 lanes: the same comparisons, lane by lane, no branch.
        for (; j + 4 <= ow; j += 4, k += 4) {
          const at = top + 2 * j;
          const a = x + ((<usize>at) << 2);
          const b = a + ((<usize>w) << 2);
          const a0 = v128.load(a);
          const a1 = v128.load(a, 16);
          const b0 = v128.load(b);
          const b1 = v128.load(b, 16);
          let v = v128.shuffle<f32>(a0, a1, 0, 2, 4, 6);
          const first = i32x4.add(i32x4.splat(at), i32x4(0, 2, 4, 6));
          let best = first;
          best = take4(
            v128.shuffle<f32>(a0, a1, 1, 3, 5, 7),
            i32x4.add(first, i32x4.splat(1)),
            v,
            best,
          );
          v = max4(v128.shuffle<f32>(a0, a1, 1, 3, 5, 7), v);
          const below = i32x4.add(first, i32x4.splat(w));
          best = take4(v128.shuffle<f32>(b0, b1, 0, 2, 4, 6), below, v, best);
          v = max4(v128.shuffle<f32>(b0, b1, 0, 2, 4, 6), v);
          best = take4(
            v128.shuffle<f32>(b0, b1, 1, 3, 5, 7),
            i32x4.add(below, i32x4.splat(1)),
            v,
            best,
          );
          for (let l = 0; l < 4; l++) {
            const index = i32x4.extract_lane(best, 0);
            best = v128.shuffle<i32>(best, best, 1, 2, 3, 0);
            placeChoice<f32>(u, out, k + l, index, scatter);
          }
        }
      }
      for (; j < ow; j++, k++) {
        let best = top + 2 * j;
        let v = load<T>(x + ((<usize>best) << shift));
        for (let t = 1; t < 4; t++) {
          const at = top + 2 * j + (t & 1) + (t >> 1) * w;
          const e = load<T>(x + ((<usize>at) << shift));
          const take = beats<T>(e, v);
          best = select<i32>(at, best, take);
          v = select<T>(e, v, take);
        }
        placeChoice<T>(u, out, k, best, scatter);
      }
    }
  }
}

/** The lanes where e wins over v (greater, or the first NaN): index `at`, else `best`. */
function take4(e: v128, at: v128, v: v128, best: v128): v128 {
  return v128.bitselect(at, best, wins4(e, v));
}

/** e where it wins over v (greater, or the first NaN), else v, lane by lane. */
function max4(e: v128, v: v128): v128 {
  return v128.bitselect(e, v, wins4(e, v));
}

/** All-ones lanes where e > v, or e is NaN and v is not. */
function wins4(e: v128, v: v128): v128 {
  return v128.or(f32x4.gt(e, v), v128.and(f32x4.ne(e, e), f32x4.eq(v, v)));
}

/** {@link pool} in f32. */
export function poolF32(x: usize, u: usize, out: usize, dims: usize, scatter: bool): void {
  pool<f32>(x, u, out, dims, scatter);
}

/** {@link pool} in f64. */
export function poolF64(x: usize, u: usize, out: usize, dims: usize, scatter: bool): void {
  pool<f64>(x, u, out, dims, scatter);
}

/**
 * out[o, c, i] = x[o, c, i] (op) y[c] for outer x channels x inner elements of T: a per-channel
 * value (a convolution's bias [F, 1, 1]) over [N, F, H, W]; op as binary (0 add, 1 sub, 2 mul,
 * 3 div), one IEEE operation per element, so the js loops' bits.
 */
function channelBinary<T>(
  op: i32,
  x: usize,
  y: usize,
  out: usize,
  outer: i32,
  channels: i32,
  inner: i32,
): void {
  if (<u32>op > <u32>BinaryCode.div) unreachable();
  const shift = alignof<T>();
  const lanes = 16 / <i32>sizeof<T>();
  const nv = inner & ~(lanes - 1);
  let p: usize = 0;
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++) {
      const v = load<T>(y + ((<usize>c) << shift));
      const s = v128.splat<T>(v);
      let i = 0;
      for (; i < nv; i += lanes, p += 16) {
        const e = v128.load(x + p);
        const r =
          op == BinaryCode.add
            ? v128.add<T>(e, s)
            : op == BinaryCode.sub
              ? v128.sub<T>(e, s)
              : op == BinaryCode.mul
                ? v128.mul<T>(e, s)
                : v128.div<T>(e, s);
        v128.store(out + p, r);
      }
      for (; i < inner; i++, p += sizeof<T>()) {
        const e = load<T>(x + p);
        store<T>(
          out + p,
          op == BinaryCode.add
            ? e + v
            : op == BinaryCode.sub
              ? e - v
              : op == BinaryCode.mul
                ? e * v
                : e / v,
        );
      }
    }
  }
}

/** {@link channelBinary} in f32. */
export function channelBinaryF32(
  op: i32,
  x: usize,
  y: usize,
  out: usize,
  outer: i32,
  channels: i32,
  inner: i32,
): void {
  channelBinary<f32>(op, x, y, out, outer, channels, inner);
}

/** {@link channelBinary} in f64. */
export function channelBinaryF64(
  op: i32,
  x: usize,
  y: usize,
  out: usize,
  outer: i32,
  channels: i32,
  inner: i32,
): void {
  channelBinary<f64>(op, x, y, out, outer, channels, inner);
}

/**
 * out[c] = the sum of x[o, c, i] over o and i, each channel's elements added one by one in x's
 * row-major order from 0 (the js kernels' order, so their bits): a bias gradient [F, 1, 1].
 */
function channelSum<T>(x: usize, out: usize, outer: i32, channels: i32, inner: i32): void {
  const shift = alignof<T>();
  memory.fill(out, 0, (<usize>channels) << shift);
  let p = x;
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++) {
      const at = out + ((<usize>c) << shift);
      let s = load<T>(at);
      const end = p + ((<usize>inner) << shift);
      for (; p < end; p += sizeof<T>()) s += load<T>(p);
      store<T>(at, s);
    }
  }
}

/** {@link channelSum} in f32. */
export function channelSumF32(x: usize, out: usize, outer: i32, channels: i32, inner: i32): void {
  channelSum<f32>(x, out, outer, channels, inner);
}

/** {@link channelSum} in f64. */
export function channelSumF64(x: usize, out: usize, outer: i32, channels: i32, inner: i32): void {
  channelSum<f64>(x, out, outer, channels, inner);
}
