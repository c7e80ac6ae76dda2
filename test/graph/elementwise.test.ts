/** abs, minimum, maximum, greater and where: values and the gradients at their kinks and ties. */
import { expect, it } from "vitest";
import * as adj from "../../src/index.js";

const x = adj.variable("x");
const y = adj.variable("y");
const run = (nodes: adj.Node[], xs: number[], ys: number[]) =>
  new adj.Evaluator(nodes)
    .run(
      new Map([
        [x, adj.tensor(xs)],
        [y, adj.tensor(ys)],
      ]),
    )
    .map((t) => t.toArray());

it("maximum and minimum send half the gradient to each side of a tie (as PyTorch and JAX)", () => {
  for (const op of [adj.maximum, adj.minimum]) {
    const [dx, dy] = adj.gradients(adj.sum(op(x, y)), [x, y]);
    const [gx, gy] = run([dx, dy], [1, 2, 3], [3, 2, 1]);
    const first = op === adj.maximum ? [0, 0.5, 1] : [1, 0.5, 0];
    expect(gx).toEqual(first);
    expect(gy).toEqual(first.map((v) => 1 - v));
  }
});

it("abs: |x|, gradient sign(x) with 0 at 0", () => {
  const [dx] = adj.gradients(adj.sum(adj.abs(x)), [x]);
  expect(run([adj.abs(x), dx], [-2, 0, 3], [0, 0, 0])).toEqual([
    [2, 0, 3],
    [-1, 0, 1],
  ]);
});

it("where selects by any non-zero condition and routes the gradient to the chosen side", () => {
  const c = adj.variable("c");
  const w = adj.where(c, x, y);
  const [dx, dy] = adj.gradients(adj.sum(w), [x, y]);
  const values = new adj.Evaluator([w, dx, dy, adj.greater(x, y)])
    .run(
      new Map([
        [c, adj.tensor([0, -0.5, 2])],
        [x, adj.tensor([1, 2, 3])],
        [y, adj.tensor([10, 20, 30])],
      ]),
    )
    .map((t) => t.toArray());
  expect(values).toEqual([
    [10, 2, 3],
    [0, 1, 1],
    [1, 0, 0],
    [0, 0, 0],
  ]);
});
