/**
 * Long chains run in linear time, through the buffer pool: a chain ten times longer costs about
 * ten times more, never a hundred (a free-list scan once made a 200k-node chain 28x slower than
 * with the pool off). One chain cycles through every unary op, so each op's rules are in it.
 */
import { expect, it } from "vitest";
import * as adj from "../../src/index.js";
import { poolingEnabled } from "../../src/tensor/tensor.js";
import type { Node } from "../../src/index.js";

// Values stay finite around the cycle: sigmoid (0,1) -> sqrt -> tanh -> exp -> log -> neg
// -> relu (0) ... (relu's rule brings step) each op once per lap; constants and pow keep it bounded.
const UNARY: ((x: Node) => Node)[] = [
  adj.sigmoid,
  adj.sqrt,
  adj.tanh,
  adj.exp,
  adj.log,
  adj.neg,
  adj.relu,
  (x) => adj.addByConst(x, 0.5),
  (x) => adj.mulByConst(x, 0.9),
  (x) => adj.divByConst(x, 1.1),
  (x) => adj.pow(x, 2),
];

/** Seconds to build, differentiate, plan and run a chain of `length` unary ops. */
function chainSeconds(length: number): number {
  const start = performance.now();
  const x = adj.variable("x");
  let y = x;
  for (let i = 0; i < length; i++) y = UNARY[i % UNARY.length](y);
  const [dx] = adj.gradients(adj.sum(y), [x]);
  const [value, grad] = new adj.Evaluator([y, dx]).run(
    new Map([[x, adj.tensor([0.5, 0.25, 0.125, 2])]]),
  );
  expect(value.data.every(Number.isFinite)).toBe(true);
  expect(grad.shape).toEqual([4]);
  return (performance.now() - start) / 1000;
}

it("a 100k-node chain of every unary op and its gradient costs < 20x the 10k chain", () => {
  chainSeconds(2_000); // warm-up: compile the code paths first
  const short = Math.min(chainSeconds(10_000), chainSeconds(10_000));
  // The faster of two runs of each: a busy machine slows one run, rarely both.
  const long = Math.min(chainSeconds(100_000), chainSeconds(100_000));
  expect(poolingEnabled()).toBe(true);
  // Linear is ~10x here; the free-list scan this guards against made it 35x.
  expect(long / short).toBeLessThan(20);
});
