/** Walks the reference kernels share: merged dimensions and the odometer's offsets. */
import { sizeOf } from "../shape.js";

/**
 * `shape` without its size-1 dims, neighbouring dims of the same class (broadcast the same way,
 * reduced or kept) merged into one: the sizes and each merged dim's class.
 */
export function mergeDims<C>(
  shape: readonly number[],
  classOf: (dim: number) => C,
): [number[], C[]] {
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
export function stridedOffsets(sizes: readonly number[], strides: readonly number[]): Int32Array {
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

/** [outer, n, inner]: x viewed as outer x n x inner around `axis` (row-major). */
export function aroundAxis(shape: readonly number[], axis: number): [number, number, number] {
  return [sizeOf(shape.slice(0, axis)), shape[axis], sizeOf(shape.slice(axis + 1))];
}
