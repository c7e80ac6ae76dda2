/**
 * An independent float64 reference for forward values: plain arrays walked by multi-index, no
 * strides and no code shared with src/, so a table case can check an op's value as well as its
 * gradient.
 */
import type { Tensor } from "../../src/index.js";

/** A reference value: a shape and its row-major entries. */
export interface Ref {
  shape: number[];
  data: number[];
}

/** A Tensor's shape and entries as a Ref. */
export function fromTensor(t: Tensor): Ref {
  return { shape: [...t.shape], data: Array.from(t.data) };
}

function size(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

function unravel(flat: number, shape: readonly number[]): number[] {
  const index = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    index[d] = flat % shape[d];
    flat = Math.floor(flat / shape[d]);
  }
  return index;
}

function ravel(index: readonly number[], shape: readonly number[]): number {
  let flat = 0;
  for (let d = 0; d < shape.length; d++) flat = flat * shape[d] + index[d];
  return flat;
}

/** f applied to every entry. */
export function map(a: Ref, f: (x: number) => number): Ref {
  return { shape: [...a.shape], data: a.data.map(f) };
}

/** NumPy's broadcast shape of a and b (throws when incompatible). */
export function broadcastShape(a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const pa = [...new Array<number>(rank - a.length).fill(1), ...a];
  const pb = [...new Array<number>(rank - b.length).fill(1), ...b];
  return pa.map((d, i) => {
    if (d === pb[i] || pb[i] === 1) return d;
    if (d === 1) return pb[i];
    throw new Error(`reference: [${a}] and [${b}] do not broadcast`);
  });
}

/** The entry of `a` that output index `index` (of a higher or equal rank) reads under broadcasting. */
function broadcastRead(a: Ref, index: readonly number[]): number {
  const offset = index.length - a.shape.length;
  const own = a.shape.map((d, i) => (d === 1 ? 0 : index[offset + i]));
  return a.data[ravel(own, a.shape)];
}

/** f(a, b) with NumPy broadcasting. */
export function zip(a: Ref, b: Ref, f: (x: number, y: number) => number): Ref {
  const shape = broadcastShape(a.shape, b.shape);
  const data: number[] = [];
  for (let o = 0; o < size(shape); o++) {
    const index = unravel(o, shape);
    data.push(f(broadcastRead(a, index), broadcastRead(b, index)));
  }
  return { shape, data };
}

/** Reduces `axis` (all when undefined; negative from the end) with fold over each group's entries. */
export function reduce(
  a: Ref,
  fold: (values: number[]) => number,
  axis: number | number[] | undefined,
  keepdims = false,
): Ref {
  const rank = a.shape.length;
  const list =
    axis === undefined ? a.shape.map((_, i) => i) : typeof axis === "number" ? [axis] : axis;
  const axes = new Set(list.map((x) => (x < 0 ? x + rank : x)));
  const keptShape = a.shape.map((d, i) => (axes.has(i) ? 1 : d));
  const groups: number[][] = Array.from({ length: size(keptShape) }, () => []);
  for (let i = 0; i < a.data.length; i++) {
    const index = unravel(i, a.shape).map((v, d) => (axes.has(d) ? 0 : v));
    groups[ravel(index, keptShape)].push(a.data[i]);
  }
  const shape = keepdims ? keptShape : a.shape.filter((_, i) => !axes.has(i));
  return { shape, data: groups.map(fold) };
}

/** Folds for {@link reduce}. */
export const folds = {
  sum: (v: number[]) => v.reduce((s, x) => s + x, 0),
  mean: (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length,
  max: (v: number[]) => Math.max(...v),
  logsumexp: (v: number[]) => {
    const m = Math.max(...v);
    return m + Math.log(v.reduce((s, x) => s + Math.exp(x - m), 0));
  },
};

/** op(a) @ op(b) by the textbook triple loop. */
export function matmul(a: Ref, b: Ref, transA = false, transB = false): Ref {
  const at = (r: Ref, i: number, j: number, t: boolean) =>
    t ? r.data[j * r.shape[1] + i] : r.data[i * r.shape[1] + j];
  const m = transA ? a.shape[1] : a.shape[0];
  const k = transA ? a.shape[0] : a.shape[1];
  const n = transB ? b.shape[0] : b.shape[1];
  const data: number[] = [];
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += at(a, i, p, transA) * at(b, p, j, transB);
      data.push(s);
    }
  }
  return { shape: [m, n], data };
}

/** Axes permuted: out.shape[i] = a.shape[perm[i]] (reversed when perm is omitted). */
export function transpose(a: Ref, perm?: number[]): Ref {
  const rank = a.shape.length;
  const p = (perm ?? a.shape.map((_, i) => rank - 1 - i)).map((x) => (x < 0 ? x + rank : x));
  const shape = p.map((x) => a.shape[x]);
  const data: number[] = [];
  for (let o = 0; o < size(shape); o++) {
    const out = unravel(o, shape);
    const index = new Array<number>(rank);
    p.forEach((x, i) => (index[x] = out[i]));
    data.push(a.data[ravel(index, a.shape)]);
  }
  return { shape, data };
}

/** The same entries under another shape (one -1 allowed). */
export function reshape(a: Ref, shape: number[]): Ref {
  const known = shape.filter((d) => d !== -1).reduce((n, d) => n * d, 1);
  return { shape: shape.map((d) => (d === -1 ? a.data.length / known : d)), data: [...a.data] };
}

/** a broadcast to `target` after inserting its missing dimensions at `axis` (0 by default). */
export function broadcastTo(a: Ref, target: number[], axis = 0): Ref {
  const missing = target.length - a.shape.length;
  const at = axis < 0 ? axis + a.shape.length + 1 : axis;
  const shape =
    missing > 0
      ? [...a.shape.slice(0, at), ...new Array<number>(missing).fill(1), ...a.shape.slice(at)]
      : a.shape;
  return zip(
    { shape, data: a.data },
    { shape: target, data: new Array(size(target)).fill(0) },
    (x) => x,
  );
}

/** x - logsumexp(x) along `axis`. */
export function logSoftmax(a: Ref, axis = -1): Ref {
  return zip(a, reduce(a, folds.logsumexp, axis, true), (x, l) => x - l);
}

/** a[..., start:end, ...] along `axis` (indices already resolved), by multi-index. */
export function slice(a: Ref, axis: number, start: number, end: number): Ref {
  const shape = [...a.shape];
  shape[axis] = end - start;
  const data = Array.from({ length: size(shape) }, (_, flat) => {
    const index = unravel(flat, shape);
    index[axis] += start;
    return a.data[ravel(index, a.shape)];
  });
  return { shape, data };
}

/** The refs joined along `axis`, by multi-index. */
export function concat(parts: readonly Ref[], axis: number): Ref {
  const shape = [...parts[0].shape];
  shape[axis] = parts.reduce((n, p) => n + p.shape[axis], 0);
  const data = Array.from({ length: size(shape) }, (_, flat) => {
    const index = unravel(flat, shape);
    let k = 0;
    while (index[axis] >= parts[k].shape[axis]) index[axis] -= parts[k++].shape[axis];
    return parts[k].data[ravel(index, parts[k].shape)];
  });
  return { shape, data };
}

/** The index of the first maximum along `axis`, the axis removed, by multi-index. */
export function argmax(a: Ref, axis: number): Ref {
  const shape = a.shape.filter((_, i) => i !== axis);
  const data = Array.from({ length: size(shape) }, (_, flat) => {
    const index = unravel(flat, shape);
    index.splice(axis, 0, 0);
    let best = 0;
    for (let k = 1; k < a.shape[axis]; k++) {
      index[axis] = k;
      const v = a.data[ravel(index, a.shape)];
      index[axis] = best;
      if (v > a.data[ravel(index, a.shape)]) best = k;
    }
    return best;
  });
  return { shape, data };
}
