/**
 * What a compiled step is made of: the buffers a program holds in the kernels' memory, the
 * shape of one compiled node, and the matrix product by address (the one call that the step's
 * products, convolutions included, share).
 */
import {
  allocateArray,
  placeInBackend,
  Tensor,
  type DType,
  type TypedArray,
} from "../../tensor/tensor.js";
import type { KernelExports } from "../wasm-module.js";

/** What the compiler needs of a node's value: its shape and dtype (a Tensor is one). */
export interface Like {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly size: number;
  readonly rank: number;
}

/** A compiled node: the call that fills `out`, and its label where it is not the op's name. */
export interface Step {
  run: () => void;
  out: Tensor;
  label?: string;
}

/** Every buffer the program being compiled allocated (compile is synchronous: one at a time). */
export const held: TypedArray[] = [];

/** A buffer for the program: allocated in the kernels' memory and held by it. */
export function hold(size: number, dtype: DType): TypedArray {
  const data = placeInBackend(() => allocateArray(size, dtype));
  held.push(data);
  return data;
}

/** A planned output of `like`'s shape and dtype in the kernels' memory (`pad` more elements). */
export function planned(like: Like, pad = 0): { data: TypedArray; out: Tensor } {
  const data = hold(like.size + pad, like.dtype);
  return { data, out: new Tensor(data.subarray(0, like.size), like.shape) };
}

/**
 * A product's dims: C (m x n) = op(A) (m x k) op(B) (k x n), and the transposes; a stack of
 * `count` such products (default 1), A's and B's matrices advancing with it (`stackA`,
 * `stackB` true) or broadcast (false).
 */
export interface ProductDims {
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  count?: number;
  stackA?: boolean;
  stackB?: boolean;
}

/**
 * An output of `shape` (m x n elements) for a product: the kernel writes C's padded tile grid,
 * so the buffer has room for it; the first m x n elements are the result once compacted.
 */
export function productOut(
  k: KernelExports,
  dims: ProductDims,
  shape: readonly number[],
  dtype: DType,
): { data: TypedArray; out: Tensor } {
  const f32 = dtype === "float32";
  const mPad = f32 ? k.paddedRowsF32(dims.m) : k.paddedRowsF64(dims.m);
  const nPad = f32 ? k.paddedColsF32(dims.n) : k.paddedColsF64(dims.n);
  const size = (dims.count ?? 1) * dims.m * dims.n;
  return planned({ shape, dtype, size, rank: shape.length }, mPad * nPad - dims.m * dims.n);
}

/**
 * The call C = op(A) op(B) by address as the wasm backend's product makes it (the same kernel,
 * so the same bits): into C's padded tile grid at `pc` ({@link productOut}), then compacted. A B
 * constant within a step (`clock` given, f32) is packed once per step, not once per shard.
 */
export function productCall(
  k: KernelExports,
  at: (data: TypedArray) => number,
  dtype: DType,
  dims: ProductDims,
  [pa, pb, pc]: readonly [number, number, number],
  clock?: { step: number },
): (() => void) | undefined {
  const { m, n, k: kk } = dims;
  const f32 = dtype === "float32";
  const elem = f32 ? 4 : 8;
  if (dims.count !== undefined) {
    // A stack: the batched kernel, each C compacted in place (the backend's call for it).
    const pack = hold(
      Math.ceil((f32 ? k.packBytesF32(n, kk) : k.packBytesF64(n, kk)) / elem),
      dtype,
    );
    const [pp, count] = [at(pack), dims.count];
    if (pa < 0 || pb < 0 || pc < 0 || pp < 0) return undefined;
    const batched = f32 ? k.matmulBatchF32 : k.matmulBatchF64;
    const [ta, tb] = [dims.transA ? 1 : 0, dims.transB ? 1 : 0];
    const strideA = dims.stackA ? m * kk * elem : 0;
    const strideB = dims.stackB ? kk * n * elem : 0;
    return () => batched(pa, pb, pp, pc, m, n, kk, ta, tb, count, strideA, strideB);
  }
  const nPad = f32 ? k.paddedColsF32(n) : k.paddedColsF64(n);
  const compact = (f32 ? k.paddedRowsF32(m) : k.paddedRowsF64(m)) !== m || nPad !== n;
  const once = clock !== undefined && f32;
  const bytes = once
    ? k.prepackBytesF32(n, kk)
    : f32
      ? k.packBytesF32(n, kk)
      : k.packBytesF64(n, kk);
  const pack = hold(Math.ceil(bytes / elem), dtype);
  const pp = at(pack);
  if (pa < 0 || pb < 0 || pc < 0 || pp < 0) return undefined;
  const kernel = f32 ? k.matmulF32 : k.matmulF64;
  const [ta, tb] = [dims.transA ? 1 : 0, dims.transB ? 1 : 0];
  let packedAt = -1;
  return () => {
    if (once && packedAt !== clock.step) {
      k.prepackBF32(pb, pp, n, kk, tb);
      packedAt = clock.step;
    }
    kernel(pa, pb, pp, pc, m, n, kk, ta, tb, once ? 1 : 0);
    if (compact) k.compactRows(pc, m, n * elem, nPad * elem);
  };
}
