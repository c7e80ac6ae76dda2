/**
 * The reference kernels' reductions and broadcasts, each output summed in the row-major order of
 * its input.
 */
import type { ReduceKind } from "../backend.js";
import { assertNever } from "../assert.js";
import { broadcastShapes, fmt, reducedShape, sameShape, sizeOf, stridesOf } from "../shape.js";
import { allocate, allocateArray, releaseArray, Tensor, type TypedArray } from "../tensor.js";
import { mergeDims, stridedOffsets, aroundAxis } from "./js-walk.js";

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

export function reduce(
  kind: ReduceKind,
  x: Tensor,
  axes: readonly number[],
  keepdims: boolean,
): Tensor {
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

export function maxMask(x: Tensor, axes: readonly number[]): Tensor {
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

export function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
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

export function sumTo(x: Tensor, shape: readonly number[]): Tensor {
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

export function argmax(x: Tensor, axis: number): Tensor {
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
