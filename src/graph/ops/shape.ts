/** Shape ops: broadcastTo and its adjoint sumLike, reshape, expandDims, transpose. */
import { backend } from "../../tensor/active.js";
import { fmt, insertOnes, normalizeAxis, sameShape, sizeOf } from "../../tensor/shape.js";
import { tensor, type DType, type Tensor } from "../../tensor/tensor.js";
import { checkArity, checkNodeList, checkOptions, label, makeNode, Node } from "../node.js";
import { typeName } from "../../tensor/options.js";
import { declareOp, zerosOf, type Op } from "../op.js";
import { fmtType, knownSize, promoteTypes, type Dim, type NodeType } from "../types.js";

/** Options of {@link broadcastTo}. */
export interface BroadcastOptions {
  /** Where x's missing leading dimensions are inserted, all together (default 0: NumPy's rule). */
  axis?: number;
}

/** x's shape (known or declared) with the dims it lacks to reach `rank` inserted as ones at `axis`. */
function expandedShape<D extends Dim>(x: readonly D[], rank: number, axis?: number): (D | 1)[] {
  if (x.length >= rank) return [...x];
  const at = axis === undefined ? 0 : axis < 0 ? axis + x.length + 1 : axis;
  if (!Number.isInteger(at) || at < 0 || at > x.length) {
    throw new RangeError(`axis ${axis} is out of range for inserting into ${fmtType(x)}`);
  }
  return insertOnes(x, rank - x.length, at);
}

/**
 * x's shape expanded to target's rank at `axis`, checked to broadcast to `target` (at build time
 * with declared shapes, whose unknown dims pass; at run time with the values' shapes).
 */
function broadcastShape<D extends Dim>(x: readonly D[], target: readonly Dim[], axis?: number) {
  if (x.length > target.length) {
    throw new Error(`cannot broadcast ${fmtType(x)} to lower rank ${fmtType(target)}`);
  }
  const expanded = expandedShape(x, target.length, axis);
  expanded.forEach((d, i) => {
    if (d !== null && d !== 1 && target[i] !== null && d !== target[i]) {
      const via =
        expanded.length === x.length ? "" : ` (as ${fmtType(expanded)}, axis ${axis ?? 0})`;
      throw new Error(`cannot broadcast ${fmtType(x)}${via} to ${fmtType(target)}`);
    }
  });
  return expanded;
}

/** broadcastTo's attrs: the insertion axis, and the target shape when it is not an input. */
interface BroadcastAttrs {
  axis?: number;
  shape?: number[];
}

export const broadcastToOp: Op = declareOp<BroadcastAttrs>({
  name: "broadcastTo",
  // The shape of input 1 when the target is a node (none is claimed for a target in attrs).
  sameAs: { shape: 1, dtype: 0 },
  type: ([x, target], attrs) => {
    const shape = target ? target.shape : attrs.shape!;
    if (x.shape !== null && shape !== null) broadcastShape(x.shape, shape, attrs.axis);
    return { shape, dtype: x.dtype };
  },
  compute: (node, [x, target]) => {
    const shape = target ? target.shape : node.attrs.shape!;
    const expanded = broadcastShape(x.shape, shape, node.attrs.axis) as number[];
    return backend().broadcastTo(x.reshapeView(expanded), shape);
  },
  gradient: (node, g) => {
    const [x, target] = node.inputs;
    const gx = sumLike(g, x, { axis: node.attrs.axis });
    return target ? [gx, null] : [gx];
  },
});

/** g summed over broadcast axes down to ref's shape (the adjoint of broadcastTo). */
export const sumLikeOp: Op = declareOp<BroadcastOptions>({
  name: "sumLike",
  sameAs: { shape: 1, dtype: 0 },
  compute: (node, [g, ref]) => {
    if (sameShape(g.shape, ref.shape)) return g;
    if (g.rank < ref.rank) {
      throw new Error(`cannot sum ${fmt(g.shape)} down to higher rank ${fmt(ref.shape)}`);
    }
    const expanded = expandedShape(ref.shape, g.rank, node.attrs.axis);
    return backend().sumTo(g, expanded).reshapeView(ref.shape);
  },
  gradient: (node, g) => {
    const grad = node.inputs[0];
    return [broadcastTo(g, grad, { axis: node.attrs.axis }), null];
  },
});

/** g reshaped to ref's shape (the adjoint of reshape and expandDims). */
export const reshapeLikeOp: Op = declareOp({
  name: "reshapeLike",
  sameAs: { shape: 1, dtype: 0 },
  compute: (_node, [g, ref]) => {
    if (g.size !== ref.size) throw new Error(`cannot reshape ${fmt(g.shape)} to ${fmt(ref.shape)}`);
    return g.reshapeView(ref.shape);
  },
  gradient: (node, g) => [reshapeLike(g, node.inputs[0]), null],
});

/** Resolves one -1 in a requested shape against a size. */
function resolveShape(requested: readonly number[], from: readonly number[]): number[] {
  const size = sizeOf(from);
  const unknown = requested.indexOf(-1);
  const shape = [...requested];
  if (unknown >= 0) {
    const known = sizeOf(requested.filter((_, i) => i !== unknown));
    if (known === 0 || size % known !== 0) {
      throw new Error(`cannot reshape ${fmt(from)} to ${fmt(requested)}`);
    }
    shape[unknown] = size / known;
  }
  if (sizeOf(shape) !== size) throw new Error(`cannot reshape ${fmt(from)} to ${fmt(requested)}`);
  return shape;
}

/** reshape(x, shape) with at most one -1. */
export const reshapeOp: Op = declareOp<{ shape: number[] }>({
  name: "reshape",
  sameAs: { dtype: 0 },
  type: ([x], attrs) => {
    const requested = attrs.shape;
    const size = knownSize(x.shape);
    if (size !== null)
      return { shape: resolveShape(requested, x.shape as number[]), dtype: x.dtype };
    return { shape: requested.map((d) => (d === -1 ? null : d)), dtype: x.dtype };
  },
  compute: (node, [x]) => x.reshapeView(resolveShape(node.attrs.shape, x.shape)),
  gradient: (node, g) => [reshapeLike(g, node.inputs[0])],
});

/** expandDims(x, axis): a size-1 axis inserted at `axis` (negative counts from the end). */
export const expandDimsOp: Op = declareOp<{ axis: number }>({
  name: "expandDims",
  sameAs: { dtype: 0 },
  type: ([x], attrs) => {
    if (x.shape === null) return { shape: null, dtype: x.dtype };
    const axis = normalizeAxis(attrs.axis, x.shape.length + 1);
    return { shape: insertOnes(x.shape, 1, axis), dtype: x.dtype };
  },
  compute: (node, [x]) => {
    const axis = normalizeAxis(node.attrs.axis, x.rank + 1);
    return x.reshapeView(insertOnes(x.shape, 1, axis));
  },
  gradient: (node, g) => [reshapeLike(g, node.inputs[0])],
});

function permutation(axes: readonly number[] | undefined, rank: number): number[] {
  if (axes === undefined) return Array.from({ length: rank }, (_, i) => rank - 1 - i);
  const perm = axes.map((a) => normalizeAxis(a, rank));
  if (perm.length !== rank || new Set(perm).size !== rank) {
    throw new Error(`axes [${axes.join(",")}] are not a permutation of ${rank} axes`);
  }
  return perm;
}

/** transpose(x, axes?): axes permuted (reversed by default). */
export const transposeOp: Op = declareOp<{ axes?: number[] }>({
  name: "transpose",
  sameAs: { dtype: 0 },
  type: ([x], attrs) => permutedType(x, attrs.axes),
  compute: (node, [x]) => {
    const perm = permutation(node.attrs.axes, x.rank);
    return backend().transpose(x, perm);
  },
  gradient: (node, g) => {
    const axes = node.attrs.axes;
    if (axes === undefined) return [transpose(g)];
    // The inverse permutation (axes name every dimension, so their count is the rank).
    const inverse = new Array<number>(axes.length);
    permutation(axes, axes.length).forEach((p, i) => (inverse[p] = i));
    return [transpose(g, inverse)];
  },
});

/** x's type with its axes permuted by `axes`; unknown dims stay unknown. */
function permutedType(x: NodeType, axes: readonly number[] | undefined): NodeType {
  if (x.shape === null) {
    return { shape: axes === undefined ? null : axes.map(() => null), dtype: x.dtype };
  }
  const shape = x.shape;
  return { shape: permutation(axes, shape.length).map((p) => shape[p]), dtype: x.dtype };
}

function checkIntegers(
  builder: string,
  what: string,
  values: unknown,
  allowMinusOne = false,
): void {
  const ok =
    Array.isArray(values) &&
    values.every((v) => Number.isInteger(v) && (v >= 0 || (allowMinusOne && v === -1)));
  if (!ok)
    throw new TypeError(
      `${builder}: ${what} must be an array of integers, got ${typeName(values)} ${JSON.stringify(values)}`,
    );
}

function checkAxis(builder: string, axis: unknown): void {
  if (axis !== undefined && !Number.isInteger(axis)) {
    throw new TypeError(`${builder}: axis must be an integer, got ${JSON.stringify(axis)}`);
  }
}

/**
 * x broadcast to `target` (a Node, meaning its value's shape, or a number[]); x's missing
 * dimensions go in at `axis`. Example: bias (k,) to (batch, k): `broadcastTo(b, logits, { axis: 0 })`.
 */
export function broadcastTo(
  x: Node,
  target: Node | readonly number[],
  options?: BroadcastOptions,
): Node {
  const example = "broadcastTo(x, target, { axis: 0 })";
  checkArity("broadcastTo(x, target, options)", arguments.length, 3, example);
  const { axis } = checkOptions("broadcastTo(x, target, options)", options, ["axis"], example);
  checkAxis("broadcastTo", axis);
  if (target instanceof Node) {
    return makeNode(
      broadcastToOp,
      [x, target],
      { axis },
      `broadcastTo(${label(x)},${label(target)})`,
    );
  }
  checkIntegers("broadcastTo", "target shape", target);
  return makeNode(
    broadcastToOp,
    [x],
    { axis, shape: [...target] },
    `broadcastTo(${label(x)},${fmt(target)})`,
  );
}

/** g summed down to ref's shape (broadcast axes summed; `axis` as in broadcastTo). */
export function sumLike(g: Node, ref: Node, options: BroadcastOptions = {}): Node {
  return makeNode(
    sumLikeOp,
    [g, ref],
    { axis: options.axis },
    `sumLike(${label(g)},${label(ref)})`,
  );
}

/** g reshaped to ref's shape. */
export function reshapeLike(g: Node, ref: Node): Node {
  return makeNode(reshapeLikeOp, [g, ref], {}, `reshapeLike(${label(g)},${label(ref)})`);
}

/** x viewed with another shape of equal size; one dimension may be -1. Example: `reshape(x, [-1, 64])`. */
export function reshape(x: Node, shape: readonly number[]): Node {
  checkIntegers("reshape", "shape", shape, true);
  if (shape.filter((d) => d === -1).length > 1)
    throw new Error(`reshape: at most one -1 in ${fmt(shape)}`);
  return makeNode(reshapeOp, [x], { shape: [...shape] }, `reshape(${label(x)},${fmt(shape)})`);
}

/** x with a new size-1 axis at `axis`. Example: `expandDims(v, 0)` turns (k,) into (1, k). */
export function expandDims(x: Node, axis: number): Node {
  if (!Number.isInteger(axis))
    throw new TypeError(`expandDims: axis must be an integer, got ${JSON.stringify(axis)}`);
  return makeNode(expandDimsOp, [x], { axis }, `expandDims(${label(x)},${axis})`);
}

/** x with its axes permuted (reversed when `axes` is omitted). Example: `transpose(m)` for m^T. */
export function transpose(x: Node, axes?: readonly number[]): Node {
  if (axes !== undefined && (!Array.isArray(axes) || !axes.every((a) => Number.isInteger(a)))) {
    throw new TypeError(
      `transpose: axes must be an array of integers, got ${JSON.stringify(axes)}`,
    );
  }
  const attrs = axes === undefined ? {} : { axes: [...axes] };
  return makeNode(transposeOp, [x], attrs, `transpose(${label(x)})`);
}

/** A constant tensor as a leaf of the graph (its values in attrs, so plans carry them). */
export const constantOp: Op = declareOp<{ values: number[]; shape: number[]; dtype: DType }>({
  name: "constant",
  type: (_inputs, attrs) => ({ shape: attrs.shape, dtype: attrs.dtype }),
  compute: (node) =>
    tensor(node.attrs.values, { shape: node.attrs.shape, dtype: node.attrs.dtype }),
  gradient: () => [],
});

/** A node whose value is always `value`. Example: `x.mul(constant(tensor([1, 0, 0])))`. */
export function constant(value: Tensor): Node {
  const attrs = { values: Array.from(value.data), shape: [...value.shape], dtype: value.dtype };
  return makeNode(constantOp, [], attrs, `constant${fmt(value.shape)}`);
}

/** x itself, with no gradient: what flows back through it stops (JAX's `stop_gradient`). */
export const stopGradientOp: Op = declareOp({
  name: "stopGradient",
  sameAs: { shape: 0, dtype: 0 },
  compute: (_node, [x]) => x,
  gradient: () => [null],
  jvp: () => null,
});

/** x with no gradient. Example: `stopGradient(target).sub(y)` trains y towards a fixed target. */
export const stopGradient = (x: Node): Node =>
  makeNode(stopGradientOp, [x], {}, `stopGradient(${label(x)})`);

/** The attrs of slice: `end` null for the axis' size. */
interface SliceAttrs {
  axis: number;
  start: number;
  end: number | null;
}

/** [start, end) resolved against the axis' size (negatives count from the end); throws out of bounds. */
function sliceBounds(attrs: SliceAttrs, size: number, shape: readonly Dim[]): [number, number] {
  const resolve = (i: number) => (i < 0 ? i + size : i);
  const [start, end] = [resolve(attrs.start), attrs.end === null ? size : resolve(attrs.end)];
  if (start < 0 || end > size || start > end) {
    throw new RangeError(
      `slice: start ${attrs.start}, end ${attrs.end ?? "(the size)"} out of bounds for axis ${attrs.axis} of size ${size} (${fmtType(shape)})`,
    );
  }
  return [start, end];
}

/** The elements at start..end-1 along `axis`. */
export const sliceOp: Op = declareOp<SliceAttrs>({
  name: "slice",
  sameAs: { dtype: 0 },
  type: ([x], attrs) => {
    if (x.shape === null) return { shape: null, dtype: x.dtype };
    const axis = normalizeAxis(attrs.axis, x.shape.length);
    const shape = [...x.shape];
    const size = shape[axis];
    if (size !== null) {
      const [start, end] = sliceBounds(attrs, size, x.shape);
      shape[axis] = end - start;
    } else {
      const known = attrs.start >= 0 && attrs.end !== null && attrs.end >= 0;
      shape[axis] = known ? Math.max(0, attrs.end! - attrs.start) : null;
    }
    return { shape, dtype: x.dtype };
  },
  compute: (node, [x]) => {
    const axis = normalizeAxis(node.attrs.axis, x.rank);
    const [start, end] = sliceBounds(node.attrs, x.shape[axis], x.shape);
    return backend().slice(x, axis, start, end);
  },
  gradient: (node, g) => [unslice(g, node.inputs[0], node.attrs)],
  jvp: (node, [t]) => sliceBy(t!, node.attrs),
});

/** g put back where `slice` took it, zeros elsewhere: x's shape (the adjoint of slice). */
export const unsliceOp: Op = declareOp<SliceAttrs>({
  name: "unslice",
  sameAs: { shape: 1, dtype: 0 },
  compute: (node, [g, x]) => {
    const axis = normalizeAxis(node.attrs.axis, x.rank);
    const [start] = sliceBounds(node.attrs, x.shape[axis], x.shape);
    return backend().unslice(g, x.shape, axis, start);
  },
  gradient: (node, g) => [sliceBy(g, node.attrs), null],
  jvp: (node, [t]) => (t ? unslice(t, node.inputs[1], node.attrs) : null),
});

/** Options of {@link slice}. */
export interface SliceOptions {
  axis: number;
  start?: number;
  /** One past the last index (default: the axis' size); negatives count from the end. */
  end?: number;
}

/**
 * The elements of x at indices start..end-1 along `axis`, as NumPy's `x[:, start:end]` (negative
 * indices count from the end; out of bounds is an error, not a clamp). Example:
 * `slice(x, { axis: 1, start: 0, end: 14 })`.
 */
export function slice(x: Node, options: SliceOptions): Node {
  const example = "slice(x, { axis: 1, start: 0, end: 14 })";
  checkArity("slice(x, options)", arguments.length, 2, example);
  const {
    axis,
    start = 0,
    end,
  } = checkOptions("slice(x, options)", options, ["axis", "start", "end"], example);
  for (const [name, value] of [
    ["axis", axis],
    ["start", start],
    ["end", end],
  ] as const) {
    if ((name === "axis" || value !== undefined) && !Number.isInteger(value)) {
      throw new TypeError(`slice: ${name} must be an integer, got ${String(value)} (${example})`);
    }
  }
  const attrs = { axis, start, end: end ?? null };
  return makeNode(sliceOp, [x], attrs, `slice(${label(x)},${axis},${start}:${end ?? ""})`);
}

/** slice() from a slice node's attrs. */
function sliceBy(x: Node, { axis, start, end }: SliceAttrs): Node {
  return slice(x, end === null ? { axis, start } : { axis, start, end });
}

/** g placed where slice(x, attrs) took its elements (internal: slice's gradient). */
function unslice(g: Node, x: Node, attrs: SliceAttrs): Node {
  return makeNode(unsliceOp, [g, x], { ...attrs }, `unslice(${label(g)},${label(x)})`);
}

/** The types of concat's inputs joined along `axis`; throws where known dims differ off it. */
function concatType(inputs: readonly NodeType[], attrs: { axis: number }): NodeType {
  const dtype = promoteTypes(...inputs.map((t) => t.dtype));
  const shapes = inputs.map((t) => t.shape);
  const known = shapes.filter((s): s is Dim[] => s !== null);
  if (known.length === 0) return { shape: null, dtype };
  const rank = known[0].length;
  const axis = normalizeAxis(attrs.axis, rank);
  for (const s of known) {
    const differs =
      s.length !== rank ||
      s.some((d, i) => i !== axis && d !== null && known[0][i] !== null && d !== known[0][i]);
    if (differs) {
      throw new Error(
        `concat: shapes differ off axis ${attrs.axis}: ${shapes.map(fmtType).join(", ")}`,
      );
    }
  }
  if (known.length < shapes.length) return { shape: known[0].map(() => null), dtype };
  const shape = known[0].map((d, i) =>
    i === axis
      ? known.reduce<Dim>((total, s) => (total === null || s[i] === null ? null : total + s[i]!), 0)
      : (known.find((s) => s[i] !== null)?.[i] ?? d),
  );
  return { shape, dtype };
}

/** Inputs joined along `axis`. */
export const concatOp: Op = declareOp<{ axis: number }>({
  name: "concat",
  sameAs: { dtype: "promote" },
  type: concatType,
  compute: (node, xs) => {
    const axis = normalizeAxis(node.attrs.axis, xs[0].rank);
    const first = xs[0].shape;
    for (const x of xs) {
      if (x.rank !== first.length || x.shape.some((d, i) => i !== axis && d !== first[i])) {
        throw new Error(
          `concat: shapes differ off axis ${node.attrs.axis}: ${xs.map((t) => fmt(t.shape)).join(", ")}`,
        );
      }
    }
    return backend().concat(xs, axis);
  },
  // Input i's share is g's part at i's place along the axis, found from the inputs' run-time
  // sizes (so unknown sizes, a null batch, need no declaration).
  gradient: (node, g) => node.inputs.map((_, i) => concatPart(g, node.inputs, node.attrs.axis, i)),
  jvp: (node, tangents) => {
    return concat(
      tangents.map((t, i) => t ?? zerosOf(node.inputs[i])),
      { axis: node.attrs.axis },
    );
  },
});

/**
 * The nodes joined along `axis` (equal sizes elsewhere), as NumPy's `concatenate`. Example:
 * `concat([a, b], { axis: 1 })`.
 */
export function concat(nodes: readonly Node[], options: { axis: number }): Node {
  const example = "concat([a, b], { axis: 1 })";
  checkArity("concat(nodes, options)", arguments.length, 2, example);
  checkNodeList("concat(nodes, options)", "nodes", nodes, example);
  if (nodes.length === 0) throw new Error(`concat: needs at least one node (${example})`);
  const { axis } = checkOptions("concat(nodes, options)", options, ["axis"], example);
  if (!Number.isInteger(axis)) {
    throw new TypeError(`concat: axis must be an integer, got ${String(axis)} (${example})`);
  }
  return makeNode(concatOp, [...nodes], { axis }, `concat(${nodes.map(label).join(",")})`);
}

/** The attrs of concatPart: which input's part of a concatenation. */
interface PartAttrs {
  axis: number;
  index: number;
}

/** The part of g (a concatenation's shape) that input `index` of `parts` holds along `axis`. */
export const concatPartOp: Op = declareOp<PartAttrs>({
  name: "concatPart",
  sameAs: { dtype: 0 },
  type: ([g, ...parts], attrs) => ({ shape: parts[attrs.index].shape, dtype: g.dtype }),
  compute: (node, [g, ...parts]) => {
    const axis = normalizeAxis(node.attrs.axis, g.rank);
    let start = 0;
    for (let i = 0; i < node.attrs.index; i++) start += parts[i].shape[axis];
    return backend().slice(g, axis, start, start + parts[node.attrs.index].shape[axis]);
  },
  // Linear in g: its adjoint puts gg at the part's place among zeros shaped like the others.
  gradient: (node, gg) => {
    const [, ...parts] = node.inputs;
    const { axis, index } = node.attrs;
    const pieces = parts.map((x, i) => (i === index ? gg : zerosOf(x)));
    return [concat(pieces, { axis }), ...parts.map(() => null)];
  },
  jvp: (node, [t]) =>
    t ? concatPart(t, node.inputs.slice(1), node.attrs.axis, node.attrs.index) : null,
});

/** g's part for `parts[index]` (internal: concat's gradient). */
function concatPart(g: Node, parts: readonly Node[], axis: number, index: number): Node {
  return makeNode(concatPartOp, [g, ...parts], { axis, index }, `concatPart(${label(g)},${index})`);
}
