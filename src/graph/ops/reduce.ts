/** Reductions: sum, mean, max, logsumexp, and unreduce, their shared adjoint. */
import { backend } from "../../tensor/active.js";
import { type ReduceKind } from "../../tensor/backend.js";
import { fmt, normalizeAxes, normalizeAxis, reducedShape, sameShape } from "../../tensor/shape.js";
import { releaseArray, type Tensor } from "../../tensor/tensor.js";
import { checkArity, checkOptions, label, makeNode, type Node } from "../node.js";
import { declareOp, type Attrs, type NodeOf, type Op, type OpSpec } from "../op.js";
import type { NodeType } from "../types.js";
import { exp, mul, sub } from "./elementwise.js";

/** Options of the reductions. */
export interface ReduceOptions {
  /** Axis or axes to reduce (negative counts from the end); all axes when omitted. */
  axis?: number | readonly number[];
  /** Keep reduced axes as size 1. */
  keepdims?: boolean;
}

/** The attrs of the reductions and their adjoints (mean: unreduce divides by the count). */
interface ReduceAttrs {
  axis?: number | readonly number[];
  keepdims: boolean;
  mean?: boolean;
}

function axesOf(node: NodeOf<ReduceAttrs>, x: Tensor): number[] {
  return normalizeAxes(node.attrs.axis, x.rank);
}

/** The type of a reduction of `x` over attrs.axis (all axes when unset), keepdims or not. */
function reducedType([x]: readonly NodeType[], attrs: ReduceAttrs): NodeType {
  if (x.shape === null) {
    // Reducing every axis without keepdims gives a 0-d value, whatever the rank.
    return {
      shape: attrs.axis === undefined && attrs.keepdims !== true ? [] : null,
      dtype: x.dtype,
    };
  }
  const axes = normalizeAxes(attrs.axis, x.shape.length);
  return { shape: reducedShape(x.shape, axes, attrs.keepdims), dtype: x.dtype };
}

function reduceOp(kind: ReduceKind, gradient: OpSpec<ReduceAttrs>["gradient"]): Op {
  return declareOp<ReduceAttrs>({
    name: kind,
    type: reducedType,
    sameAs: { dtype: 0 },
    compute: (node, [x]) => backend().reduce(kind, x, axesOf(node, x), node.attrs.keepdims),
    gradient,
  });
}

/** Sum over axes. */
export const sumOp: Op = reduceOp("sum", (node, g) => [unreduce(g, node.inputs[0], node.attrs)]);

/** Mean over axes. */
export const meanOp: Op = reduceOp("mean", (node, g) => [
  unreduce(g, node.inputs[0], { ...node.attrs, mean: true }),
]);

/** Max over axes; the gradient is shared equally by tied maxima. */
export const maxOp: Op = reduceOp("max", (node, g) => {
  const x = node.inputs[0];
  return [mul(maxMask(x, node.attrs), unreduce(g, x, node.attrs))];
});

/** log(sum(exp(x))) over axes, computed with the max subtracted (finite for logits of ±1e4). */
export const logsumexpOp: Op = reduceOp("logsumexp", (node, g) => {
  const x = node.inputs[0];
  // d lse / dx = softmax(x) = exp(x - lse)
  const softmax = exp(sub(x, unreduce(node, x, node.attrs)));
  return [mul(unreduce(g, x, node.attrs), softmax)];
});

/**
 * unreduce(g, x): a reduced gradient g broadcast back over x's reduced axes (divided by the
 * count for a mean). The adjoint of sum and mean.
 */
export const unreduceOp: Op = declareOp<ReduceAttrs>({
  name: "unreduce",
  sameAs: { shape: 1, dtype: 0 },
  compute: (node, [g, x]) => {
    const axes = axesOf(node, x);
    const keepdims = node.attrs.keepdims;
    const expected = reducedShape(x.shape, axes, keepdims);
    if (!sameShape(g.shape, expected)) {
      throw new Error(
        `gradient of shape ${fmt(g.shape)} does not match reduced shape ${fmt(expected)}`,
      );
    }
    const out = backend().broadcastTo(g.reshapeView(reducedShape(x.shape, axes, true)), x.shape);
    if (node.attrs.mean !== true) return out;
    const mean = backend().scalar("div", out, x.size / Math.max(g.size, 1));
    // The broadcast was a temporary: back to the pool now, not when a GC callback runs.
    if (out.data !== g.data) releaseArray(out.data);
    return mean;
  },
  gradient: (node, g) => {
    const reduce = node.attrs.mean === true ? mean : sum;
    const options = { axis: node.attrs.axis, keepdims: node.attrs.keepdims };
    return [reduce(g, options), null];
  },
});

/** 1/count at the maxima along the axes (ties share), 0 elsewhere; piecewise constant. */
export const maxMaskOp: Op = declareOp<ReduceAttrs>({
  name: "maxMask",
  sameAs: { shape: 0, dtype: 0 },
  compute: (node, [x]) => backend().maxMask(x, axesOf(node, x)),
  gradient: () => [null], // piecewise constant
});

function reduceAttrs(builder: string, options: ReduceOptions | undefined): Attrs {
  const { axis, keepdims } = checkOptions(
    `${builder}(x, options)`,
    options,
    ["axis", "keepdims"],
    `${builder}(x, { axis: 1 })`,
  );
  const ok =
    axis === undefined ||
    Number.isInteger(axis) ||
    (Array.isArray(axis) && axis.every((a) => Number.isInteger(a)));
  if (!ok)
    throw new TypeError(
      `${builder}: axis must be an integer or an array of integers, got ${typeof axis === "number" ? String(axis) : JSON.stringify(axis)}`,
    );
  if (keepdims !== undefined && typeof keepdims !== "boolean") {
    throw new TypeError(`${builder}: keepdims must be a boolean, got ${JSON.stringify(keepdims)}`);
  }
  return { axis: Array.isArray(axis) ? [...axis] : axis, keepdims: keepdims === true };
}

function reduceName(builder: string, x: Node, attrs: Attrs): string {
  return attrs.axis === undefined
    ? `${builder}(${label(x)})`
    : `${builder}(${label(x)},axis=${String(attrs.axis)})`;
}

function reduceBuilder(op: Op): (x: Node, options?: ReduceOptions) => Node {
  return function reduce(x: Node, options?: ReduceOptions): Node {
    checkArity(`${op.name}(x, options)`, arguments.length, 2, `${op.name}(x, { axis: 1 })`);
    const attrs = reduceAttrs(op.name, options);
    return makeNode(op, [x], attrs, reduceName(op.name, x, attrs));
  };
}

/** Sum over `axis` (all axes by default). Example: `sum(x, { axis: 1 })`. */
export const sum = reduceBuilder(sumOp);
/** Mean over `axis` (all axes by default). */
export const mean = reduceBuilder(meanOp);
/** Max over `axis` (all axes by default). */
export const max = reduceBuilder(maxOp);
/** log(sum(exp(x))) over `axis`, stable for large logits. */
export const logsumexp = reduceBuilder(logsumexpOp);

/** g broadcast back over x's reduced axes (internal: the gradient of sum and mean). */
export function unreduce(g: Node, x: Node, attrs: Attrs): Node {
  const { axis, keepdims, mean } = attrs;
  return makeNode(
    unreduceOp,
    [g, x],
    { axis, keepdims, mean: mean === true },
    `unreduce(${label(g)},${label(x)})`,
  );
}

/** Equal shares of 1 at the maxima of x along the axes (internal: the gradient of max). */
export function maxMask(x: Node, attrs: Attrs): Node {
  return makeNode(maxMaskOp, [x], { axis: attrs.axis }, `maxMask(${label(x)})`);
}

/** The index of the maximum along `axis` (the axis removed), as float values; no gradient. */
export const argmaxOp: Op = declareOp<{ axis: number }>({
  name: "argmax",
  sameAs: { dtype: 0 },
  type: ([x], attrs) => {
    if (x.shape === null) return { shape: null, dtype: x.dtype };
    const axis = normalizeAxis(attrs.axis, x.shape.length);
    return { shape: x.shape.filter((_, i) => i !== axis), dtype: x.dtype };
  },
  compute: (node, [x]) => backend().argmax(x, normalizeAxis(node.attrs.axis, x.rank)),
  gradient: () => [null], // piecewise constant
  jvp: () => null,
});

/**
 * The index of the maximum of x along `axis` (default -1), the first on ties and a NaN's first,
 * as NumPy's `argmax`; the indices are floats of x's dtype (integer tensors are a later step).
 * Example: `argmax(logits, { axis: 1 })` gives each row's predicted class.
 */
export function argmax(x: Node, options?: { axis?: number }): Node {
  const example = "argmax(x, { axis: 1 })";
  checkArity("argmax(x, options)", arguments.length, 2, example);
  const { axis = -1 } = checkOptions("argmax(x, options)", options, ["axis"], example);
  if (!Number.isInteger(axis)) {
    throw new TypeError(`argmax: axis must be an integer, got ${String(axis)} (${example})`);
  }
  return makeNode(argmaxOp, [x], { axis }, `argmax(${label(x)},${axis})`);
}
