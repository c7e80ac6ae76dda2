/** The reference backend: plain TypeScript loops over typed arrays, fixed summation order. */
import type {
  Backend,
  BinaryKind,
  ConvGeometry,
  PoolGeometry,
  ReduceKind,
  ScalarKind,
  UnaryKind,
} from "../backend.js";
import { assertNever } from "../assert.js";
import { broadcastShapes, fmt, reducedShape, sameShape, sizeOf, stridesOf } from "../shape.js";
import {
  allocate,
  allocateArray,
  releaseArray,
  resultDType,
  Tensor,
  type TypedArray,
} from "../tensor.js";

// NOTE: every kernel below is a small set of explicit loops chosen by shape (no per-element
// closure: a closure call per element cost more than the arithmetic on the training workloads'
// 50x10 arrays). Summation order is always the one of a row-major walk over the input: each output
// element is 0 + x0 + x1 + ... over its inputs in increasing index, rounded to the output dtype
// after every addition (as the generic `o[io] += d[i]` loop this replaced did), so results are
// bitwise those of that loop and depend only on the shapes.

/**
 * `shape` without its size-1 dims, neighbouring dims of the same class (broadcast the same way,
 * reduced or kept) merged into one: the sizes and each merged dim's class.
 */
function mergeDims<C>(shape: readonly number[], classOf: (dim: number) => C): [number[], C[]] {
  const sizes: number[] = [];
  const classes: C[] = [];
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] === 1) continue;
    const c = classOf(i);
    if (sizes.length > 0 && classes[classes.length - 1] === c) sizes[sizes.length - 1] *= shape[i];
    else {
      sizes.push(shape[i]);
      classes.push(c);
    }
  }
  return [sizes, classes];
}

/** The offsets sum(idx[d] * strides[d]) of a row-major walk over `sizes`: the odometer, once. */
function stridedOffsets(sizes: readonly number[], strides: readonly number[]): Int32Array {
  const rank = sizes.length;
  const offsets = new Int32Array(sizeOf(sizes));
  const idx = new Array<number>(rank).fill(0);
  let at = 0;
  for (let i = 0; i < offsets.length; i++) {
    offsets[i] = at;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      at += strides[d];
      if (idx[d] < sizes[d]) break;
      at -= strides[d] * sizes[d];
      idx[d] = 0;
    }
  }
  return offsets;
}

/**
 * o[r*cols + c] = x[r*xRow + c*xCol] (op) y[r*yRow + c*yCol] at `o`, `x`, `y` offsets: every
 * broadcast pattern of two merged dims (rows, column broadcast, outer product) in one loop nest.
 */
function binary2d(
  kind: BinaryKind,
  o: TypedArray,
  oOff: number,
  x: TypedArray,
  xOff: number,
  xRow: number,
  xCol: number,
  y: TypedArray,
  yOff: number,
  yRow: number,
  yCol: number,
  rows: number,
  cols: number,
): void {
  let k = oOff;
  for (let r = 0; r < rows; r++) {
    let i = xOff + r * xRow;
    let j = yOff + r * yRow;
    const end = k + cols;
    switch (kind) {
      case "add":
        for (; k < end; k++, i += xCol, j += yCol) o[k] = x[i] + y[j];
        break;
      case "sub":
        for (; k < end; k++, i += xCol, j += yCol) o[k] = x[i] - y[j];
        break;
      case "mul":
        for (; k < end; k++, i += xCol, j += yCol) o[k] = x[i] * y[j];
        break;
      case "div":
        for (; k < end; k++, i += xCol, j += yCol) o[k] = x[i] / y[j];
        break;
      case "minimum":
        for (; k < end; k++, i += xCol, j += yCol) o[k] = Math.min(x[i], y[j]);
        break;
      case "maximum":
        for (; k < end; k++, i += xCol, j += yCol) o[k] = Math.max(x[i], y[j]);
        break;
      case "greater":
        for (; k < end; k++, i += xCol, j += yCol) o[k] = x[i] > y[j] ? 1 : 0;
        break;
      default:
        assertNever(kind);
    }
  }
}

/**
 * o[i] = x[i] (op) y[i]: equal shapes, the element-wise hot path of training. Kept apart from
 * binary2d's strided loops (unit strides there measured ~20% slower on 128x256 f32 under V8).
 */
function binaryFlat(
  kind: BinaryKind,
  o: TypedArray,
  x: TypedArray,
  y: TypedArray,
  n: number,
): void {
  switch (kind) {
    case "add":
      for (let i = 0; i < n; i++) o[i] = x[i] + y[i];
      break;
    case "sub":
      for (let i = 0; i < n; i++) o[i] = x[i] - y[i];
      break;
    case "mul":
      for (let i = 0; i < n; i++) o[i] = x[i] * y[i];
      break;
    case "div":
      for (let i = 0; i < n; i++) o[i] = x[i] / y[i];
      break;
    case "minimum":
      for (let i = 0; i < n; i++) o[i] = Math.min(x[i], y[i]);
      break;
    case "maximum":
      for (let i = 0; i < n; i++) o[i] = Math.max(x[i], y[i]);
      break;
    case "greater":
      for (let i = 0; i < n; i++) o[i] = x[i] > y[i] ? 1 : 0;
      break;
    default:
      assertNever(kind);
  }
}

function binary(kind: BinaryKind, a: Tensor, b: Tensor): Tensor {
  const shape = broadcastShapes(a.shape, b.shape);
  if (!shape) throw new Error(`shapes ${fmt(a.shape)} and ${fmt(b.shape)} do not broadcast`);
  const out = allocate(shape, resultDType(a.dtype, b.dtype));
  const o = out.data;
  const x = a.data;
  const y = b.data;
  const n = o.length;
  if (n === 0) return out;
  if (sameShape(a.shape, b.shape)) {
    binaryFlat(kind, o, x, y, n);
    return out;
  }
  // Drop size-1 output dims, merge neighbours broadcast the same way in both inputs; what is left
  // is at most a few dims, the last two done by binary2d.
  const aOffset = shape.length - a.rank;
  const bOffset = shape.length - b.rank;
  // pattern bit 0: a varies along the dim, bit 1: b varies.
  const [sizes, pattern] = mergeDims(
    shape,
    (i) =>
      (i >= aOffset && a.shape[i - aOffset] === shape[i] ? 1 : 0) |
      (i >= bOffset && b.shape[i - bOffset] === shape[i] ? 2 : 0),
  );
  const merged = sizes.length;
  const aStrides = new Array<number>(merged);
  const bStrides = new Array<number>(merged);
  let sa = 1;
  let sb = 1;
  for (let i = merged - 1; i >= 0; i--) {
    aStrides[i] = pattern[i] & 1 ? sa : 0;
    bStrides[i] = pattern[i] & 2 ? sb : 0;
    if (pattern[i] & 1) sa *= sizes[i];
    if (pattern[i] & 2) sb *= sizes[i];
  }
  if (merged <= 2) {
    // (n,k) op (k,), (n,k) op (n,1), (n,1) op (1,k), scalars: one loop nest.
    const rows = merged === 2 ? sizes[0] : 1;
    const cols = merged === 0 ? 1 : sizes[merged - 1];
    const [xRow, yRow] = merged === 2 ? [aStrides[0], bStrides[0]] : [0, 0];
    const [xCol, yCol] = merged === 0 ? [0, 0] : [aStrides[merged - 1], bStrides[merged - 1]];
    binary2d(kind, o, 0, x, 0, xRow, xCol, y, 0, yRow, yCol, rows, cols);
    return out;
  }
  // Higher ranks: binary2d on the last two merged dims at each offset of the leading ones.
  const lead = merged - 2;
  const [rows, cols] = [sizes[lead], sizes[lead + 1]];
  const aAt = stridedOffsets(sizes.slice(0, lead), aStrides);
  const bAt = stridedOffsets(sizes.slice(0, lead), bStrides);
  const [xRow, xCol, yRow, yCol] = [
    aStrides[lead],
    aStrides[lead + 1],
    bStrides[lead],
    bStrides[lead + 1],
  ];
  for (let t = 0; t < aAt.length; t++) {
    binary2d(kind, o, t * rows * cols, x, aAt[t], xRow, xCol, y, bAt[t], yRow, yCol, rows, cols);
  }
  return out;
}

function unary(kind: UnaryKind, x: Tensor): Tensor {
  const out = allocate(x.shape, x.dtype);
  const o = out.data;
  const d = x.data;
  const n = d.length;
  switch (kind) {
    case "neg":
      for (let i = 0; i < n; i++) o[i] = -d[i];
      break;
    case "exp":
      for (let i = 0; i < n; i++) o[i] = Math.exp(d[i]);
      break;
    case "log":
      for (let i = 0; i < n; i++) o[i] = Math.log(d[i]);
      break;
    case "sqrt":
      for (let i = 0; i < n; i++) o[i] = Math.sqrt(d[i]);
      break;
    case "relu":
      for (let i = 0; i < n; i++) o[i] = d[i] > 0 ? d[i] : 0;
      break;
    case "step":
      for (let i = 0; i < n; i++) o[i] = d[i] > 0 ? 1 : 0;
      break;
    case "sigmoid":
      // Stable logistic: never evaluates exp of a large positive number.
      for (let i = 0; i < n; i++) {
        const v = d[i];
        if (v >= 0) o[i] = 1 / (1 + Math.exp(-v));
        else {
          const e = Math.exp(v);
          o[i] = e / (1 + e);
        }
      }
      break;
    case "tanh":
      for (let i = 0; i < n; i++) o[i] = Math.tanh(d[i]);
      break;
    case "abs":
      for (let i = 0; i < n; i++) o[i] = Math.abs(d[i]);
      break;
    default:
      assertNever(kind);
  }
  return out;
}

function scalar(kind: ScalarKind, x: Tensor, c: number): Tensor {
  const out = allocate(x.shape, x.dtype);
  const o = out.data;
  const d = x.data;
  const n = d.length;
  switch (kind) {
    case "add":
      for (let i = 0; i < n; i++) o[i] = d[i] + c;
      break;
    case "mul":
      for (let i = 0; i < n; i++) o[i] = d[i] * c;
      break;
    case "div":
      for (let i = 0; i < n; i++) o[i] = d[i] / c;
      break;
    case "pow":
      if (c === 2) for (let i = 0; i < n; i++) o[i] = d[i] * d[i];
      else for (let i = 0; i < n; i++) o[i] = Math.pow(d[i], c);
      break;
    default:
      assertNever(kind);
  }
  return out;
}

/** Side of the square tiles transpose2d walks: two 32x32 f64 tiles (16 KiB) fit in L1. */
const TRANSPOSE_TILE = 32;

/** Writes the transpose of the (rows x cols) row-major matrix `a` into `into`, tile by tile. */
function transpose2d(a: TypedArray, rows: number, cols: number, into: TypedArray): TypedArray {
  for (let i0 = 0; i0 < rows; i0 += TRANSPOSE_TILE) {
    const iEnd = Math.min(i0 + TRANSPOSE_TILE, rows);
    for (let j0 = 0; j0 < cols; j0 += TRANSPOSE_TILE) {
      const jEnd = Math.min(j0 + TRANSPOSE_TILE, cols);
      for (let i = i0; i < iEnd; i++) {
        for (let j = j0; j < jEnd; j++) into[j * rows + i] = a[i * cols + j];
      }
    }
  }
  return into;
}

function matmul(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
  if (a.rank !== 2 || b.rank !== 2) return batchedMatmul(a, b, transA, transB, matmul2d);
  return matmul2d(a, b, transA, transB);
}

/** A 2-D matrix product: what batchedMatmul calls once per matrix. */
export type Matmul2d = (a: Tensor, b: Tensor, transA: boolean, transB: boolean) => Tensor;

/**
 * op(a) @ op(b) over the last two axes, the leading (batch) axes broadcast as NumPy's matmul:
 * one 2-D product per output matrix on views of the inputs (in place in a backend's memory).
 */
export function batchedMatmul(
  a: Tensor,
  b: Tensor,
  transA: boolean,
  transB: boolean,
  matmul2: Matmul2d,
): Tensor {
  if (a.rank < 2 || b.rank < 2) {
    throw new Error(`expects inputs of rank 2 or more, got ${fmt(a.shape)} @ ${fmt(b.shape)}`);
  }
  const [ra, ca] = a.shape.slice(-2);
  const [rb, cb] = b.shape.slice(-2);
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const batch = broadcastShapes(batchA, batchB);
  if (batch === null) {
    throw new Error(`batch dimensions do not broadcast: ${fmt(a.shape)} @ ${fmt(b.shape)}`);
  }
  const [m, k] = transA ? [ca, ra] : [ra, ca];
  const [k2, n] = transB ? [cb, rb] : [rb, cb];
  if (k !== k2) throw new Error(`inner dimensions differ: ${fmt(a.shape)} @ ${fmt(b.shape)}`);
  // A stack of matrices times one matrix (a layer's weights over tokens): one product of the
  // stack's rows, [batch*m, k] @ [k, n], instead of a call per matrix.
  if (b.rank === 2 && !transA && sameShape(batch, batchA)) {
    const rows = matmul2(a.reshapeView([a.size / ca, ca]), b, false, transB);
    return rows.reshapeView([...batch, m, n]);
  }
  const out = allocate([...batch, m, n], resultDType(a.dtype, b.dtype), false, false);
  // Each input's matrix for output matrix i: its own batch index, 0 along broadcast axes.
  const offsetIn = (shape: readonly number[], index: readonly number[]) => {
    let flat = 0;
    const skip = batch.length - shape.length;
    for (let d = 0; d < shape.length; d++)
      flat = flat * shape[d] + (shape[d] === 1 ? 0 : index[d + skip]);
    return flat;
  };
  const index = new Array<number>(batch.length).fill(0);
  const count = sizeOf(batch);
  for (let i = 0; i < count; i++) {
    const ai = offsetIn(batchA, index) * ra * ca;
    const bi = offsetIn(batchB, index) * rb * cb;
    const a2 = new Tensor(a.data.subarray(ai, ai + ra * ca), [ra, ca]);
    const b2 = new Tensor(b.data.subarray(bi, bi + rb * cb), [rb, cb]);
    const product = matmul2(a2, b2, transA, transB);
    out.data.set(product.data, i * m * n);
    releaseArray(product.data);
    for (let d = batch.length - 1; d >= 0 && ++index[d] === batch[d]; d--) index[d] = 0;
  }
  return out;
}

function matmul2d(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
  const m = transA ? a.shape[1] : a.shape[0];
  const k = transA ? a.shape[0] : a.shape[1];
  const k2 = transB ? b.shape[1] : b.shape[0];
  const n = transB ? b.shape[0] : b.shape[1];
  if (k !== k2) throw new Error(`inner dimensions differ: ${fmt(a.shape)} @ ${fmt(b.shape)}`);
  const out = allocate([m, n], resultDType(a.dtype, b.dtype));
  const C = out.data;
  let A = a.data;
  let B = b.data;
  if (transA && transB) {
    B = transpose2d(B, n, k, new (B.constructor as Float64ArrayConstructor)(k * n));
    transB = false;
  }
  if (!transB) {
    // C[i,:] += A(i,p) * B[p,:], row-major inner loop; A(i,p) read in place with either layout.
    const aRow = transA ? 1 : k;
    const aCol = transA ? m : 1;
    for (let i = 0; i < m; i++) {
      const ci = i * n;
      for (let p = 0; p < k; p++) {
        const av = A[i * aRow + p * aCol];
        if (av === 0) continue;
        const bp = p * n;
        for (let j = 0; j < n; j++) C[ci + j] += av * B[bp + j];
      }
    }
  } else {
    // C[i,j] = dot(A[i,:], B[j,:]): both rows contiguous.
    if (transA) {
      A = transpose2d(A, k, m, new (A.constructor as Float64ArrayConstructor)(m * k));
    }
    for (let i = 0; i < m; i++) {
      const ai = i * k;
      for (let j = 0; j < n; j++) {
        const bj = j * k;
        let s = 0;
        for (let p = 0; p < k; p++) s += A[ai + p] * B[bj + p];
        C[i * n + j] = s;
      }
    }
  }
  return out;
}

/**
 * A reduction of `shape` over `axes` as [outer, reduced, inner] blocks (x viewed as
 * outer x reduced x inner, row-major), or null when the reduced axes are not contiguous once
 * size-1 dims are dropped (e.g. axes 0 and 2 of [2,3,4]).
 */
function reductionBlocks(shape: readonly number[], axes: readonly number[]): number[] | null {
  const [sizes, reduced] = mergeDims(shape, (i) => axes.includes(i));
  // Runs alternate kept/reduced: [K], [R], [K,R], [R,K], [K,R,K] fit; anything longer does not.
  let k = 0;
  const outer = k < sizes.length && !reduced[k] ? sizes[k++] : 1;
  const red = k < sizes.length ? sizes[k++] : 1;
  const inner = k < sizes.length ? sizes[k++] : 1;
  return k === sizes.length ? [outer, red, inner] : null;
}

/** For each element of x (row-major), the index of the output element it reduces into. */
function reductionIndex(shape: readonly number[], axes: readonly number[]): Int32Array {
  const keptStrides = stridesOf(reducedShape(shape, axes, true));
  return stridedOffsets(
    shape,
    shape.map((_, d) => (axes.includes(d) ? 0 : keptStrides[d])),
  );
}

/** o (zero-filled, the reduced size) = x summed over `axes`, each output in row-major order of x. */
function sumInto(x: Tensor, axes: readonly number[], o: TypedArray): void {
  const d = x.data;
  if (d.length === 0) return;
  const blocks = reductionBlocks(x.shape, axes);
  const [sizes, reduced] = blocks ? [[], []] : mergeDims(x.shape, (i) => axes.includes(i));
  if (sizes.length === 3 && reduced[0] && !reduced[1] && reduced[2]) {
    // Reduced, kept, reduced (a convolution's bias gradient, [N,F,H,W] -> F): each output adds
    // its runs in the row-major order of x, rounded as a store into o would round.
    const [outer, kept, inner] = sizes;
    const f32 = x.dtype === "float32";
    for (let b = 0, p = 0; b < outer; b++) {
      for (let f = 0; f < kept; f++) {
        let s = o[f];
        const end = p + inner;
        if (f32) for (; p < end; p++) s = Math.fround(s + d[p]);
        else for (; p < end; p++) s += d[p];
        o[f] = s;
      }
    }
    return;
  }
  if (!blocks) {
    const index = reductionIndex(x.shape, axes);
    for (let i = 0; i < d.length; i++) o[index[i]] += d[i];
    return;
  }
  const [outer, red, inner] = blocks;
  if (inner === 1) {
    // Row sums (and sum of everything): a register accumulator, rounded to f32 after each add
    // exactly as a store into a Float32Array would.
    const f32 = x.dtype === "float32";
    for (let b = 0, p = 0; b < outer; b++) {
      let s = 0;
      const end = p + red;
      if (f32) for (; p < end; p++) s = Math.fround(s + d[p]);
      else for (; p < end; p++) s += d[p];
      o[b] = s;
    }
    return;
  }
  // Column sums (the bias gradient) and middle axes: each output adds its rows top to bottom,
  // accumulated in o itself (a Float32Array store rounds to f32 as Math.fround does).
  for (let b = 0, p = 0; b < outer; b++) {
    const ob = b * inner;
    for (let r = 0; r < red; r++) for (let j = 0; j < inner; j++, p++) o[ob + j] += d[p];
  }
}

/** o (the reduced size) = max of x over `axes`; NaN wins; -Infinity for nothing to reduce. */
function maxInto(x: Tensor, axes: readonly number[], o: TypedArray): void {
  const d = x.data;
  const blocks = reductionBlocks(x.shape, axes);
  if (blocks && blocks[2] === 1) {
    // Row maxima (softmax's layout): a register per row.
    const [outer, red] = blocks;
    for (let b = 0, p = 0; b < outer; b++) {
      let m = -Infinity;
      for (const end = p + red; p < end; p++) {
        const v = d[p];
        if (v > m || v !== v) m = v;
      }
      o[b] = m;
    }
    return;
  }
  // Any other layout: each element against its output's running maximum, in x's order.
  o.fill(-Infinity);
  const index = reductionIndex(x.shape, axes);
  for (let i = 0; i < d.length; i++) {
    const v = d[i];
    if (v > o[index[i]] || v !== v) o[index[i]] = v;
  }
}

/** o (holding the maxima) = max + log(sum(exp(x - max))) over `axes`; an all -inf row stays -inf. */
function logsumexpInto(x: Tensor, axes: readonly number[], o: TypedArray): void {
  const d = x.data;
  // Scratch from the buffer pool (zero-filled, like a fresh array), returned to it at the end.
  const sums = allocateArray(o.length, "float64");
  const index = reductionIndex(x.shape, axes);
  for (let i = 0; i < d.length; i++) {
    const m = o[index[i]];
    sums[index[i]] += m === -Infinity ? 0 : Math.exp(d[i] - m);
  }
  for (let i = 0; i < o.length; i++) if (o[i] !== -Infinity) o[i] = o[i] + Math.log(sums[i]);
  releaseArray(sums);
}

function reduce(kind: ReduceKind, x: Tensor, axes: readonly number[], keepdims: boolean): Tensor {
  const out = allocate(reducedShape(x.shape, axes, keepdims), x.dtype);
  const o = out.data;
  switch (kind) {
    case "sum":
      sumInto(x, axes, o);
      return out;
    case "mean": {
      sumInto(x, axes, o);
      const count = x.size / Math.max(out.size, 1);
      for (let i = 0; i < o.length; i++) o[i] /= count;
      return out;
    }
    case "max":
    case "logsumexp":
      if (x.size === 0 && out.size > 0) throw new Error(`${kind} of an empty axis`);
      maxInto(x, axes, o);
      if (kind === "logsumexp") logsumexpInto(x, axes, o);
      return out;
    default:
      return assertNever(kind);
  }
}

function maxMask(x: Tensor, axes: readonly number[]): Tensor {
  const out = allocate(x.shape, x.dtype);
  // The maxima are scratch from the buffer pool, returned to it before the mask is.
  const m = allocateArray(sizeOf(reducedShape(x.shape, axes, true)), x.dtype);
  if (x.size === 0 && m.length > 0) throw new Error("max of an empty axis");
  if (x.size > 0) {
    maxInto(x, axes, m);
    maxMaskInto(x, axes, m, out.data);
  }
  releaseArray(m);
  return out;
}

/** o (zero-filled, x's size) = 1/count at the elements of x equal to their maximum m. */
function maxMaskInto(x: Tensor, axes: readonly number[], m: TypedArray, o: TypedArray): void {
  const d = x.data;
  const counts = allocateArray(m.length, "float64");
  const index = reductionIndex(x.shape, axes);
  for (let i = 0; i < d.length; i++) if (d[i] === m[index[i]]) counts[index[i]]++;
  for (let i = 0; i < d.length; i++) if (d[i] === m[index[i]]) o[i] = 1 / counts[index[i]];
  releaseArray(counts);
}

/** Copies o[start, start+block) into the following (times-1) blocks, doubling each copy. */
function replicate(o: TypedArray, start: number, block: number, times: number): void {
  const total = block * times;
  for (let done = block; done < total;) {
    const len = Math.min(done, total - done);
    o.copyWithin(start + done, start, start + len);
    done += len;
  }
}

function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  const full = broadcastShapes(x.shape, shape);
  if (!full || !sameShape(full, shape) || x.rank > shape.length) {
    throw new Error(`cannot broadcast ${fmt(x.shape)} to ${fmt(shape)}`);
  }
  const out = allocate(shape, x.dtype);
  const o = out.data;
  const d = x.data;
  if (o.length === 0) return out;
  if (x.size === 1) {
    o.fill(d[0]);
    return out;
  }
  // Size-1 output dims dropped, neighbours that are both copied or both broadcast merged.
  const offset = shape.length - x.rank;
  const [sizes, copied] = mergeDims(shape, (i) => i >= offset && x.shape[i - offset] === shape[i]);
  if (sizes.length === 1) {
    o.set(d); // x.size > 1, so the one run is a copy
    return out;
  }
  if (sizes.length === 2 && copied[0]) {
    // Column broadcast, (n,1) -> (n,k).
    const k = sizes[1];
    for (let r = 0, p = 0; r < sizes[0]; r++) {
      const v = d[r];
      for (const end = p + k; p < end; p++) o[p] = v;
    }
    return out;
  }
  if (sizes.length === 2) {
    // Row broadcast, (k,) or (1,k) -> (n,k): one row, then doubling block copies.
    const k = sizes[1];
    for (let j = 0; j < k; j++) o[j] = d[j];
    replicate(o, 0, k, sizes[0]);
    return out;
  }
  // General: an odometer over the leading merged dims, the last one a contiguous copy or fill.
  const last = sizes.length - 1;
  const xStrides = new Array<number>(sizes.length);
  for (let i = last, sx = 1; i >= 0; i--) {
    xStrides[i] = copied[i] ? sx : 0;
    if (copied[i]) sx *= sizes[i];
  }
  const at = stridedOffsets(sizes.slice(0, last), xStrides.slice(0, last));
  const n = sizes[last];
  for (let t = 0, p = 0; t < at.length; t++, p += n) {
    if (copied[last]) for (let j = 0; j < n; j++) o[p + j] = d[at[t] + j];
    else o.fill(d[at[t]], p, p + n);
  }
  return out;
}

function sumTo(x: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(x.shape, shape)) return x;
  const full = broadcastShapes(shape, x.shape);
  if (!full || !sameShape(full, x.shape) || shape.length > x.rank) {
    throw new Error(`cannot sum ${fmt(x.shape)} down to ${fmt(shape)}`);
  }
  const out = allocate(shape, x.dtype);
  // The axes of x that `shape` lacks or holds as 1; the output's layout is x's reduced keepdims.
  const offset = x.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < x.rank; i++) if (i < offset || shape[i - offset] === 1) axes.push(i);
  sumInto(x, axes, out.data);
  return out;
}

function transpose(x: Tensor, perm: readonly number[]): Tensor {
  const shape = perm.map((p) => x.shape[p]);
  const out = allocate(shape, x.dtype);
  const d = x.data;
  const o = out.data;
  if (o.length === 0) return out;
  // Size-1 dims dropped; output neighbours that are neighbours in x too merged into one dim.
  const kept = new Array<number>(x.rank).fill(-1);
  let keptCount = 0;
  for (let i = 0; i < x.rank; i++) if (x.shape[i] !== 1) kept[i] = keptCount++;
  const first: number[] = []; // per merged output dim: its first kept x dim
  const sizes: number[] = [];
  let previous = -2;
  for (const p of perm) {
    const k = kept[p];
    if (k < 0) continue;
    if (k === previous + 1) sizes[sizes.length - 1] *= x.shape[p];
    else {
      first.push(k);
      sizes.push(x.shape[p]);
    }
    previous = k;
  }
  const rank = sizes.length;
  if (rank <= 1) {
    o.set(d);
    return out;
  }
  // mergedPerm[i]: which merged x dim output dim i is; x's merged dims ordered by first kept dim.
  const order = first.map((_, i) => i).sort((i, j) => first[i] - first[j]);
  const mergedPerm = new Array<number>(rank);
  order.forEach((outDim, xDim) => (mergedPerm[outDim] = xDim));
  const xSizes = order.map((i) => sizes[i]);
  if (rank === 2) {
    transpose2d(d, xSizes[0], xSizes[1], o);
    return out;
  }
  // General: an odometer over the output's leading dims, a strided copy along its last one.
  const xStrides = stridesOf(xSizes);
  const strides = mergedPerm.map((p) => xStrides[p]);
  const last = rank - 1;
  const [n, step] = [sizes[last], strides[last]];
  const at = stridedOffsets(sizes.slice(0, last), strides);
  for (let t = 0, k = 0; t < at.length; t++) {
    for (let j = 0, i = at[t]; j < n; j++, i += step) o[k++] = d[i];
  }
  return out;
}

/** [outer, n, inner]: x viewed as outer x n x inner around `axis` (row-major). */
function aroundAxis(shape: readonly number[], axis: number): [number, number, number] {
  return [sizeOf(shape.slice(0, axis)), shape[axis], sizeOf(shape.slice(axis + 1))];
}

// NOTE: messages without the kernel's name: the Evaluator prefixes the op and its inputs.
function checkCrossEntropy(logits: Tensor, targets: Tensor, axis: number): void {
  if (!sameShape(logits.shape, targets.shape)) {
    throw new Error(
      `logits and targets shapes differ: ${fmt(logits.shape)} vs ${fmt(targets.shape)}`,
    );
  }
  if (!Number.isInteger(axis) || axis < 0 || axis >= logits.rank) {
    throw new RangeError(`axis ${axis} out of range for shape ${fmt(logits.shape)}`);
  }
}

// NOTE: the two cross-entropy kernels walk the rows (every index but `axis`) in row-major order and
// each row in increasing index: max, then sum(exp(x - max)) so logits of ±1e4 stay finite. The
// loss is accumulated in float64 (a JS number) and rounded to the output dtype once.

/** Calls `row(first, end, stride, lse)` for each row along `axis` (first, first + stride, ...). */
function eachRow(
  logits: Tensor,
  axis: number,
  row: (first: number, end: number, stride: number, lse: number) => void,
): void {
  const [outer, n, inner] = aroundAxis(logits.shape, axis);
  const x = logits.data;
  for (let b = 0; b < outer; b++) {
    for (let j = 0; j < inner; j++) {
      const first = b * n * inner + j;
      const end = first + n * inner;
      let m = -Infinity;
      for (let p = first; p < end; p += inner) {
        const v = x[p];
        if (v > m || v !== v) m = v;
      }
      let s = 0;
      for (let p = first; p < end; p += inner) s += Math.exp(x[p] - m);
      row(first, end, inner, m + Math.log(s));
    }
  }
}

/** -sum(targets * logSoftmax(logits)) over all elements, softmax along `axis`; a 0-d tensor. */
function softmaxCrossEntropy(logits: Tensor, targets: Tensor, axis: number): Tensor {
  checkCrossEntropy(logits, targets, axis);
  const [outer, n, inner] = aroundAxis(logits.shape, axis);
  if (n === 0 && outer * inner > 0) throw new Error("softmaxCrossEntropy of an empty axis");
  const [x, t] = [logits.data, targets.data];
  let total = 0;
  eachRow(logits, axis, (first, end, stride, lse) => {
    let row = 0;
    for (let p = first; p < end; p += stride) row += t[p] * (x[p] - lse);
    total -= row;
  });
  const out = allocate([], resultDType(logits.dtype, targets.dtype));
  out.data[0] = total;
  return out;
}

/** softmax(logits) * sum(targets) - targets along `axis`: the logits' cross-entropy gradient. */
function softmaxCrossEntropyGrad(logits: Tensor, targets: Tensor, axis: number): Tensor {
  checkCrossEntropy(logits, targets, axis);
  const out = allocate(logits.shape, resultDType(logits.dtype, targets.dtype));
  const [x, t, o] = [logits.data, targets.data, out.data];
  eachRow(logits, axis, (first, end, stride, lse) => {
    let rowSum = 0;
    for (let p = first; p < end; p += stride) rowSum += t[p];
    for (let p = first; p < end; p += stride) o[p] = Math.exp(x[p] - lse) * rowSum - t[p];
  });
  return out;
}

/** cond != 0 ? a : b with the three broadcast to one shape (each expanded, then one loop). */
function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  const ab = broadcastShapes(a.shape, b.shape);
  const shape = ab && broadcastShapes(cond.shape, ab);
  if (!shape) {
    throw new Error(
      `shapes ${fmt(cond.shape)}, ${fmt(a.shape)} and ${fmt(b.shape)} do not broadcast`,
    );
  }
  const dtype = resultDType(a.dtype, b.dtype);
  const expand = (t: Tensor) => (sameShape(t.shape, shape) ? t : broadcastTo(t, shape));
  const [c, x, y] = [expand(cond), expand(a), expand(b)];
  const out = allocate(shape, dtype);
  const o = out.data;
  for (let i = 0; i < o.length; i++) o[i] = c.data[i] !== 0 ? x.data[i] : y.data[i];
  for (const t of [c, x, y]) if (t !== cond && t !== a && t !== b) releaseArray(t.data);
  return out;
}

/** The reference backend. */
function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const [outer, size, inner] = aroundAxis(x.shape, axis);
  const shape = [...x.shape];
  shape[axis] = end - start;
  const out = allocate(shape, x.dtype, false, false);
  const block = (end - start) * inner;
  for (let o = 0; o < outer; o++) {
    const from = (o * size + start) * inner;
    out.data.set(x.data.subarray(from, from + block), o * block);
  }
  return out;
}

function unslice(g: Tensor, shape: readonly number[], axis: number, start: number): Tensor {
  const [outer, size, inner] = aroundAxis(shape, axis);
  const out = allocate(shape, g.dtype);
  const block = g.shape[axis] * inner;
  for (let o = 0; o < outer; o++) {
    out.data.set(g.data.subarray(o * block, (o + 1) * block), (o * size + start) * inner);
  }
  return out;
}

function concat(xs: readonly Tensor[], axis: number): Tensor {
  const shape = [...xs[0].shape];
  shape[axis] = xs.reduce((total, x) => total + x.shape[axis], 0);
  const out = allocate(shape, resultDType(...xs.map((x) => x.dtype)), false, false);
  const [outer, size, inner] = aroundAxis(shape, axis);
  let before = 0;
  for (const x of xs) {
    const block = x.shape[axis] * inner;
    for (let o = 0; o < outer; o++) {
      out.data.set(x.data.subarray(o * block, (o + 1) * block), (o * size + before) * inner);
    }
    before += x.shape[axis];
  }
  return out;
}

function argmax(x: Tensor, axis: number): Tensor {
  const [outer, size, inner] = aroundAxis(x.shape, axis);
  const out = allocate(
    x.shape.filter((_, i) => i !== axis),
    x.dtype,
    false,
    false,
  );
  const d = x.data;
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * size * inner + i;
      let best = 0;
      let value = d[base];
      // NumPy's rule: the first maximum, and the first NaN wins over any number.
      for (let k = 1; k < size && value === value; k++) {
        const v = d[base + k * inner];
        if (v > value || v !== v) [best, value] = [k, v];
      }
      out.data[o * inner + i] = best;
    }
  }
  return out;
}

/**
 * The one loop of the three convolution kernels: for every output position and kernel tap that
 * lands inside the (unpadded) image, `visit(xIndex, wIndex, yIndex)` with flat indices.
 */
function convTaps(
  [n, c, h, w]: readonly number[],
  [f, , kh, kw]: readonly number[],
  [oh, ow]: readonly number[],
  { stride, padding }: ConvGeometry,
  visit: (xi: number, wi: number, yi: number) => void,
): void {
  for (let b = 0; b < n; b++) {
    for (let o = 0; o < f; o++) {
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++) {
          const yi = ((b * f + o) * oh + i) * ow + j;
          for (let ch = 0; ch < c; ch++) {
            for (let p = 0; p < kh; p++) {
              const row = i * stride[0] - padding[0] + p;
              if (row < 0 || row >= h) continue;
              for (let q = 0; q < kw; q++) {
                const col = j * stride[1] - padding[1] + q;
                if (col < 0 || col >= w) continue;
                visit(((b * c + ch) * h + row) * w + col, ((o * c + ch) * kh + p) * kw + q, yi);
              }
            }
          }
        }
      }
    }
  }
}

/** The output's spatial size [H', W'] of a convolution of x [N,C,H,W] by w [F,C,kH,kW]. */
export function convOut(
  xShape: readonly number[],
  wShape: readonly number[],
  g: ConvGeometry,
): [number, number] {
  const out = (axis: 0 | 1) =>
    Math.floor((xShape[axis + 2] + 2 * g.padding[axis] - wShape[axis + 2]) / g.stride[axis]) + 1;
  return [out(0), out(1)];
}

function conv2d(x: Tensor, w: Tensor, geometry: ConvGeometry): Tensor {
  const [oh, ow] = convOut(x.shape, w.shape, geometry);
  const out = allocate([x.shape[0], w.shape[0], oh, ow], resultDType(x.dtype, w.dtype));
  const [xd, wd, yd] = [x.data, w.data, out.data];
  convTaps(x.shape, w.shape, [oh, ow], geometry, (xi, wi, yi) => (yd[yi] += xd[xi] * wd[wi]));
  return out;
}

function conv2dInputGrad(
  g: Tensor,
  w: Tensor,
  xShape: readonly number[],
  geometry: ConvGeometry,
): Tensor {
  const out = allocate(xShape, resultDType(g.dtype, w.dtype));
  const [gd, wd, dx] = [g.data, w.data, out.data];
  convTaps(
    xShape,
    w.shape,
    g.shape.slice(2),
    geometry,
    (xi, wi, yi) => (dx[xi] += gd[yi] * wd[wi]),
  );
  return out;
}

function conv2dFilterGrad(
  x: Tensor,
  g: Tensor,
  wShape: readonly number[],
  geometry: ConvGeometry,
): Tensor {
  const out = allocate(wShape, resultDType(x.dtype, g.dtype));
  const [xd, gd, dw] = [x.data, g.data, out.data];
  convTaps(
    x.shape,
    wShape,
    g.shape.slice(2),
    geometry,
    (xi, wi, yi) => (dw[wi] += gd[yi] * xd[xi]),
  );
  return out;
}

/** The output's spatial size [H', W'] of max-pooling x [N,C,H,W] (windows inside the image). */
export function poolOut(
  xShape: readonly number[],
  { size, stride }: PoolGeometry,
): [number, number] {
  const out = (axis: 0 | 1) => Math.floor((xShape[axis + 2] - size[axis]) / stride[axis]) + 1;
  return [out(0), out(1)];
}

/** The flat index in x [N,C,H,W] of each pooling window's first maximum (a NaN's first). */
function poolArgmax(x: Tensor, geometry: PoolGeometry): { at: Int32Array; shape: number[] } {
  const { size, stride } = geometry;
  const [n, c, h, w] = x.shape;
  const [oh, ow] = poolOut(x.shape, geometry);
  const at = new Int32Array(n * c * oh * ow);
  const d = x.data;
  let k = 0;
  if (size[0] === 2 && size[1] === 2 && stride[0] === 2 && stride[1] === 2) {
    // The common 2x2 window at stride 2, unrolled: the same choice in the same order.
    for (let plane = 0; plane < n * c; plane++) {
      for (let i = 0; i < oh; i++) {
        const top = (plane * h + 2 * i) * w;
        for (let j = 0; j < ow; j++) {
          const first = top + 2 * j;
          let best = first;
          let v = d[first];
          for (let t = 1; t < 4; t++) {
            const index = first + (t & 1) + (t >> 1) * w;
            const u = d[index];
            if (u > v || (u !== u && v === v)) {
              best = index;
              v = u;
            }
          }
          at[k++] = best;
        }
      }
    }
    return { at, shape: [n, c, oh, ow] };
  }
  for (let plane = 0; plane < n * c; plane++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        let best = (plane * h + i * stride[0]) * w + j * stride[1];
        for (let p = 0; p < size[0]; p++) {
          for (let q = 0; q < size[1]; q++) {
            const index = (plane * h + i * stride[0] + p) * w + j * stride[1] + q;
            if (d[index] > d[best] || (d[index] !== d[index] && d[best] === d[best])) best = index;
          }
        }
        at[k++] = best;
      }
    }
  }
  return { at, shape: [n, c, oh, ow] };
}

function maxPoolSelect(u: Tensor, x: Tensor, geometry: PoolGeometry): Tensor {
  const { at, shape } = poolArgmax(x, geometry);
  const out = allocate(shape, u.dtype, false, false);
  for (let k = 0; k < at.length; k++) out.data[k] = u.data[at[k]];
  return out;
}

function maxPoolGrad(g: Tensor, x: Tensor, geometry: PoolGeometry): Tensor {
  const { at } = poolArgmax(x, geometry);
  const out = allocate(x.shape, resultDType(g.dtype, x.dtype));
  for (let k = 0; k < at.length; k++) out.data[at[k]] += g.data[k];
  return out;
}

// NOTE: layer normalization one row at a time: the row's statistics summed in double precision
// (JS numbers), each output rounded once to its dtype; with `g`, the adjoint in the same pass.
// Measured on the course's transformer: the composite's reductions and broadcast arithmetic took
// a third of a training step.
function normalizeRows(x: Tensor, g: Tensor | undefined, size: number, eps: number): Tensor {
  const out = allocate(x.shape, g ? resultDType(x.dtype, g.dtype) : x.dtype, false, false);
  const [d, o, gd] = [x.data, out.data, g?.data];
  for (let start = 0; start < d.length; start += size) {
    const end = start + size;
    let total = 0;
    for (let i = start; i < end; i++) total += d[i];
    const mean = total / size;
    let squares = 0;
    for (let i = start; i < end; i++) squares += (d[i] - mean) * (d[i] - mean);
    const r = 1 / Math.sqrt(squares / size + eps);
    if (gd === undefined) {
      for (let i = start; i < end; i++) o[i] = (d[i] - mean) * r;
      continue;
    }
    let gSum = 0;
    let gySum = 0;
    for (let i = start; i < end; i++) {
      gSum += gd[i];
      gySum += gd[i] * (d[i] - mean) * r;
    }
    const [gMean, gyMean] = [gSum / size, gySum / size];
    for (let i = start; i < end; i++) o[i] = r * (gd[i] - gMean - (d[i] - mean) * r * gyMean);
  }
  return out;
}

export const jsBackend: Backend = {
  name: "js",
  binary,
  where,
  unary,
  scalar,
  matmul,
  reduce,
  maxMask,
  broadcastTo,
  sumTo,
  transpose,
  softmaxCrossEntropy,
  softmaxCrossEntropyGrad,
  slice,
  unslice,
  concat,
  argmax,
  conv2d,
  conv2dInputGrad,
  conv2dFilterGrad,
  maxPoolSelect,
  maxPoolGrad,
  layerNorm: (x, size, eps) => normalizeRows(x, undefined, size, eps),
  layerNormGrad: (x, g, size, eps) => normalizeRows(x, g, size, eps),
};
