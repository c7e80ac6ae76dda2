/** Neural-network composites built from primitives: no gradient rules of their own. */

import type { Node } from "../node.js";
import { exp, sub } from "./elementwise.js";
import { logsumexp } from "./reduce.js";

/** Options of softmax and logSoftmax. */
export interface SoftmaxOptions {
  /** The class axis (default -1). */
  axis?: number;
}

/** x - logsumexp(x) along `axis` (default -1), stable for large logits. */
export function logSoftmax(x: Node, options: SoftmaxOptions = {}): Node {
  const axis = options.axis ?? -1;
  if (!Number.isInteger(axis))
    throw new TypeError(`logSoftmax: axis must be an integer, got ${JSON.stringify(axis)}`);

  return sub(x, logsumexp(x, { axis, keepdims: true }));
}

/** exp(logSoftmax(x)) along `axis` (default -1). Example: `softmax(logits)`. */
export function softmax(x: Node, options: SoftmaxOptions = {}): Node {
  return exp(logSoftmax(x, options));
}
