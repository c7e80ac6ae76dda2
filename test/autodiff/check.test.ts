/** checkGradients: passes correct graphs, and names the op whose rule is wrong. */
import { describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";
import type { Node, Op, Tensor } from "../../src/index.js";
import { mulberry32, randomTensor } from "../helpers/gradcheck.js";
import { opCases } from "../helpers/op-cases.js";

const random = mulberry32(11);
const R = (...shape: number[]) => randomTensor(random, shape);

/** exp with the classic mistake: its gradient is g * x instead of g * e^x. */
const myExpOp: Op = {
  name: "myExp",
  type: ([x]) => x,
  compute: (_node, [x]) => adj.backend().unary("exp", x),
  gradient: (node, g) => [adj.mul(g, node.inputs[0])],
};
/** a + b with the broadcast reduction forgotten: b's gradient keeps a's shape. */
const badAddOp: Op = {
  name: "badAdd",
  type: ([a]) => a,
  compute: (_node, [a, b]) => adj.backend().binary("add", a, b),
  gradient: (_node, g) => [g, adj.mul(g, adj.onesLike(g))],
};
/** A @ B with B's gradient transposed the wrong way: A^T g becomes g^T A (for square shapes). */
const badMatmulOp: Op = {
  name: "badMatmul",
  type: () => ({ shape: null, dtype: null }),
  compute: (_node, [a, b]) => adj.backend().matmul(a, b, false, false),
  gradient: (node, g) => [
    adj.matmul(g, node.inputs[1], { transB: true }),
    adj.matmul(g, node.inputs[0], { transA: true }),
  ],
};
const apply = (op: Op, ...inputs: Node[]) =>
  new adj.Node(inputs, op, {}, `${op.name}(${inputs.map((i) => i.name).join(",")})`);

describe("checkGradients", () => {
  const W = adj.variable("W");
  const Z = adj.variable("Z");
  const X = adj.variable("X");
  const b = adj.variable("b");
  const feeds = new Map<Node, Tensor>([
    [W, R(3, 3)],
    [Z, R(3, 3)],
    [X, R(3, 3)],
    [b, R(3)],
  ]);

  it("passes a correct model, both modes, first and second order, and reports each input", () => {
    const loss = adj.sum(adj.tanh(adj.matmul(X, W).add(b)).mul(Z));
    const report = adj.checkGradients(loss, feeds, [W, b], { order: 2 });
    expect(report.filter((e) => e.order === 1).map((e) => `${e.input}:${e.mode}`)).toEqual([
      "W:fwd",
      "W:rev",
      "b:fwd",
      "b:rev",
    ]);
    expect(report.some((e) => e.order === 2)).toBe(true);
    for (const entry of report) expect(entry.maxAbsError).toBeLessThan(1e-6);
  });

  it.each([
    [
      "a wrong exp rule",
      () => adj.sum(apply(myExpOp, Z).mul(W)),
      [Z],
      /^myExp\(Z\): gradient rule wrong for input 0: max abs error [\d.e+-]+ at element \d+ \(expected [\d.e+-]+, got [\d.e+-]+\)$/,
    ],
    [
      "a missing broadcast reduction",
      () => adj.sum(apply(badAddOp, X, b).mul(W)),
      [X, b],
      /^badAdd\(X, b\): gradient rule wrong for input 1/,
    ],
    [
      "a transposed matmul gradient",
      () => adj.sum(apply(badMatmulOp, X, W).mul(Z)),
      [W],
      /^badMatmul\(X, W\): gradient rule wrong for input 1/,
    ],
  ])("names %s", (_what, build, wrt, message) => {
    const loss = build();
    let error: unknown;
    try {
      adj.checkGradients(loss, feeds, wrt as Node[]);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(adj.GradientCheckError);
    expect((error as Error).message).toMatch(message);
  });

  it("runs on a user graph of 1,000 nodes", () => {
    const x = adj.variable("x");
    let y: Node = x;
    for (let i = 0; i < 1000; i++) y = i % 2 === 0 ? adj.tanh(y) : adj.mulByConst(y, 1.01);
    const report = adj.checkGradients(adj.sum(y), new Map([[x, R(4)]]), [x]);
    expect(report).toHaveLength(2);
  });
});

describe("checkGradients passes every correct op of the op table", () => {
  it.each(opCases.map((c) => [c.name, c] as const))("%s", (_, c) => {
    const xs = c.inputs.map((_, i) => adj.variable(`x${i}`));
    const y = c.build(...xs);
    const feeds = new Map<Node, Tensor>(xs.map((x, i) => [x, c.inputs[i]]));
    // A projection to a number: sum(u * y), u fixed by the case.
    const [value] = new adj.Evaluator([y]).run(feeds);
    const u = adj.variable("u");
    feeds.set(u, randomTensor(mulberry32(1), value.shape));
    const report = adj.checkGradients(adj.sum(adj.mul(u, y)), feeds, xs);
    expect(report).toHaveLength(2 * xs.length);
  });
});
