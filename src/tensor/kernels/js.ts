/** The reference backend: plain TypeScript loops over typed arrays, fixed summation order. */
import type { Backend, BinaryKind, ScalarKind, UnaryKind } from "../backend.js";
import { assertNever } from "../assert.js";
import { broadcastShapes, fmt, sameShape } from "../shape.js";
import { allocate, releaseArray, resultDType, Tensor, type TypedArray } from "../tensor.js";
import { matmul, transpose } from "./js-matmul.js";
import { reduce, maxMask, broadcastTo, sumTo, argmax } from "./js-reduce.js";
import {
  softmaxCrossEntropy,
  softmaxCrossEntropyGrad,
  slice,
  unslice,
  concat,
  conv2d,
  conv2dInputGrad,
  conv2dFilterGrad,
  maxPoolSelect,
  maxPoolGrad,
  normalizeRows,
} from "./js-nn.js";
import { mergeDims, stridedOffsets } from "./js-walk.js";
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

// NOTE: every reference kernel (this file and js-*.ts) is a small set of explicit loops chosen by shape (no per-element
// closure: a closure call per element cost more than the arithmetic on the training workloads'
// 50x10 arrays). Summation order is always the one of a row-major walk over the input: each output
// element is 0 + x0 + x1 + ... over its inputs in increasing index, rounded to the output dtype
// after every addition (as the generic `o[io] += d[i]` loop this replaced did), so results are
// bitwise those of that loop and depend only on the shapes.

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
