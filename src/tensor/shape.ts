/** Shape rules: sizes, strides, NumPy broadcasting and axis normalisation. */

/** Number of elements of a shape (1 for a 0-d shape). */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides of a shape, in elements. */
export function stridesOf(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

/** True when two shapes are equal dimension by dimension. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Formats a shape as `[2,3]` for error messages. */
export function fmt(shape: readonly number[]): string {
  return `[${shape.join(",")}]`;
}

/**
 * [m, k, n] of op(a) @ op(b) over the shapes' last two axes (op: transpose when its flag is set),
 * for known shapes (numbers) and build-time ones (null where unknown); throws naming both shapes
 * when known inner dimensions differ. The type rule and every kernel check a product here.
 */
export function productDims(
  a: readonly number[],
  b: readonly number[],
  transA: boolean,
  transB: boolean,
): [number, number, number];
/** {@link productDims} of build-time shapes: null where a dimension is not known. */
export function productDims(
  a: readonly (number | null)[],
  b: readonly (number | null)[],
  transA: boolean,
  transB: boolean,
): [number | null, number | null, number | null];
export function productDims(
  a: readonly (number | null)[],
  b: readonly (number | null)[],
  transA: boolean,
  transB: boolean,
): [number | null, number | null, number | null] {
  const [ra, ca] = a.slice(-2);
  const [rb, cb] = b.slice(-2);
  const [m, k] = transA ? [ca, ra] : [ra, ca];
  const [k2, n] = transB ? [cb, rb] : [rb, cb];
  if (k !== null && k2 !== null && k !== k2) {
    const show = (s: readonly (number | null)[]) =>
      `[${s.map((d) => (d === null ? "null" : d)).join(",")}]`;
    throw new Error(`inner dimensions differ: ${show(a)} @ ${show(b)}`);
  }
  return [m, k ?? k2, n];
}

/** NumPy broadcast of two shapes, or null when they are incompatible. */
export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] | null {
  const rank = Math.max(a.length, b.length);
  const out = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const da = i < rank - a.length ? 1 : a[i - (rank - a.length)];
    const db = i < rank - b.length ? 1 : b[i - (rank - b.length)];
    if (da === db || db === 1) out[i] = da;
    else if (da === 1) out[i] = db;
    else return null;
  }
  return out;
}

/** Resolves a possibly negative axis against a rank; throws a RangeError when out of range. */
export function normalizeAxis(axis: number, rank: number, what = "axis"): number {
  if (!Number.isInteger(axis)) throw new RangeError(`${what} ${axis} is not an integer`);
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new RangeError(`${what} ${axis} is out of range for rank ${rank}`);
  return a;
}

/** Sorted, de-duplicated, non-negative axes; all axes when `axis` is undefined. */
export function normalizeAxes(
  axis: number | readonly number[] | undefined,
  rank: number,
): number[] {
  if (axis === undefined) return Array.from({ length: rank }, (_, i) => i);
  const list = typeof axis === "number" ? [axis] : axis;
  const out = [...new Set(list.map((a) => normalizeAxis(a, rank)))].sort((x, y) => x - y);
  if (out.length !== list.length) throw new RangeError(`repeated axis in [${list.join(",")}]`);
  return out;
}

/** Shape after reducing `axes` (sorted, non-negative) of `shape`. */
export function reducedShape<D extends number | null>(
  shape: readonly D[],
  axes: readonly number[],
  keepdims: boolean,
): (D | 1)[] {
  const out: (D | 1)[] = [];
  for (let i = 0; i < shape.length; i++) {
    if (axes.includes(i)) {
      if (keepdims) out.push(1);
    } else out.push(shape[i]);
  }
  return out;
}

/** Inserts `count` ones into `shape` at position `axis` (NumPy-style prefix when axis is 0). */
export function insertOnes<D extends number | null>(
  shape: readonly D[],
  count: number,
  axis: number,
): (D | 1)[] {
  const ones = new Array<1>(count).fill(1);
  return [...shape.slice(0, axis), ...ones, ...shape.slice(axis)];
}
