/** What a custom op's rules return is checked, and their failures name the op and its node. */
import { describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";
import type { Node, NodeType, Tensor } from "../../src/index.js";

let serial = 0;
/** A fresh op name (the registry refuses a name twice). */
const fresh = (base: string) => `${base}_${serial++}`;
const same = ([x]: readonly NodeType[]) => x;
const identityCompute = (_node: Node, [x]: Tensor[]) => x.clone();

describe("defineOp checks its spec", () => {
  it("refuses a missing compute or gradient, naming the op and the key", () => {
    const spec = { name: "noCompute", gradient: (_n: Node, g: Node) => [g] };
    expect(() => adj.defineOp(spec as unknown as adj.CustomOpSpec)).toThrow(
      /op "noCompute": compute must be a function, got undefined/,
    );
    const spec2 = { name: "noGradient", compute: identityCompute };
    expect(() => adj.defineOp(spec2 as unknown as adj.CustomOpSpec)).toThrow(
      /op "noGradient": gradient must be a function/,
    );
  });
  it("refuses unknown keys and a non-array check", () => {
    const base = {
      name: fresh("k"),
      compute: identityCompute,
      gradient: (_n: Node, g: Node) => [g],
    };
    expect(() => adj.defineOp({ ...base, grad: 1 } as unknown as adj.CustomOpSpec)).toThrow(
      /unknown option "grad"/,
    );
    expect(() => adj.defineOp(base, { check: 3 as unknown as Tensor[][] })).toThrow(
      /check must be an array/,
    );
    expect(() => adj.defineOp(base, { checks: [] } as unknown as { check: Tensor[][] })).toThrow(
      /unknown option "checks"/,
    );
  });
});

describe("results that break the op's own type rule", () => {
  const x = adj.variable("x", { shape: [2, 3], dtype: "float64" });
  const x0 = adj.tensor([
    [1, 2, 3],
    [4, 5, 6],
  ]);
  it("compute of the wrong shape or dtype is named at the node", () => {
    const wrongShape = adj.defineOp({
      name: fresh("wrongShape"),
      type: same,
      compute: (_n, [v]) => adj.tensor([...v.data]),
      gradient: (_n, g) => [g],
    });
    expect(() => new adj.Evaluator([adj.apply(wrongShape, [x])]).run({ x: x0 })).toThrow(
      /wrongShape_\d+\(x\): compute returned float64 \[6\], its type rule says float64 \[2,3\]/,
    );
    const wrongDtype = adj.defineOp({
      name: fresh("wrongDtype"),
      type: same,
      compute: (_n, [v]) => v.clone({ dtype: "float32" }),
      gradient: (_n, g) => [g],
    });
    expect(() => new adj.Evaluator([adj.apply(wrongDtype, [x])]).run({ x: x0 })).toThrow(
      /compute returned float32 \[2,3\], its type rule says float64/,
    );
    const notTensor = adj.defineOp({
      name: fresh("notTensor"),
      compute: () => [1, 2] as unknown as Tensor,
      gradient: (_n, g) => [g],
    });
    expect(() => new adj.Evaluator([adj.apply(notTensor, [x])]).run({ x: x0 })).toThrow(
      /compute returned an array/,
    );
  });
  it("a gradient of another shape than its input, a wrong count, a non-Node", () => {
    const cases: [string, (node: Node, g: Node) => (Node | null)[], RegExp][] = [
      [
        "badShape",
        (_n, g) => [adj.sum(g, { axis: 0 })],
        /while differentiating badShape_\d+\(x\): the gradient for input 0 \(x\) has shape \[3\], expected \[2,3\]/,
      ],
      ["badCount", (_n, g) => [g, g], /returned 2 gradients for 1 inputs/],
      [
        "badKind",
        () => [3 as unknown as Node],
        /the gradient rule's result 0 must be a Node or null, got number 3/,
      ],
      [
        "throws",
        () => {
          throw new Error("boom");
        },
        /while differentiating throws_\d+\(x\): boom/,
      ],
    ];
    for (const [name, gradient, message] of cases) {
      const op = adj.defineOp({
        name: fresh(name),
        type: same,
        compute: identityCompute,
        gradient,
      });
      expect(() => adj.gradients(adj.sum(adj.apply(op, [x])), [x])).toThrow(message);
    }
  });
  it("a forward rule of the wrong shape or kind", () => {
    const op = adj.defineOp({
      name: fresh("badJvp"),
      type: same,
      compute: identityCompute,
      gradient: (_n, g) => [g],
      jvp: (_n, [t]) => adj.sum(t!),
    });
    expect(() => adj.jvp([adj.apply(op, [x])], [x], [adj.onesLike(x)])).toThrow(
      /while pushing tangents through badJvp_\d+\(x\): the tangent \(of the output\) has shape \[\], expected \[2,3\]/,
    );
    const op2 = adj.defineOp({
      name: fresh("badJvpKind"),
      type: same,
      compute: identityCompute,
      gradient: (_n, g) => [g],
      jvp: () => "t" as unknown as Node,
    });
    expect(() => adj.jvp([adj.apply(op2, [x])], [x], [adj.onesLike(x)])).toThrow(
      /forward rule must return a Node or null, got string/,
    );
  });
  it("a custom op's null gradient becomes zeros through op.gradient, and is skipped by the sweep", () => {
    const op = adj.defineOp({
      name: fresh("noGrad"),
      type: same,
      compute: identityCompute,
      gradient: () => [null],
    });
    const y = adj.apply(op, [x]);
    const [dx] = y.op.gradient(y, adj.onesLike(y));
    const [dxValue] = new adj.Evaluator([dx]).run({ x: x0 });
    expect([...dxValue.data]).toEqual([0, 0, 0, 0, 0, 0]);
    const [swept] = adj.gradients(adj.sum(y), [x]);
    expect(swept.op.name).toBe("zerosLike");
  });
});

describe("the Evaluator", () => {
  it("refuses to be re-entered from an op's compute", () => {
    const x = adj.variable("x");
    const holder: { evaluator?: adj.Evaluator } = {};
    const op = adj.defineOp({
      name: fresh("reenter"),
      compute: (_n, [v]) => holder.evaluator!.run({ x: v })[0],
      gradient: (_n, g) => [g],
    });
    holder.evaluator = new adj.Evaluator([adj.apply(op, [x])]);
    expect(() => holder.evaluator!.run({ x: adj.tensor([1]) })).toThrow(/already running/);
    // ...and works again afterwards.
    const plain = new adj.Evaluator([x.add(1)]);
    expect(plain.run({ x: adj.tensor([1]) })[0].toArray()).toEqual([2]);
  });
  it("checks a fed intermediate against its known type", () => {
    const x = adj.variable("x", { shape: [null, 3], dtype: "float64" });
    const h = adj.exp(x);
    const y = adj.sum(h);
    const feeds = (value: Tensor) =>
      new Map<Node, Tensor>([
        [x, adj.zeros([2, 3])],
        [h, value],
      ]);
    expect(() => new adj.Evaluator([y]).run(feeds(adj.zeros([2, 4])))).toThrow(
      /fed shape \[2,4\], known from exp's type rule \[null,3\]/,
    );
    expect(() => new adj.Evaluator([y]).run(feeds(adj.zeros([2, 3], "float32")))).toThrow(
      /fed dtype float32, known from exp's type rule float64/,
    );
    expect(new adj.Evaluator([y]).run(feeds(adj.full([2, 3], 2)))[0].item()).toBe(12);
  });
});
