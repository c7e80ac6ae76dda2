/**
 * WASM SIMD kernels (AssemblyScript, compiled by `npm run build:wasm` to build/kernels.wasm).
 *
 * Memory is managed by the host: it copies operands into the linear memory above `heapBase()`,
 * passes byte addresses, and reads results back. Nothing here allocates.
 *
 * matmul: op(A) @ op(B) = C, row-major (GotoBLAS-style loops). Per K-block of KC, op(B) is packed
 * into NR-column panels and, per row block of MC, op(A) into MR-row micro-panels (both zero
 * padded), so the four transpose combinations differ only in packing and one register-blocked
 * micro-kernel (MR x NR tile, 8 v128 accumulators) streams both panels with immediate offsets.
 * C has padded rows and columns (MR/NR multiples); the host copies out the valid part. Each C
 * element is summed in the fixed order p = 0..K-1 (mul then add, no fusion) whatever the blocking,
 * so results depend only on the operands and shapes.
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

/** First free byte of the linear memory: the host places operands from here on. */
export function heapBase(): usize {
  return (__heap_base + 15) & ~(<usize>15);
}

/** Rows of C the f32 kernel writes (m rounded up to the tile height). */
export function paddedRowsF32(m: i32): i32 {
  return (m + MR32 - 1) & ~(MR32 - 1);
}

/** Columns of C the f32 kernel writes (n rounded up to the panel width). */
export function paddedColsF32(n: i32): i32 {
  return (n + NR32 - 1) & ~(NR32 - 1);
}

/** Rows of C the f64 kernel writes. */
export function paddedRowsF64(m: i32): i32 {
  return (m + MR64 - 1) & ~(MR64 - 1);
}

/** Columns of C the f64 kernel writes. */
export function paddedColsF64(n: i32): i32 {
  return (n + NR64 - 1) & ~(NR64 - 1);
}

/** Bytes of packing scratch the f32 matmul needs for n columns. */
export function packBytesF32(n: i32, k: i32): i32 {
  return min(k, KC) * (paddedColsF32(n) + MC) * 4;
}

/** Bytes of packing scratch the f64 matmul needs for n columns. */
export function packBytesF64(n: i32, k: i32): i32 {
  return min(k, KC) * (paddedColsF64(n) + MC) * 8;
}

/** Packs op(B)[p0 : p0+kc, 0:n] into NR32-wide panels, panel j at pack + j*kc*NR32*4. */
function packB32(b: usize, pack: usize, n: i32, k: i32, p0: i32, kc: i32, transB: bool): void {
  const panels = (n + NR32 - 1) / NR32;
  for (let jp = 0; jp < panels; jp++) {
    const j0 = jp * NR32;
    const w = min(NR32, n - j0);
    const panel = pack + <usize>(jp * kc * NR32 * 4);
    if (!transB) {
      // B is k x n: each panel row is a contiguous slice of a B row.
      for (let p = 0; p < kc; p++) {
        const src = b + ((<usize>(p0 + p) * n + j0) << 2);
        const dst = panel + <usize>(p * NR32 * 4);
        if (w == NR32) {
          v128.store(dst, v128.load(src));
          v128.store(dst, v128.load(src, 16), 16);
        } else {
          v128.store(dst, f32x4.splat(0));
          v128.store(dst, f32x4.splat(0), 16);
          for (let j = 0; j < w; j++) store<f32>(dst + (j << 2), load<f32>(src + (j << 2)));
        }
      }
    } else {
      // B is n x k: column j of op(B) is row j of B, contiguous in p.
      if (w < NR32) memory.fill(panel, 0, <usize>(kc * NR32 * 4));
      for (let j = 0; j < w; j++) {
        const src = b + ((<usize>(j0 + j) * k + p0) << 2);
        const dst = panel + (j << 2);
        for (let p = 0; p < kc; p++) {
          store<f32>(dst + <usize>(p * NR32 * 4), load<f32>(src + (p << 2)));
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
  for (let t = 0; t < rows; t += MR32) {
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
    c00 = f32x4.add(c00, f32x4.mul(x, b0));
    c01 = f32x4.add(c01, f32x4.mul(x, b1));
    x = v128.load32_splat(ap, 4);
    c10 = f32x4.add(c10, f32x4.mul(x, b0));
    c11 = f32x4.add(c11, f32x4.mul(x, b1));
    x = v128.load32_splat(ap, 8);
    c20 = f32x4.add(c20, f32x4.mul(x, b0));
    c21 = f32x4.add(c21, f32x4.mul(x, b1));
    x = v128.load32_splat(ap, 12);
    c30 = f32x4.add(c30, f32x4.mul(x, b0));
    c31 = f32x4.add(c31, f32x4.mul(x, b1));
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
): void {
  const mPad = paddedRowsF32(m);
  const nPad = paddedColsF32(n);
  const ldc = (<usize>nPad) << 2;
  if (k == 0) {
    memory.fill(c, 0, <usize>mPad * ldc);
    return;
  }
  const panels = nPad / NR32;
  const packA = pack + <usize>(min(k, KC) * nPad * 4);
  for (let p0 = 0; p0 < k; p0 += KC) {
    const kc = min(KC, k - p0);
    packB32(b, pack, n, k, p0, kc, transB);
    for (let i0 = 0; i0 < mPad; i0 += MC) {
      const rows = min(MC, mPad - i0);
      packA32(a, packA, m, k, i0, rows, p0, kc, transA);
      for (let jp = 0; jp < panels; jp++) {
        const bp = pack + <usize>(jp * kc * NR32 * 4);
        const cCol = c + <usize>(jp * NR32 * 4);
        for (let t = 0; t < rows; t += MR32) {
          const ap = packA + <usize>(t * kc * 4);
          kernel32(ap, bp, cCol + <usize>(i0 + t) * ldc, ldc, kc, p0 > 0);
        }
      }
    }
  }
}

/** Packs op(B)[p0 : p0+kc, 0:n] into NR64-wide f64 panels. */
function packB64(b: usize, pack: usize, n: i32, k: i32, p0: i32, kc: i32, transB: bool): void {
  const panels = (n + NR64 - 1) / NR64;
  for (let jp = 0; jp < panels; jp++) {
    const j0 = jp * NR64;
    const w = min(NR64, n - j0);
    const panel = pack + <usize>(jp * kc * NR64 * 8);
    if (!transB) {
      for (let p = 0; p < kc; p++) {
        const src = b + ((<usize>(p0 + p) * n + j0) << 3);
        const dst = panel + <usize>(p * NR64 * 8);
        if (w == NR64) {
          v128.store(dst, v128.load(src));
          v128.store(dst, v128.load(src, 16), 16);
        } else {
          v128.store(dst, f64x2.splat(0));
          v128.store(dst, f64x2.splat(0), 16);
          for (let j = 0; j < w; j++) store<f64>(dst + (j << 3), load<f64>(src + (j << 3)));
        }
      }
    } else {
      if (w < NR64) memory.fill(panel, 0, <usize>(kc * NR64 * 8));
      for (let j = 0; j < w; j++) {
        const src = b + ((<usize>(j0 + j) * k + p0) << 3);
        const dst = panel + (j << 3);
        for (let p = 0; p < kc; p++) {
          store<f64>(dst + <usize>(p * NR64 * 8), load<f64>(src + (p << 3)));
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
    c00 = f64x2.add(c00, f64x2.mul(x, b0));
    c01 = f64x2.add(c01, f64x2.mul(x, b1));
    x = v128.load64_splat(ap, 8);
    c10 = f64x2.add(c10, f64x2.mul(x, b0));
    c11 = f64x2.add(c11, f64x2.mul(x, b1));
    x = v128.load64_splat(ap, 16);
    c20 = f64x2.add(c20, f64x2.mul(x, b0));
    c21 = f64x2.add(c21, f64x2.mul(x, b1));
    x = v128.load64_splat(ap, 24);
    c30 = f64x2.add(c30, f64x2.mul(x, b0));
    c31 = f64x2.add(c31, f64x2.mul(x, b1));
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
  const panels = nPad / NR64;
  const packA = pack + <usize>(min(k, KC) * nPad * 8);
  for (let p0 = 0; p0 < k; p0 += KC) {
    const kc = min(KC, k - p0);
    packB64(b, pack, n, k, p0, kc, transB);
    for (let i0 = 0; i0 < mPad; i0 += MC) {
      const rows = min(MC, mPad - i0);
      packA64(a, packA, m, k, i0, rows, p0, kc, transA);
      for (let jp = 0; jp < panels; jp++) {
        const bp = pack + <usize>(jp * kc * NR64 * 8);
        const cCol = c + <usize>(jp * NR64 * 8);
        for (let t = 0; t < rows; t += MR64) {
          const ap = packA + <usize>(t * kc * 8);
          kernel64(ap, bp, cCol + <usize>(i0 + t) * ldc, ldc, kc, p0 > 0);
        }
      }
    }
  }
}

/** out[i] = x[i] (op) y[i] for n f32 elements; op 0 add, 1 sub, 2 mul, 3 div. */
export function binaryF32(op: i32, x: usize, y: usize, out: usize, n: i32): void {
  const n4 = n & ~3;
  let i = 0;
  if (op == 0) {
    for (; i < n4; i += 4) {
      const o = (<usize>i) << 2;
      v128.store(out + o, f32x4.add(v128.load(x + o), v128.load(y + o)));
    }
  } else if (op == 1) {
    for (; i < n4; i += 4) {
      const o = (<usize>i) << 2;
      v128.store(out + o, f32x4.sub(v128.load(x + o), v128.load(y + o)));
    }
  } else if (op == 2) {
    for (; i < n4; i += 4) {
      const o = (<usize>i) << 2;
      v128.store(out + o, f32x4.mul(v128.load(x + o), v128.load(y + o)));
    }
  } else {
    for (; i < n4; i += 4) {
      const o = (<usize>i) << 2;
      v128.store(out + o, f32x4.div(v128.load(x + o), v128.load(y + o)));
    }
  }
  for (; i < n; i++) {
    const o = (<usize>i) << 2;
    const u = load<f32>(x + o);
    const v = load<f32>(y + o);
    store<f32>(out + o, op == 0 ? u + v : op == 1 ? u - v : op == 2 ? u * v : u / v);
  }
}

/** out[i] = x[i] (op) y[i] for n f64 elements; op 0 add, 1 sub, 2 mul, 3 div. */
export function binaryF64(op: i32, x: usize, y: usize, out: usize, n: i32): void {
  const n2 = n & ~1;
  let i = 0;
  if (op == 0) {
    for (; i < n2; i += 2) {
      const o = (<usize>i) << 3;
      v128.store(out + o, f64x2.add(v128.load(x + o), v128.load(y + o)));
    }
  } else if (op == 1) {
    for (; i < n2; i += 2) {
      const o = (<usize>i) << 3;
      v128.store(out + o, f64x2.sub(v128.load(x + o), v128.load(y + o)));
    }
  } else if (op == 2) {
    for (; i < n2; i += 2) {
      const o = (<usize>i) << 3;
      v128.store(out + o, f64x2.mul(v128.load(x + o), v128.load(y + o)));
    }
  } else {
    for (; i < n2; i += 2) {
      const o = (<usize>i) << 3;
      v128.store(out + o, f64x2.div(v128.load(x + o), v128.load(y + o)));
    }
  }
  for (; i < n; i++) {
    const o = (<usize>i) << 3;
    const u = load<f64>(x + o);
    const v = load<f64>(y + o);
    store<f64>(out + o, op == 0 ? u + v : op == 1 ? u - v : op == 2 ? u * v : u / v);
  }
}
