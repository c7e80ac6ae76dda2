/**
 * Neural-network ops: softmax and logSoftmax (ops with their own rules), layer normalization, and
 * the softmax cross-entropy, fused (one kernel, one node) because it is the loss of every step.
 */

import { backend } from "../../tensor/active.js";
import { normalizeAxes } from "../../tensor/shape.js";
import { releaseArray, type Tensor } from "../../tensor/tensor.js";
import { checkArity, checkOptions, label, makeNode, type Node } from "../node.js";
import { declareOp, type NodeOf, type Op } from "../op.js";
import { fmtType, promoteTypes, shapesAgree, type NodeType } from "../types.js";
import { add, addByConst, div, exp, mul, neg, onesLike, pow, sub } from "./elementwise.js";
import { mean, sum } from "./reduce.js";
import { sumLike } from "./shape.js";
/** Options of softmax and logSoftmax. */
export interface SoftmaxOptions {
  /** The class axis (default -1). */
  axis?: number;
}

// NOTE: ops of their own (the course calls `softmax(x).op.compute` and `.op.gradient` and
// expects softmax's own rule); each computes what the composite exp(x - logsumexp(x)) computes,
// kernel for kernel, so values are bitwise those of the composite.

/** x - logsumexp(x, axis, keepdims) through the kernels, the temporary freed. */
function logSoftmaxValue(x: Tensor, axis: number): Tensor {
  const b = backend();
  const lse = b.reduce("logsumexp", x, normalizeAxes(axis, x.rank), true);
  const out = b.binary("sub", x, lse);
  releaseArray(lse.data);
  return out;
}

/** log softmax along attrs.axis. */
export const logSoftmaxOp: Op = declareOp<Required<SoftmaxOptions>>({
  name: "logSoftmax",
  sameAs: { shape: 0, dtype: 0 },
  compute: (node, [x]) => logSoftmaxValue(x, node.attrs.axis),
  // d/dx_j (x_i - lse) = δij - softmax_j: the pullback is g - softmax * sum(g).
  gradient: (node, g) => {
    const axis = node.attrs.axis;
    return [sub(g, mul(exp(node), sum(g, { axis, keepdims: true })))];
  },
});

/** softmax along attrs.axis. */
export const softmaxOp: Op = declareOp<Required<SoftmaxOptions>>({
  name: "softmax",
  sameAs: { shape: 0, dtype: 0 },
  compute: (node, [x]) => {
    const log = logSoftmaxValue(x, node.attrs.axis);
    const out = backend().unary("exp", log);
    releaseArray(log.data);
    return out;
  },
  // The pullback of s = softmax(x): s * (g - sum(g * s)).
  gradient: (node, g) => {
    const axis = node.attrs.axis;
    return [mul(node, sub(g, sum(mul(g, node), { axis, keepdims: true })))];
  },
});

/** x - logsumexp(x) along `axis` (default -1), stable for large logits. */
export function logSoftmax(x: Node, options?: SoftmaxOptions): Node {
  checkArity("logSoftmax(x, options)", arguments.length, 2, "logSoftmax(x, { axis: -1 })");
  const axis = softmaxAxis("logSoftmax", options);
  return makeNode(logSoftmaxOp, [x], { axis }, `logSoftmax(${label(x)})`);
}

/** exp(x - logsumexp(x)) along `axis` (default -1), one op. Example: `softmax(logits)`. */
export function softmax(x: Node, options?: SoftmaxOptions): Node {
  checkArity("softmax(x, options)", arguments.length, 2, "softmax(x, { axis: -1 })");
  const axis = softmaxAxis("softmax", options);
  return makeNode(softmaxOp, [x], { axis }, `softmax(${label(x)})`);
}

/** The logits' type with the promoted dtype; logits and targets must have one shape. */
function crossEntropyType([logits, targets]: readonly NodeType[]): NodeType {
  const { shape: a } = logits;
  const { shape: b } = targets;
  if (!shapesAgree(a, b)) {
    throw new Error(`logits and targets shapes differ: ${fmtType(a)} vs ${fmtType(b)}`);
  }
  return { shape: a ?? b, dtype: promoteTypes(logits.dtype, targets.dtype) };
}

/** Options of {@link softmaxCrossEntropy}. */
export interface CrossEntropyOptions extends SoftmaxOptions {
  /**
   * "mean" (default, as PyTorch's `cross_entropy` and TF.js's `losses.softmaxCrossEntropy`): the
   * mean over the rows (every position but the class axis); "sum": their sum.
   */
  reduction?: "mean" | "sum";
}

/** The attrs of the cross-entropy ops. */
type CrossEntropyAttrs = Required<CrossEntropyOptions>;

/** The rows a cross-entropy averages over: every element of the logits but along the class axis. */
function rowCount(node: NodeOf<CrossEntropyAttrs>, logits: Tensor): number {
  return logits.size / Math.max(logits.shape[classAxis(node, logits)], 1);
}

/** `value` divided in place by the row count when the node takes the mean (fresh kernel output). */
function reduced(node: NodeOf<CrossEntropyAttrs>, logits: Tensor, value: Tensor): Tensor {
  if (node.attrs.reduction !== "mean") return value;
  const rows = rowCount(node, logits);
  const data = value.data;
  for (let i = 0; i < data.length; i++) data[i] = data[i] / rows;
  return value;
}

/** The row count as a 0-d node (rules need it where the batch size is known only at run time). */
function rowsOf(logits: Node, axis: number): Node {
  return sum(onesLike(sum(logits, { axis })));
}

/** The class axis of a cross-entropy node, non-negative for the logits' rank. */
function classAxis(node: NodeOf<Required<SoftmaxOptions>>, logits: Tensor): number {
  if (logits.rank === 0) throw new RangeError("logits must have an axis, got []");
  return normalizeAxes(node.attrs.axis, logits.rank)[0];
}

// NOTE: fused rather than neg(sum(targets * logSoftmax(logits))): one kernel instead of seven
// nodes forward, and a backward of one node (softmaxCrossEntropyGrad) instead of about ten; the
// rules below are still written with ops, so higher orders work.

/**
 * -sum(targets * logSoftmax(logits)) over every element, softmax along attrs.axis, divided by the
 * row count for reduction "mean"; 0-d.
 */
export const softmaxCrossEntropyOp: Op = declareOp<CrossEntropyAttrs>({
  name: "softmaxCrossEntropy",
  sameAs: { dtype: "promote" },
  type: (inputs) => ({ shape: [], dtype: crossEntropyType(inputs).dtype }),
  compute: (node, [logits, targets]) =>
    reduced(node, logits, backend().softmaxCrossEntropy(logits, targets, classAxis(node, logits))),
  gradient: (node, g) => {
    const [logits, targets] = node.inputs;
    const { axis, reduction } = node.attrs;
    // sumLike (a view here: g is 0-d) names each gradient's shape for simplify(), which then drops
    // the sumLike/zerosLike adjoints of the layers below.
    const targetsGrad = neg(mul(g, logSoftmax(logits, { axis })));
    return [
      sumLike(mul(g, softmaxCrossEntropyGrad(logits, targets, axis, reduction)), logits),
      sumLike(reduction === "mean" ? div(targetsGrad, rowsOf(logits, axis)) : targetsGrad, targets),
    ];
  },
});

/**
 * softmax(logits) * sum(targets, axis, keepdims) - targets (divided by the row count for "mean"):
 * d softmaxCrossEntropy / d logits.
 */
export const softmaxCrossEntropyGradOp: Op = declareOp<CrossEntropyAttrs>({
  name: "softmaxCrossEntropyGrad",
  sameAs: { shape: 0, dtype: "promote" },
  type: crossEntropyType,
  compute: (node, [logits, targets]) =>
    reduced(
      node,
      logits,
      backend().softmaxCrossEntropyGrad(logits, targets, classAxis(node, logits)),
    ),
  gradient: (node, g) => {
    // With p = softmax(x), s = sum(t), G = p*s - t: dG_i/dx_j = s*p_i*(δij - p_j) and
    // dG_i/dt_j = p_i - δij, so the pullbacks are s*p*(g - sum(p*g)) and sum(p*g) - g.
    const [logits, targets] = node.inputs;
    const { axis, reduction } = node.attrs;
    const p = softmax(logits, { axis });
    const rowSum = sum(targets, { axis, keepdims: true });
    const pg = sum(mul(p, g), { axis, keepdims: true });
    const grads = [mul(rowSum, mul(p, sub(g, pg))), sub(pg, g)];
    if (reduction !== "mean") return grads;
    const rows = rowsOf(logits, axis);
    return grads.map((grad) => div(grad, rows));
  },
});

/** The class axis from a softmax-family options object (default -1), checked. */
function softmaxAxis(builder: string, options: SoftmaxOptions | undefined, args = "x"): number {
  const call = `${builder}(${args}, options)`;
  const checked = checkOptions(call, options, ["axis"], `${builder}(${args}, { axis: -1 })`);
  const axis = checked.axis ?? -1;
  if (!Number.isInteger(axis))
    throw new TypeError(`${builder}: axis must be an integer, got ${JSON.stringify(axis)}`);
  return axis;
}

/**
 * The cross-entropy -sum(targets * logSoftmax(logits)) as a 0-d value, averaged over the rows
 * (reduction "mean", the default, as PyTorch and TF.js) or summed ("sum"), softmax along `axis`
 * (default -1), max-subtracted; targets need not be one-hot. Example:
 * `softmaxCrossEntropy(logits, oneHotLabels)`; `{ reduction: "sum" }` for the sum.
 */
export function softmaxCrossEntropy(
  logits: Node,
  targets: Node,
  options?: CrossEntropyOptions,
): Node {
  const call = "softmaxCrossEntropy(logits, targets, options)";
  const example = 'softmaxCrossEntropy(logits, targets, { axis: -1, reduction: "mean" })';
  checkArity(call, arguments.length, 3, example);
  const checked = checkOptions(call, options, ["axis", "reduction"], example);
  const reduction = checked.reduction ?? "mean";
  const axisOnly = checked.axis === undefined ? undefined : { axis: checked.axis };
  const axis = softmaxAxis("softmaxCrossEntropy", axisOnly, "logits, targets");
  if (reduction !== "mean" && reduction !== "sum") {
    throw new TypeError(
      `softmaxCrossEntropy: reduction must be "mean" or "sum", got ${JSON.stringify(reduction)}`,
    );
  }
  const name = `softmaxCrossEntropy(${label(logits)},${label(targets)}${reduction === "sum" ? ",sum" : ""})`;
  return makeNode(softmaxCrossEntropyOp, [logits, targets], { axis, reduction }, name);
}

/** softmax(logits) * sum(targets, axis, keepdims) - targets (internal: the fused loss's gradient). */
function softmaxCrossEntropyGrad(
  logits: Node,
  targets: Node,
  axis: number,
  reduction: "mean" | "sum",
): Node {
  const name = `softmaxCrossEntropyGrad(${label(logits)},${label(targets)})`;
  return makeNode(softmaxCrossEntropyGradOp, [logits, targets], { axis, reduction }, name);
}

/** The attrs of layerNorm: the normalized (trailing) axes and epsilon. */
interface LayerNormAttrs {
  axis: number[];
  eps: number;
}

/** The normalized axes of x's rank, checked to be the trailing ones (as PyTorch's shape). */
function trailingAxes(axis: readonly number[], rank: number): number[] {
  const axes = normalizeAxes([...axis], rank);
  if (axes.some((a, i) => a !== rank - axes.length + i)) {
    throw new RangeError(
      `layerNorm: axis ${JSON.stringify(axis)} must name trailing axes of rank ${rank} (as PyTorch's normalized_shape)`,
    );
  }
  return axes;
}

// NOTE: fused rather than composed at the call site: one node a user sees and the course's test
// calls (`layerNorm(x).op.compute`), its temporaries freed inside; the rule is written with ops,
// so higher orders work.

/** (x - mean) / sqrt(var + eps) over the trailing axes, biased variance (PyTorch's layer_norm). */
export const layerNormOp: Op = declareOp<LayerNormAttrs>({
  name: "layerNorm",
  sameAs: { shape: 0, dtype: 0 },
  type: ([x], attrs) => {
    if (x.shape !== null) trailingAxes(attrs.axis, x.shape.length);
    return x;
  },
  compute: (node, [x]) =>
    backend().layerNorm(x, normalizedSize(node.attrs.axis, x), node.attrs.eps),
  // With y the output and r = 1 / sqrt(var + eps): dx = r * (g - mean(g) - y * mean(g * y)).
  gradient: (node, g) => [layerNormGrad(node.inputs[0], g, node.attrs)],
});

/** Elements per normalized run: the product of the trailing axes' sizes. */
function normalizedSize(axis: readonly number[], x: Tensor): number {
  return trailingAxes(axis, x.rank).reduce((n, a) => n * x.shape[a], 1);
}

// NOTE: the adjoint as one op (one pass per row, not the eleven nodes of its formula); its own
// rule, for second order, differentiates the formula: with y = layerNorm(x), r and the means
// over the normalized axes, <u, f> = r * (mean(u g) - mean(g) mean(u) - mean(g y) mean(u y)) * n,
// whose derivative in x is -r^2 y (that bracket) - r mean(u y) f - r mean(g y) f(x, u), and in g
// f(x, u) (the operator is symmetric).

/** layerNorm's adjoint: r * (g - mean(g) - y * mean(g * y)) over the normalized axes. */
export const layerNormGradOp: Op = declareOp<LayerNormAttrs>({
  name: "layerNormGrad",
  sameAs: { shape: 0, dtype: "promote" },
  type: ([x, g]) => ({ shape: x.shape, dtype: promoteTypes(x.dtype, g.dtype) }),
  compute: (node, [x, g]) =>
    backend().layerNormGrad(x, g, normalizedSize(node.attrs.axis, x), node.attrs.eps),
  gradient: (node, u) => {
    const [x, g] = node.inputs;
    const { axis, eps } = node.attrs;
    const o = { axis, keepdims: true };
    const y = makeNode(layerNormOp, [x], node.attrs, `layerNorm(${label(x)})`);
    const centred = sub(x, mean(x, o));
    const r = pow(addByConst(mean(mul(centred, centred), o), eps), -0.5);
    const dg = layerNormGrad(x, u, node.attrs);
    const [uy, gy] = [mean(mul(u, y), o), mean(mul(g, y), o)];
    const bracket = sub(sub(mean(mul(u, g), o), mul(mean(g, o), mean(u, o))), mul(gy, uy));
    const dx = sub(neg(mul(mul(mul(r, r), y), bracket)), mul(r, add(mul(uy, node), mul(gy, dg))));
    return [dx, dg];
  },
});

function layerNormGrad(x: Node, g: Node, attrs: LayerNormAttrs): Node {
  const a = { axis: attrs.axis, eps: attrs.eps };
  return makeNode(layerNormGradOp, [x, g], a, `layerNormGrad(${label(x)},${label(g)})`);
}

/**
 * (x - mean) / sqrt(var + eps) over `axis` (default -1; a number or an array of trailing axes),
 * with the biased variance and no scale or shift (multiply and add for those), as PyTorch's
 * `layer_norm` and the course compute it. Example: `layerNorm(h).mul(gamma).add(beta)`.
 */
export function layerNorm(x: Node, options?: { axis?: number | number[]; eps?: number }): Node {
  const example = "layerNorm(x, { axis: -1, eps: 1e-5 })";
  checkArity("layerNorm(x, options)", arguments.length, 2, example);
  const { axis = -1, eps = 1e-5 } = checkOptions(
    "layerNorm(x, options)",
    options,
    ["axis", "eps"],
    example,
  );
  const axes = Array.isArray(axis) ? [...axis] : [axis];
  if (axes.length === 0 || !axes.every((a) => Number.isInteger(a))) {
    throw new TypeError(
      `layerNorm: axis must be an integer or a non-empty array of integers, got ${JSON.stringify(axis)}`,
    );
  }
  if (typeof eps !== "number" || !(eps > 0) || !Number.isFinite(eps)) {
    throw new RangeError(`layerNorm: eps must be a positive finite number, got ${String(eps)}`);
  }
  return makeNode(layerNormOp, [x], { axis: axes, eps }, `layerNorm(${label(x)})`);
}
