/** Shape ops: broadcastTo and its adjoint sumLike, reshape, expandDims, transpose. */
import { backend } from "../../tensor/active.js";
import { fmt, insertOnes, normalizeAxis, sameShape, sizeOf } from "../../tensor/shape.js";
import { tensor, type DType, type Tensor } from "../../tensor/tensor.js";
import { checkArity, checkOptions, label, makeNode, Node } from "../node.js";
import { typeName } from "../../tensor/options.js";
import { declareOp, type Op } from "../op.js";
import { fmtType, knownSize, type Dim, type NodeType } from "../types.js";
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
