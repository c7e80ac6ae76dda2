/** The reference backend: plain TypeScript loops over typed arrays, fixed summation order. */
import type { Backend, BinaryKind, ReduceKind, ScalarKind, UnaryKind } from "../backend.js";
import { broadcastShapes, fmt, reducedShape, sameShape, sizeOf, stridesOf } from "../shape.js";
import { allocate, resultDType, type Tensor, type TypedArray } from "../tensor.js";

type Binary = (x: number, y: number) => number;
const binaryFns: Record<BinaryKind, Binary> = {
  add: (x, y) => x + y,
  sub: (x, y) => x - y,
  mul: (x, y) => x * y,
  div: (x, y) => x / y,
};

/** Stable logistic: never evaluates exp of a large positive number. */
function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

const unaryFns: Record<UnaryKind, (x: number) => number> = {
  neg: (x) => -x,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  relu: (x) => (x > 0 ? x : 0),
  step: (x) => (x > 0 ? 1 : 0),
  sigmoid,
  tanh: Math.tanh,
};

/** Strides of `shape` aligned to `rank` dims, 0 where a dim is broadcast (size 1 or missing). */
function broadcastStrides(shape: readonly number[], rank: number): number[] {
  const strides = stridesOf(shape);
  const out = new Array<number>(rank).fill(0);
  const offset = rank - shape.length;
  for (let i = 0; i < shape.length; i++) out[offset + i] = shape[i] === 1 ? 0 : strides[i];
  return out;
}

/** Calls visit(outIndex, aIndex, bIndex) over an output shape with two strided inputs. */
function forEachStrided(
  shape: readonly number[],
  aStrides: readonly number[],
  bStrides: readonly number[],
  visit: (o: number, ia: number, ib: number) => void,
): void {
  const rank = shape.length;
  const size = sizeOf(shape);
  if (size === 0) return;
  const idx = new Array<number>(rank).fill(0);
  let ia = 0;
  let ib = 0;
  for (let o = 0; o < size; o++) {
    visit(o, ia, ib);
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      ia += aStrides[d];
      ib += bStrides[d];
      if (idx[d] < shape[d]) break;
      ia -= aStrides[d] * shape[d];
      ib -= bStrides[d] * shape[d];
      idx[d] = 0;
    }
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
  const f = binaryFns[kind];
  if (sameShape(a.shape, b.shape)) {
    if (kind === "add") for (let i = 0; i < n; i++) o[i] = x[i] + y[i];
    else if (kind === "sub") for (let i = 0; i < n; i++) o[i] = x[i] - y[i];
    else if (kind === "mul") for (let i = 0; i < n; i++) o[i] = x[i] * y[i];
    else for (let i = 0; i < n; i++) o[i] = x[i] / y[i];
  } else if (b.size === 1) {
    const c = y[0];
    for (let i = 0; i < n; i++) o[i] = f(x[i], c);
  } else if (a.size === 1) {
    const c = x[0];
    for (let i = 0; i < n; i++) o[i] = f(c, y[i]);
  } else if (sameShape(a.shape, shape) && isRowSuffix(b.shape, shape)) {
    // The common bias case: (batch, k) op (k,) or (1, k).
    const k = b.size;
    for (let r = 0; r < n; r += k) for (let j = 0; j < k; j++) o[r + j] = f(x[r + j], y[j]);
  } else {
    const rank = shape.length;
    forEachStrided(
      shape,
      broadcastStrides(a.shape, rank),
      broadcastStrides(b.shape, rank),
      (i, ia, ib) => {
        o[i] = f(x[ia], y[ib]);
      },
    );
  }
  return out;
}

/** True when `small` broadcasts to `shape` by repeating whole trailing blocks (leading ones only). */
function isRowSuffix(small: readonly number[], shape: readonly number[]): boolean {
  let i = 0;
  const offset = shape.length - small.length;
  while (i < small.length && small[i] === 1 && shape[offset + i] !== 1) i++;
  for (let j = i; j < small.length; j++) if (small[j] !== shape[offset + j]) return false;
  return true;
}

function unary(kind: UnaryKind, x: Tensor): Tensor {
  const out = allocate(x.shape, x.dtype);
  const o = out.data;
  const d = x.data;
  const f = unaryFns[kind];
  if (kind === "relu") for (let i = 0; i < d.length; i++) o[i] = d[i] > 0 ? d[i] : 0;
  else if (kind === "exp") for (let i = 0; i < d.length; i++) o[i] = Math.exp(d[i]);
  else for (let i = 0; i < d.length; i++) o[i] = f(d[i]);
  return out;
}

function scalar(kind: ScalarKind, x: Tensor, c: number): Tensor {
  const out = allocate(x.shape, x.dtype);
  const o = out.data;
  const d = x.data;
  const n = d.length;
  if (kind === "add") for (let i = 0; i < n; i++) o[i] = d[i] + c;
  else if (kind === "mul") for (let i = 0; i < n; i++) o[i] = d[i] * c;
  else if (kind === "div") for (let i = 0; i < n; i++) o[i] = d[i] / c;
  else if (c === 2) for (let i = 0; i < n; i++) o[i] = d[i] * d[i];
  else for (let i = 0; i < n; i++) o[i] = Math.pow(d[i], c);
  return out;
}

/** Copies the transpose of a (rows x cols) row-major matrix into a new array. */
function transpose2d(a: TypedArray, rows: number, cols: number, into: TypedArray): TypedArray {
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) into[j * rows + i] = a[i * cols + j];
  return into;
}

function matmul(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
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

/** Per-input-axis strides into the keepdims-reduced output (0 on reduced axes). */
function reduceIndexStrides(shape: readonly number[], axes: readonly number[]): number[] {
  const outShape = reducedShape(shape, axes, true);
  const outStrides = stridesOf(outShape);
  return shape.map((_, i) => (axes.includes(i) ? 0 : outStrides[i]));
}

function reduce(kind: ReduceKind, x: Tensor, axes: readonly number[], keepdims: boolean): Tensor {
  const outShape = reducedShape(x.shape, axes, keepdims);
  const out = allocate(outShape, x.dtype);
  const o = out.data;
  const d = x.data;
  const count = x.size / Math.max(out.size, 1);
  if (kind === "max" || kind === "logsumexp") {
    if (x.size === 0 && out.size > 0) throw new Error(`${kind} of an empty axis`);
    o.fill(-Infinity);
  }
  const strides = reduceIndexStrides(x.shape, axes);
  const zero = new Array<number>(x.rank).fill(0);
  if (kind === "sum" || kind === "mean") {
    forEachStrided(x.shape, strides, zero, (i, io) => {
      o[io] += d[i];
    });
    if (kind === "mean") for (let i = 0; i < o.length; i++) o[i] /= count;
    return out;
  }
  forEachStrided(x.shape, strides, zero, (i, io) => {
    if (d[i] > o[io] || Number.isNaN(d[i])) o[io] = d[i];
  });
  if (kind === "max") return out;
  // logsumexp: max + log(sum(exp(x - max))); an all -inf row stays -inf.
  const sums = new Float64Array(o.length);
  forEachStrided(x.shape, strides, zero, (i, io) => {
    const m = o[io];
    sums[io] += m === -Infinity ? 0 : Math.exp(d[i] - m);
  });
  for (let i = 0; i < o.length; i++) if (o[i] !== -Infinity) o[i] = o[i] + Math.log(sums[i]);
  return out;
}

function maxMask(x: Tensor, axes: readonly number[]): Tensor {
  const m = reduce("max", x, axes, true);
  const strides = reduceIndexStrides(x.shape, axes);
  const zero = new Array<number>(x.rank).fill(0);
  const counts = new Float64Array(m.size);
  const d = x.data;
  forEachStrided(x.shape, strides, zero, (i, io) => {
    if (d[i] === m.data[io]) counts[io]++;
  });
  const out = allocate(x.shape, x.dtype);
  forEachStrided(x.shape, strides, zero, (i, io) => {
    if (d[i] === m.data[io]) out.data[i] = 1 / counts[io];
  });
  return out;
}

function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  const full = broadcastShapes(x.shape, shape);
  if (!full || !sameShape(full, shape) || x.rank > shape.length) {
    throw new Error(`cannot broadcast ${fmt(x.shape)} to ${fmt(shape)}`);
  }
  const out = allocate(shape, x.dtype);
  if (x.size === 1) {
    out.data.fill(x.data[0]);
    return out;
  }
  const rank = shape.length;
  const d = x.data;
  const o = out.data;
  forEachStrided(
    shape,
    broadcastStrides(x.shape, rank),
    new Array<number>(rank).fill(0),
    (i, ix) => {
      o[i] = d[ix];
    },
  );
  return out;
}

function sumTo(x: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(x.shape, shape)) return x;
  const full = broadcastShapes(shape, x.shape);
  if (!full || !sameShape(full, x.shape) || shape.length > x.rank) {
    throw new Error(`cannot sum ${fmt(x.shape)} down to ${fmt(shape)}`);
  }
  const out = allocate(shape, x.dtype);
  const rank = x.rank;
  const o = out.data;
  const d = x.data;
  forEachStrided(
    x.shape,
    broadcastStrides(shape, rank),
    new Array<number>(rank).fill(0),
    (i, io) => {
      o[io] += d[i];
    },
  );
  return out;
}

function transpose(x: Tensor, perm: readonly number[]): Tensor {
  const shape = perm.map((p) => x.shape[p]);
  const out = allocate(shape, x.dtype);
  if (x.rank === 2 && perm[0] === 1) {
    transpose2d(x.data, x.shape[0], x.shape[1], out.data);
    return out;
  }
  const inStrides = stridesOf(x.shape);
  const permuted = perm.map((p) => inStrides[p]);
  const d = x.data;
  const o = out.data;
  forEachStrided(shape, permuted, new Array<number>(shape.length).fill(0), (i, ix) => {
    o[i] = d[ix];
  });
  return out;
}

/** The reference backend. */
export const jsBackend: Backend = {
  name: "js",
  binary,
  unary,
  scalar,
  matmul,
  reduce,
  maxMask,
  broadcastTo,
  sumTo,
  transpose,
};
