/** The reference kernels' products and transposes: 2-D matmul, batched over stacks; N-D transpose. */
import { broadcastShapes, fmt, productDims, sameShape, sizeOf, stridesOf } from "../shape.js";
import { allocate, releaseArray, resultDType, Tensor, type TypedArray } from "../tensor.js";
import { stridedOffsets } from "./js-walk.js";

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

export function matmul(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
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
  const [m, , n] = productDims(a.shape, b.shape, transA, transB);
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
  const [m, k, n] = productDims(a.shape, b.shape, transA, transB);
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

export function transpose(x: Tensor, perm: readonly number[]): Tensor {
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
