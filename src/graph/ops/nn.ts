/**
 * Neural-network ops: softmax and logSoftmax are composites with no rule of their own; the softmax
 * cross-entropy is fused (one kernel, one node) because it is the loss of every training step.
 */

import { backend } from "../../tensor/active.js";
import { normalizeAxes } from "../../tensor/shape.js";
import type { Tensor } from "../../tensor/tensor.js";
import { checkArity, checkOptions, label, makeNode, type Node } from "../node.js";
import { defineOp, type NodeOf, type Op } from "../op.js";
import { fmtType, promoteTypes, type NodeType } from "../types.js";
import { exp, mul, neg, sub } from "./elementwise.js";
import { logsumexp, sum } from "./reduce.js";
import { sumLike } from "./shape.js";

/** Options of softmax and logSoftmax. */
export interface SoftmaxOptions {
  /** The class axis (default -1). */
  axis?: number;
}

/** x - logsumexp(x) along `axis` (default -1), stable for large logits. */
export function logSoftmax(x: Node, options?: SoftmaxOptions): Node {
  checkArity("logSoftmax(x, options)", arguments.length, 2, "logSoftmax(x, { axis: -1 })");
  const axis = softmaxAxis("logSoftmax", options);
  return sub(x, logsumexp(x, { axis, keepdims: true }));
}

/** exp(logSoftmax(x)) along `axis` (default -1). Example: `softmax(logits)`. */
export function softmax(x: Node, options?: SoftmaxOptions): Node {
  checkArity("softmax(x, options)", arguments.length, 2, "softmax(x, { axis: -1 })");
  return exp(logSoftmax(x, { axis: softmaxAxis("softmax", options) }));
}

/** The logits' type with the promoted dtype; logits and targets must have one shape. */
function crossEntropyType([logits, targets]: readonly NodeType[]): NodeType {
  const { shape: a } = logits;
  const { shape: b } = targets;
  if (a !== null && b !== null) {
    const differ =
      a.length !== b.length || a.some((d, i) => d !== null && b[i] !== null && d !== b[i]);
    if (differ) throw new Error(`logits and targets shapes differ: ${fmtType(a)} vs ${fmtType(b)}`);
  }
  return { shape: a ?? b, dtype: promoteTypes(logits.dtype, targets.dtype) };
}

/** The class axis of a cross-entropy node, non-negative for the logits' rank. */
function classAxis(node: NodeOf<Required<SoftmaxOptions>>, logits: Tensor): number {
  if (logits.rank === 0) throw new RangeError("logits must have an axis, got []");
  return normalizeAxes(node.attrs.axis, logits.rank)[0];
}

// NOTE: fused rather than neg(sum(targets * logSoftmax(logits))): one kernel instead of seven
// nodes forward, and a backward of one node (softmaxCrossEntropyGrad) instead of about ten; the
// rules below are still written with ops, so higher orders work.

/** -sum(targets * logSoftmax(logits)) over every element, softmax along attrs.axis; 0-d. */
export const softmaxCrossEntropyOp: Op = defineOp<Required<SoftmaxOptions>>({
  name: "softmaxCrossEntropy",
  sameAs: { dtype: "promote" },
  type: (inputs) => ({ shape: [], dtype: crossEntropyType(inputs).dtype }),
  compute: (node, [logits, targets]) =>
    backend().softmaxCrossEntropy(logits, targets, classAxis(node, logits)),
  gradient: (node, g) => {
    const [logits, targets] = node.inputs;
    const axis = node.attrs.axis;
    // sumLike (a view here: g is 0-d) names each gradient's shape for simplify(), which then drops
    // the sumLike/zerosLike adjoints of the layers below.
    return [
      sumLike(mul(g, softmaxCrossEntropyGrad(logits, targets, axis)), logits),
      sumLike(neg(mul(g, logSoftmax(logits, { axis }))), targets),
    ];
  },
});

/** softmax(logits) * sum(targets, axis, keepdims) - targets: d softmaxCrossEntropy / d logits. */
export const softmaxCrossEntropyGradOp: Op = defineOp<Required<SoftmaxOptions>>({
  name: "softmaxCrossEntropyGrad",
  sameAs: { shape: 0, dtype: "promote" },
  type: crossEntropyType,
  compute: (node, [logits, targets]) =>
    backend().softmaxCrossEntropyGrad(logits, targets, classAxis(node, logits)),
  gradient: (node, g) => {
    // With p = softmax(x), s = sum(t), G = p*s - t: dG_i/dx_j = s*p_i*(δij - p_j) and
    // dG_i/dt_j = p_i - δij, so the pullbacks are s*p*(g - sum(p*g)) and sum(p*g) - g.
    const [logits, targets] = node.inputs;
    const axis = node.attrs.axis;
    const p = softmax(logits, { axis });
    const rowSum = sum(targets, { axis, keepdims: true });
    const pg = sum(mul(p, g), { axis, keepdims: true });
    return [mul(rowSum, mul(p, sub(g, pg))), sub(pg, g)];
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
 * The summed cross-entropy -sum(targets * logSoftmax(logits)) as a 0-d value, softmax along
 * `axis` (default -1), max-subtracted; targets need not be one-hot. Example:
 * `softmaxCrossEntropy(logits, oneHotLabels)`.
 */
export function softmaxCrossEntropy(logits: Node, targets: Node, options?: SoftmaxOptions): Node {
  checkArity(
    "softmaxCrossEntropy(logits, targets, options)",
    arguments.length,
    3,
    "softmaxCrossEntropy(logits, targets, { axis: -1 })",
  );
  const axis = softmaxAxis("softmaxCrossEntropy", options, "logits, targets");
  return makeNode(
    softmaxCrossEntropyOp,
    [logits, targets],
    { axis },
    `softmaxCrossEntropy(${label(logits)},${label(targets)})`,
  );
}

/** softmax(logits) * sum(targets, axis, keepdims) - targets (internal: the fused loss's gradient). */
function softmaxCrossEntropyGrad(logits: Node, targets: Node, axis: number): Node {
  const name = `softmaxCrossEntropyGrad(${label(logits)},${label(targets)})`;
  return makeNode(softmaxCrossEntropyGradOp, [logits, targets], { axis }, name);
}
