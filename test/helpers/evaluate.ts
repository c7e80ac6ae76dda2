/** Runs an op-case graph on a given backend: shared by the tests that compare backends. */
import * as adj from "../../src/index.js";
import type { Backend, Node, Tensor } from "../../src/index.js";
import { mulberry32, randomTensor } from "./gradcheck.js";

/**
 * y = build(inputs) and the gradients of sum(u * y) wrt every input (u fixed by a seed), all
 * computed with `backend` active and copied out, so later runs cannot touch them.
 */
export function evaluateOn(
  backend: Backend,
  build: (...xs: Node[]) => Node,
  inputs: Tensor[],
): Tensor[] {
  const previous = adj.setBackend(backend);
  try {
    const xs = inputs.map((_, i) => adj.variable(`x${i}`));
    const y = build(...xs);
    const feeds = new Map<Node, Tensor>(xs.map((x, i) => [x, inputs[i]]));
    const [value] = new adj.Evaluator([y]).run(feeds);
    const u = adj.variable("u");
    feeds.set(u, randomTensor(mulberry32(5), value.shape).clone({ dtype: value.dtype }));
    const grads = adj.gradients(adj.sum(adj.mul(u, y)), xs);
    return [value, ...new adj.Evaluator(grads).run(feeds)].map((t) => t.clone());
  } finally {
    adj.setBackend(previous);
  }
}

/** Deterministic uniform values in [-1, 1) from a seed (mulberry32 variant). */
export function uniformValues(size: number, seed: number): number[] {
  let s = seed >>> 0;
  const out = new Array<number>(size);
  for (let i = 0; i < size; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  }
  return out;
}
