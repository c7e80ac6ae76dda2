/** Types known when the graph is built: every op's type rule agrees with what compute returns. */
import { describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";
import type { Dim, Node, Tensor } from "../../src/index.js";
import { shapeFits } from "../../src/graph/types.js";
import { lowerGraph, rebuildGraph } from "../../src/runtime/plan.js";
import { topoSort } from "../../src/graph/topo.js";
import { mulberry32, randomTensor } from "../helpers/gradcheck.js";
import { opCases } from "../helpers/op-cases.js";
import { makeOp, registerOp, type OpSpec } from "../../src/graph/op.js";

/** A test op registered under a name of its own (not a built-in one). */
const defineOp = <A extends object>(spec: OpSpec<A>) => registerOp(makeOp(spec));

const BROADCAST = { shape: "broadcast", dtype: "promote" } as const;

/** Every node of y and of the gradients of sum(u * y), evaluated: [node, value] pairs. */
function typedAndComputed(
  build: (...xs: Node[]) => Node,
  inputs: Tensor[],
  declare: (t: Tensor) => { shape?: Dim[]; dtype?: "float32" | "float64" },
): [Node, Tensor][] {
  const xs = inputs.map((t, i) => adj.variable(`x${i}`, declare(t)));
  const y = build(...xs);
  const feeds = new Map<Node, Tensor>(xs.map((x, i) => [x, inputs[i]]));
  const [value] = new adj.Evaluator([y]).run(feeds);
  const u = adj.variable("u", declare(value));
  feeds.set(u, randomTensor(mulberry32(3), value.shape).clone({ dtype: value.dtype }));
  const grads = adj.gradients(adj.sum(adj.mul(u, y)), xs);
  const nodes = topoSort([y, ...grads]).filter((n) => !adj.isPlaceholder(n));
  const values = new adj.Evaluator(nodes).run(feeds);
  return nodes.map((n, i) => [n, values[i]]);
}

describe.each(opCases)("$name", ({ build, inputs }) => {
  it("declared shapes and dtypes: every node's type is exactly its computed shape and dtype", () => {
    for (const [node, value] of typedAndComputed(build, inputs, (t) => ({
      shape: [...t.shape],
      dtype: t.dtype,
    }))) {
      expect(node.shape, node.name).toEqual(value.shape);
      expect(node.dtype, node.name).toBe(value.dtype);
    }
  });

  it("float32 inputs with an unknown leading dimension: types fit the values", () => {
    const f32 = inputs.map((t) => t.clone({ dtype: "float32" }));
    for (const [node, value] of typedAndComputed(build, f32, (t) => ({
      shape: t.shape.map((d, i) => (i === 0 ? null : d)),
      dtype: t.dtype,
    }))) {
      expect(
        shapeFits(value.shape, node.shape),
        `${node.name}: ${JSON.stringify(node.shape)} vs [${value.shape}]`,
      ).toBe(true);
      expect(node.dtype, node.name).toBe(value.dtype);
    }
  });

  it("undeclared variables: nothing wrong is claimed", () => {
    for (const [node, value] of typedAndComputed(build, inputs, () => ({}))) {
      expect(shapeFits(value.shape, node.shape), node.name).toBe(true);
      expect(node.dtype === null || node.dtype === value.dtype, node.name).toBe(true);
    }
  });
});

describe("build-time errors point at the line that built the graph", () => {
  const X = adj.variable("X", { shape: [null, 64], dtype: "float32" });
  const W = adj.variable("W", { shape: [65, 10], dtype: "float32" });
  it.each([
    [
      "matmul",
      () => adj.matmul(X, W),
      "matmul(X, W): inner dimensions differ: [null,64] @ [65,10]",
    ],
    [
      "matmul transB",
      () => adj.matmul(X, W, { transB: true }),
      "matmul(X, W): inner dimensions differ: [null,64] @ [65,10]",
    ],
    [
      "matmul rank",
      () => adj.matmul(adj.sum(X), W),
      "matmul(sum(X), W): expects inputs of rank 2 or more, got [] @ [65,10]",
    ],
    ["add", () => adj.add(X, W), "add(X, W): shapes [null,64] and [65,10] do not broadcast"],
    ["sum axis", () => adj.sum(X, { axis: 3 }), "sum(X): axis 3 is out of range for rank 2"],
    ["reshape", () => adj.reshape(W, [7, -1]), "reshape(W): cannot reshape [65,10] to [7,-1]"],
    [
      "transpose",
      () => adj.transpose(W, [0, 0]),
      "transpose(W): axes [0,0] are not a permutation of 2 axes",
    ],
    [
      "broadcastTo",
      () => adj.broadcastTo(W, [3, 10]),
      "broadcastTo(W): cannot broadcast [65,10] to [3,10]",
    ],
    [
      "softmaxCrossEntropy",
      () => adj.softmaxCrossEntropy(X, W),
      "softmaxCrossEntropy(X, W): logits and targets shapes differ: [null,64] vs [65,10]",
    ],
  ])("%s", (_what, build, message) => {
    expect(build).toThrow(message);
  });

  it("what is unknown at build time is still checked when it runs", () => {
    const A = adj.variable("A");
    const y = adj.matmul(A, W);
    // A's rank is unknown: the product may be 2-D or batched, so no shape is claimed.
    expect(y.shape).toBe(null);
    expect(y.dtype).toBe(null);
    expect(() =>
      new adj.Evaluator([y]).run(
        new Map([
          [A, adj.zeros([2, 3], "float32")],
          [W, adj.zeros([65, 10], "float32")],
        ]),
      ),
    ).toThrow(/inner dimensions differ: \[2,3\] @ \[65,10\]/);
  });

  it("types flow through a model: logits [null,10] float32, the loss 0-d", () => {
    const b = adj.variable("b", { shape: [10], dtype: "float32" });
    const W2 = adj.variable("W2", { shape: [64, 10], dtype: "float32" });
    const Y = adj.variable("Y", { shape: [null, 10], dtype: "float32" });
    const logits = adj.matmul(X, W2).add(b);
    expect(logits.shape).toEqual([null, 10]);
    expect(logits.dtype).toBe("float32");
    const loss = adj.softmaxCrossEntropy(logits, Y).div(32);
    expect(loss.shape).toEqual([]);
    const [dW, db] = adj.gradients(loss, [W2, b]);
    expect(dW.shape).toEqual([64, 10]);
    expect(db.shape).toEqual([10]);
    expect(dW.dtype).toBe("float32");
  });
});

describe("variable() declarations and feed checks", () => {
  it("checks each feed against the declared shape and dtype", () => {
    const X = adj.variable("X", { shape: [null, 64], dtype: "float32" });
    const ev = new adj.Evaluator([adj.sum(X)]);
    expect(ev.run(new Map([[X, adj.ones([3, 64], "float32")]]))[0].item()).toBe(192);
    expect(() => ev.run(new Map([[X, adj.ones([32, 65], "float32")]]))).toThrow(
      "X: fed shape [32,65], declared [null,64]",
    );
    expect(() => ev.run(new Map([[X, adj.ones([64], "float32")]]))).toThrow(
      "X: fed shape [64], declared [null,64]",
    );
    expect(() => ev.run(new Map([[X, adj.ones([2, 64], "float64")]]))).toThrow(
      "X: fed dtype float64, declared float32",
    );
  });

  it("rejects malformed declarations", () => {
    const loose = adj.variable as unknown as (...args: unknown[]) => Node;
    expect(() => loose("X", { shape: [-1, 3] })).toThrow(/shape must be an array of sizes or null/);
    expect(() => loose("X", { dtype: "int8" })).toThrow(
      /dtype must be "float32" or "float64", got "int8"/,
    );
    expect(() => loose("X", { shpae: [1] })).toThrow(/unknown option "shpae"/);
    expect(() => loose("X", [1, 2])).toThrow(/options must be an object/);
  });

  it("a declared type survives lowering to a plan and rebuilding (workers check feeds too)", () => {
    const X = adj.variable("X", { shape: [null, 4], dtype: "float64" });
    const y = adj.mulByConst(X, 2);
    const plan = lowerGraph([y], [X]);
    const rebuilt = rebuildGraph(structuredClone(plan));
    expect(rebuilt.placeholders[0].shape).toEqual([null, 4]);
    expect(rebuilt.outputs[0].shape).toEqual([null, 4]);
    expect(() =>
      new adj.Evaluator(rebuilt.outputs).run(
        new Map([[rebuilt.placeholders[0], adj.zeros([2, 5])]]),
      ),
    ).toThrow("X: fed shape [2,5], declared [null,4]");
  });
});

describe("a gradient rule's null builds nothing", () => {
  it("broadcastTo's target and sumLike's reference get no zerosLike nodes in the backward graph", () => {
    const x = adj.variable("x");
    const t = adj.variable("t");
    const y = adj.sum(adj.broadcastTo(x, t, { axis: 0 }));
    const [dx, dt] = adj.gradients(y, [x, t]);
    // The public result for an input with no gradient is still zerosLike(t)...
    expect(dt.op.name).toBe("zerosLike");
    // ...but nothing on dx's path was built for t.
    expect(topoSort([dx]).filter((n) => n.op.name === "zerosLike")).toEqual([]);
    const [dxValue, dtValue] = new adj.Evaluator([dx, dt]).run(
      new Map([
        [x, adj.tensor([1, 2, 3])],
        [t, adj.zeros([4, 3])],
      ]),
    );
    expect(dxValue.toArray()).toEqual([4, 4, 4]);
    expect(dtValue.toArray()).toEqual(adj.zeros([4, 3]).toArray());
  });
});

describe("type rules derived from an op's sameAs facts", () => {
  const spec = (name: string) => ({
    name,
    compute: (_node: Node, [a, b]: Tensor[]) => adj.backend().binary("add", a, b),
    gradient: () => [null, null],
  });

  it("gives the broadcast shape and the promoted dtype where no rule is written", () => {
    const op = defineOp({ ...spec("derivedBroadcastAdd"), sameAs: BROADCAST });
    const a = adj.variable("a", { shape: [null, 3], dtype: "float32" });
    const b = adj.variable("b", { shape: [3], dtype: "float64" });
    const y = new adj.Node([a, b], op, {}, "y");
    expect(y.shape).toEqual([null, 3]);
    expect(y.dtype).toBe("float64");
    // Incompatible known dims throw when the node is built, naming the op.
    const c = adj.variable("c", { shape: [4] });
    expect(() => new adj.Node([a, c], op, {}, "bad")).toThrow(
      "derivedBroadcastAdd(a, c): shapes [null,3] and [4] do not broadcast",
    );
  });

  it("takes an input's shape and dtype by index", () => {
    const op = defineOp({ ...spec("derivedSecondInput"), sameAs: { shape: 1, dtype: 0 } });
    const a = adj.variable("a", { dtype: "float32" });
    const b = adj.variable("b", { shape: [2, 5], dtype: "float64" });
    const y = new adj.Node([a, b], op, {}, "y");
    expect(y.shape).toEqual([2, 5]);
    expect(y.dtype).toBe("float32");
  });

  it("refuses an op with neither a type rule nor facts for both shape and dtype", () => {
    expect(() => defineOp({ ...spec("noTypeRule") })).toThrow(
      'op "noTypeRule" needs a type rule or sameAs facts for shape and dtype',
    );
    expect(() => defineOp({ ...spec("halfFacts"), sameAs: { shape: 0 } })).toThrow(
      'op "halfFacts" needs a type rule',
    );
    // Refused before registering: the name stays free.
    expect(() => adj.opByName("noTypeRule")).toThrow('unknown op "noTypeRule"');
  });
});
