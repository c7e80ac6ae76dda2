/** The classic ML-systems exercise's cases, with expected values worked out by hand. */
import { describe, expect, it } from "vitest";
import {
  broadcastTo,
  Evaluator,
  exp,
  gradients,
  log,
  matmul,
  mul,
  sum,
  tensor,
  variable,
  zeros,
  type Node,
  type Tensor,
} from "../../src/index.js";
import { assertClose } from "../helpers/gradcheck.js";

/** Runs `nodes` with the given variable values. */
function run(nodes: Node[], feeds: [Node, Tensor][]): Tensor[] {
  return new Evaluator(nodes).run(new Map(feeds));
}

/** Row-major entries of a plain matrix, for comparing with Tensor data. */
const flat = (rows: number[][]) => rows.flat();

describe("classic exercise", () => {
  it("x1*x2 + x1: value and gradients", () => {
    const x1 = variable("x1");
    const x2 = variable("x2");
    const y = x1.mul(x2).add(x1);
    const [g1, g2] = gradients(y, [x1, x2]);
    const a = [2, 3, 4];
    const b = [5, 6, 7];
    const [yv, g1v, g2v] = run(
      [y, g1, g2],
      [
        [x1, tensor(a)],
        [x2, tensor(b)],
      ],
    );
    expect(yv.toArray()).toEqual([2 * 5 + 2, 3 * 6 + 3, 4 * 7 + 4]);
    expect(g1v.toArray()).toEqual([5 + 1, 6 + 1, 7 + 1]); // x2 + 1
    expect(g2v.toArray()).toEqual(a); // x1
  });

  it("matmul(x1, x2, {transB: true}).div(10).mul(x3): gradients", () => {
    const x1 = variable("x1");
    const x2 = variable("x2");
    const x3 = variable("x3");
    const y = matmul(x1, x2, { transB: true }).div(10).mul(x3);
    const A = [
      [1, 2, 3],
      [4, 5, 6],
    ];
    const B = [
      [7, 8, 9],
      [10, 11, 12],
    ];
    const C = [
      [1, -1],
      [2, 0.5],
    ];
    const grads = gradients(y, [x1, x2, x3]);
    const [yv, d1, d2, d3] = run(
      [y, ...grads],
      [
        [x1, tensor(A)],
        [x2, tensor(B)],
        [x3, tensor(C)],
      ],
    );
    // y[i][j] = (sum_k A[i][k] B[j][k]) / 10 * C[i][j]; the upstream gradient is all ones.
    const dot = (i: number, j: number) => A[i].reduce((s, a, k) => s + a * B[j][k], 0);
    const Y = [0, 1].map((i) => [0, 1].map((j) => (dot(i, j) / 10) * C[i][j]));
    // dy/dA[i][k] = sum_j C[i][j] B[j][k] / 10; dy/dB[j][k] = sum_i C[i][j] A[i][k] / 10.
    const D1 = [0, 1].map((i) =>
      [0, 1, 2].map((k) => (C[i][0] * B[0][k] + C[i][1] * B[1][k]) / 10),
    );
    const D2 = [0, 1].map((j) =>
      [0, 1, 2].map((k) => (C[0][j] * A[0][k] + C[1][j] * A[1][k]) / 10),
    );
    const D3 = [0, 1].map((i) => [0, 1].map((j) => dot(i, j) / 10));
    // Spelled out once: dy/dA[0][0] = (1*7 + -1*10) / 10 = -0.3.
    expect(D1[0][0]).toBeCloseTo(-0.3, 15);
    assertClose(yv.data, flat(Y), "y", 1e-14, 1e-14);
    expect([...d1.shape, ...d2.shape, ...d3.shape]).toEqual([2, 3, 2, 3, 2, 2]);
    assertClose(d1.data, flat(D1), "d/dx1", 1e-14, 1e-14);
    assertClose(d2.data, flat(D2), "d/dx2", 1e-14, 1e-14);
    assertClose(d3.data, flat(D3), "d/dx3", 1e-14, 1e-14);
  });

  it("second derivatives of x1*x1 + x1*x2: 2, 1, 1 and all-zero", () => {
    const x1 = variable("x1");
    const x2 = variable("x2");
    const y = x1.mul(x1).add(x1.mul(x2));
    const [g1, g2] = gradients(y, [x1, x2]); // 2 x1 + x2, x1
    const [h11, h12] = gradients(g1, [x1, x2]);
    const [h21, h22] = gradients(g2, [x1, x2]);
    const feeds: [Node, Tensor][] = [
      [x1, tensor([[1, -2, 3]])],
      [x2, tensor([[4, 5, -6]])],
    ];
    const [g1v, g2v, v11, v12, v21, v22] = run([g1, g2, h11, h12, h21, h22], feeds);
    expect(g1v.toArray()).toEqual([[2 * 1 + 4, 2 * -2 + 5, 2 * 3 - 6]]);
    expect(g2v.toArray()).toEqual([[1, -2, 3]]);
    expect(v11.toArray()).toEqual([[2, 2, 2]]);
    expect(v12.toArray()).toEqual([[1, 1, 1]]);
    expect(v21.toArray()).toEqual([[1, 1, 1]]);
    expect(v22.toArray()).toEqual([[0, 0, 0]]);
  });

  /** dsum(u * f(x))/dx for a fixed upstream u, fed as a variable. */
  function upstreamGradient(
    f: (x: Node) => Node,
    x: Tensor,
    upstream: Tensor,
  ): { value: Tensor; grad: Tensor } {
    const xv = variable("x");
    const u = variable("u");
    const y = f(xv);
    const [g] = gradients(sum(mul(u, y)), [xv]);
    const [value, grad] = run(
      [y, g],
      [
        [xv, x],
        [u, upstream],
      ],
    );
    return { value, grad };
  }

  it("log: gradient is g / x", () => {
    const X = [
      [1, 2, 0.5],
      [3, 0.25, 4],
    ];
    const G = [
      [1, -2, 3],
      [0.5, 4, -1],
    ];
    const { value, grad } = upstreamGradient(log, tensor(X), tensor(G));
    assertClose(value.data, flat(X).map(Math.log), "log", 1e-15, 0);
    expect(grad.toArray()).toEqual([
      [1 / 1, -2 / 2, 3 / 0.5],
      [0.5 / 3, 4 / 0.25, -1 / 4],
    ]);
  });

  it("exp: gradient is e^x * g, not x * g", () => {
    const X = [
      [0, 1, -1],
      [2, 0.5, -3],
    ];
    const G = [
      [1, 2, 3],
      [4, 5, 6],
    ];
    const { value, grad } = upstreamGradient(exp, tensor(X), tensor(G));
    const expected = flat(X).map((x, i) => Math.exp(x) * flat(G)[i]);
    assertClose(value.data, flat(X).map(Math.exp), "exp", 1e-15, 0);
    assertClose(grad.data, expected, "d exp", 1e-15, 0);
    // The classic mistake would give x * g: 0 at x = 0, where e^0 * g = g.
    expect(grad.data[0]).toBe(1);
  });

  it("sum over axis 1 with upstream [10, 15]", () => {
    const { value, grad } = upstreamGradient(
      (x) => sum(x, { axis: 1 }),
      tensor([
        [1, 2, 3],
        [4, 5, 6],
      ]),
      tensor([10, 15]),
    );
    expect(value.toArray()).toEqual([6, 15]);
    expect(grad.toArray()).toEqual([
      [10, 10, 10],
      [15, 15, 15],
    ]);
  });

  it("broadcastTo([[1,2,3]], zeros(3,3) node, {axis: 0}) with upstream rows [10,20,30]", () => {
    const x = variable("x");
    const target = variable("target");
    const u = variable("u");
    const y = broadcastTo(x, target, { axis: 0 });
    const [gx, gt] = gradients(sum(mul(u, y)), [x, target]);
    const row = [10, 20, 30];
    const [yv, gxv, gtv] = run(
      [y, gx, gt],
      [
        [x, tensor([[1, 2, 3]])],
        [target, zeros([3, 3])],
        [u, tensor([row, row, row])],
      ],
    );
    expect(yv.toArray()).toEqual([
      [1, 2, 3],
      [1, 2, 3],
      [1, 2, 3],
    ]);
    expect(gxv.shape).toEqual([1, 3]);
    expect(gxv.toArray()).toEqual([[30, 60, 90]]);
    expect(gtv.toArray()).toEqual(zeros([3, 3]).toArray());
  });

  it("broadcastTo: bias (k,) with axis 0 -> (batch, k)", () => {
    const b = variable("b");
    const logits = variable("logits");
    const y = broadcastTo(b, logits, { axis: 0 });
    const [yv] = run(
      [y],
      [
        [b, tensor([1, 2, 3])],
        [logits, zeros([2, 3])],
      ],
    );
    expect(yv.toArray()).toEqual([
      [1, 2, 3],
      [1, 2, 3],
    ]);
  });

  it("broadcastTo: (4,) with axis 1 -> (4, 3)", () => {
    const v = variable("v");
    const y = broadcastTo(v, [4, 3], { axis: 1 });
    const [yv] = run([y], [[v, tensor([1, 2, 3, 4])]]);
    expect(yv.toArray()).toEqual([
      [1, 1, 1],
      [2, 2, 2],
      [3, 3, 3],
      [4, 4, 4],
    ]);
    // Without axis the NumPy rule puts the missing axis first: (4,) cannot reach (4,3).
    expect(() => run([broadcastTo(v, [4, 3])], [[v, tensor([1, 2, 3, 4])]])).toThrow(
      "broadcastTo(v): cannot broadcast [4] (as [1,4], axis 0) to [4,3]",
    );
  });
});
