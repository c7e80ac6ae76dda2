/**
 * The course notes' own tests (log, exp, sum over axis 1, broadcast with a target node, gradient
 * of gradient) and the contract they rely on: `op.gradient(node, outputGrad)` returns one Node per
 * input, zerosLike where an input gets no gradient. Expected values from the formulas.
 */
import { describe, expect, it } from "vitest";
import {
  broadcastTo,
  Evaluator,
  exp,
  gradients,
  greater,
  log,
  Node,
  onesLike,
  sum,
  tensor,
  variable,
  where,
  zerosLike,
} from "../../src/index.js";
import { step } from "../../src/graph/ops/elementwise.js";
import { assertClose, t } from "./helpers.js";

const X = [
  [0.5, 1.5, 2.0],
  [3.0, 0.25, 1.0],
];
const G = [
  [1.0, -2.0, 0.5],
  [0.25, 4.0, -1.0],
];
const map2 = (a: number[][], f: (v: number, i: number, j: number) => number) =>
  a.map((row, i) => row.map((v, j) => f(v, i, j)));

describe("the notes' tests", () => {
  it("log: value log x, gradient g / x", () => {
    const [x, yGrad] = [variable("x"), variable("y_grad")];
    const y = log(x);
    const [xGrad] = y.op.gradient(y, yGrad);
    const [yv, gv] = new Evaluator([y, xGrad]).run(
      new Map([
        [x, t(X)],
        [yGrad, t(G)],
      ]),
    );
    assertClose(yv, map2(X, Math.log));
    assertClose(
      gv,
      map2(X, (v, i, j) => G[i][j] / v),
    );
  });

  it("exp: value e^x, gradient g e^x", () => {
    const [x, yGrad] = [variable("x"), variable("y_grad")];
    const y = exp(x);
    const [xGrad] = y.op.gradient(y, yGrad);
    const [yv, gv] = new Evaluator([y, xGrad]).run(
      new Map([
        [x, t(X)],
        [yGrad, t(G)],
      ]),
    );
    assertClose(yv, map2(X, Math.exp));
    assertClose(
      gv,
      map2(X, (v, i, j) => G[i][j] * Math.exp(v)),
    );
  });

  it("sum over axis 1: row sums; the gradient broadcasts g back over each row", () => {
    const [x, yGrad] = [variable("x"), variable("y_grad")];
    const y = sum(x, { axis: 1 });
    const [xGrad] = y.op.gradient(y, yGrad);
    const [yv, gv] = new Evaluator([y, xGrad]).run(
      new Map([
        [x, t(X)],
        [yGrad, t([2, -3])],
      ]),
    );
    assertClose(
      yv,
      X.map((row) => row.reduce((a, b) => a + b)),
    );
    assertClose(
      gv,
      map2(X, (_v, i) => [2, -3][i]),
    );
  });

  it("broadcast to a target node along axis 0: gradient summed over axis 0, the target's zeros", () => {
    const [x, target, yGrad] = [variable("x"), variable("target"), variable("y_grad")];
    const y = broadcastTo(x, target, { axis: 0 });
    const [xGrad, targetGrad] = y.op.gradient(y, yGrad);
    expect(targetGrad).toBeInstanceOf(Node);
    const g = [
      [1, 2, 3],
      [4, 5, 6],
      [7, 8, 9],
    ];
    const [yv, xg, tg] = new Evaluator([y, xGrad, targetGrad]).run(
      new Map([
        [x, t([[1, 2, 3]])],
        [target, t(map2(g, () => 0))],
        [yGrad, t(g)],
      ]),
    );
    assertClose(yv, [
      [1, 2, 3],
      [1, 2, 3],
      [1, 2, 3],
    ]);
    assertClose(xg, [[1 + 4 + 7, 2 + 5 + 8, 3 + 6 + 9]]);
    assertClose(
      tg,
      map2(g, () => 0),
    );
  });

  it("gradient of gradient: d2/dx2 of x^3 is 6x", () => {
    const x = variable("x");
    const y = x.mul(x).mul(x);
    const [dx] = gradients(y, [x]);
    const [ddx] = gradients(dx, [x]);
    const [dv, ddv] = new Evaluator([dx, ddx]).run(new Map([[x, t(X)]]));
    assertClose(
      dv,
      map2(X, (v) => 3 * v * v),
    );
    assertClose(
      ddv,
      map2(X, (v) => 6 * v),
    );
  });
});

describe("op.gradient keeps the course's contract: a Node per input, zeros where none", () => {
  const x = variable("x");
  const b = variable("b");
  const c = variable("c");
  const yGrad = variable("y_grad");
  const feeds = new Map([
    [x, tensor([1, -2, 3])],
    [b, tensor([4, 5, -6])],
    [c, tensor([1, 0, 1])],
    [yGrad, tensor([1, 1, 1])],
  ]);
  const cases: [string, Node][] = [
    ["zerosLike", zerosLike(x)],
    ["onesLike", onesLike(x)],
    ["greater", greater(x, b)],
    ["step", step(x)],
    ["where (its condition)", where(c, x, b)],
  ];
  for (const [name, y] of cases) {
    it(`${name}: every input gets a Node that evaluates to zeros where it has no gradient`, () => {
      const grads = y.op.gradient(y, yGrad);
      expect(grads).toHaveLength(y.inputs.length);
      for (const grad of grads) expect(grad).toBeInstanceOf(Node);
      const values = new Evaluator(grads).run(feeds);
      values.forEach((value, k) => {
        const input = new Evaluator([y.inputs[k]]).run(feeds)[0];
        expect(value.shape).toEqual(input.shape);
      });
      // The inputs that get no gradient: their node evaluates to zeros.
      if (name !== "where (its condition)") {
        for (const value of values) expect([...value.data]).toEqual([0, 0, 0]);
      } else {
        expect([...values[0].data]).toEqual([0, 0, 0]);
        expect([...values[1].data]).toEqual([1, 0, 1]);
        expect([...values[2].data]).toEqual([0, 1, 0]);
      }
    });
  }
});
