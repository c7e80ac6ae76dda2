/** simplify(): bit-for-bit values on op-table and training graphs, CSE, exact identities, 100k nodes. */
import { performance } from "node:perf_hooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";
import {
  add,
  addByConst,
  broadcastTo,
  divByConst,
  Evaluator,
  exp,
  gradients,
  logSoftmax,
  mul,
  mulByConst,
  neg,
  onesLike,
  sub,
  sum,
  tensor,
  topoSort,
  variable,
  zerosLike,
  type DType,
  type Node,
  type Tensor,
} from "../../src/index.js";
import { countNodes, simplify } from "../../src/autodiff/simplify.js";
import { sumLike } from "../../src/graph/ops/shape.js";
import { rebuildGraph, lowerGraph } from "../../src/runtime/plan.js";
import { buildTrainPlan, forward, modelSpec, paramSpecs } from "../../src/train/models.js";
import { backendCases } from "../helpers/backends.js";
import { mulberry32, randomTensor } from "../helpers/gradcheck.js";
import { opCases } from "../helpers/op-cases.js";

/** `t` converted to `dtype` (values rounded to float32 when narrowing). */
function as(t: Tensor, dtype: DType): Tensor {
  return tensor(dtype === "float32" ? Float32Array.from(t.data) : Float64Array.from(t.data), {
    shape: t.shape,
  });
}

/** Asserts equal dtype, shape and bytes (so -0 vs +0 and NaN payloads count). */
function expectBitwise(actual: Tensor, expected: Tensor, what: string): void {
  expect(actual.dtype, `${what}: dtype`).toBe(expected.dtype);
  expect([...actual.shape], `${what}: shape`).toEqual([...expected.shape]);
  const bytes = (t: Tensor) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  expect(Buffer.compare(bytes(actual), bytes(expected)), `${what}: bytes`).toBe(0);
}

/** Runs `outputs` and simplify(outputs) on the same feeds and asserts bitwise-equal results. */
function expectSameValues(outputs: Node[], feeds: Map<Node, Tensor>, what: string) {
  const simplified = simplify(outputs);
  const expected = new Evaluator(outputs).run(feeds);
  const actual = new Evaluator(simplified).run(feeds);
  actual.forEach((t, i) => expectBitwise(t, expected[i], `${what}, output ${i}`));
  return { before: topoSort(outputs).length, after: topoSort(simplified).length };
}

/**
 * The gradient checker's graphs for one op case: y, L = sum(u * y), dL/dx, M = sum_i sum(v_i *
 * dL/dx_i) and dM/dx, with random u and v of `projection` dtype.
 */
function secondOrderGraphs(
  build: (...xs: Node[]) => Node,
  inputs: Tensor[],
  inputDType: DType,
  projection: DType,
  seed: number,
) {
  const random = mulberry32(seed);
  const xs = inputs.map((_, i) => variable(`x${i}`));
  const y = build(...xs);
  const feeds = new Map<Node, Tensor>(xs.map((x, i) => [x, as(inputs[i], inputDType)]));
  const [value] = new Evaluator([y]).run(feeds);
  const u = variable("u");
  feeds.set(u, as(randomTensor(random, value.shape), projection));
  const loss = sum(mul(u, y));
  const grads = gradients(loss, xs);
  const vs = xs.map((_, i) => variable(`v${i}`));
  vs.forEach((v, i) => feeds.set(v, as(randomTensor(random, inputs[i].shape), projection)));
  const projected = grads.map((g, i) => sum(mul(vs[i], g))).reduce((a, b) => add(a, b));
  const second = gradients(projected, xs);
  return { outputs: [y, loss, ...grads, projected, ...second], feeds };
}

describe.each(backendCases.map((b) => [b.name, b] as const))(
  "%s backend: simplify keeps every value bit for bit",
  (_, backendCase) => {
    beforeAll(() => {
      adj.setBackend(backendCase.create());
    });
    afterAll(() => {
      adj.setBackend(adj.jsBackend);
    });

    const dtypes: [DType, DType][] = [
      ["float64", "float64"],
      ["float32", "float32"],
      ["float32", "float64"], // mixed: promotions must survive the rewrites
    ];
    it.each(opCases.map((c) => [c.name, c] as const))(
      "%s: first- and second-order gradient graphs",
      (name, c) => {
        let before = 0;
        let after = 0;
        for (const [inputDType, projection] of dtypes) {
          const { outputs, feeds } = secondOrderGraphs(
            c.build,
            c.inputs,
            inputDType,
            projection,
            7,
          );
          const counts = expectSameValues(outputs, feeds, `${name} ${inputDType}/${projection}`);
          before += counts.before;
          after += counts.after;
        }
        expect(after).toBeLessThanOrEqual(before);
      },
    );

    it("the training plans of logreg and an MLP, float32 and float64", () => {
      const random = mulberry32(3);
      for (const spec of [modelSpec("logreg", 6, [], 3), modelSpec("mlp", 6, [5, 4], 3)]) {
        for (const dtype of ["float32", "float64"] as const) {
          // Shapes declared as buildTrainPlan declares them (the batch unknown).
          const X = variable("X", { shape: [null, 6] });
          const Y = variable("Y", { shape: [null, 3] });
          const params = paramSpecs(spec).map((p) => variable(p.name, { shape: p.shape }));
          const lossSum = neg(sum(mul(Y, logSoftmax(forward(spec, X, params)))));
          const outputs = [lossSum, ...gradients(lossSum, params)];
          const feeds = new Map<Node, Tensor>([
            [X, as(randomTensor(random, [7, 6], -2, 2), dtype)],
            [Y, as(randomTensor(random, [7, 3], 0, 1), dtype)],
          ]);
          paramSpecs(spec).forEach((p, i) =>
            feeds.set(params[i], as(randomTensor(random, p.shape), dtype)),
          );
          const { before, after } = expectSameValues(outputs, feeds, `${spec.kind} ${dtype}`);
          // Never more nodes; with logSoftmax one op (its gradient g - exp(y) * sum(g)) there is
          // no logsumexp broadcast left to prove away in these plans, so possibly none fewer.
          expect(after).toBeLessThanOrEqual(before);
        }
      }
    });
  },
);

describe("buildTrainPlan applies simplify and reports node counts", () => {
  it.each([
    ["logreg", modelSpec("logreg", 64, [], 10)],
    ["mlp", modelSpec("mlp", 784, [256], 10)],
  ] as const)("%s", (_, spec) => {
    const train = buildTrainPlan(spec);
    const { before, after } = train.stats;
    // The forward graph has nothing to simplify; the backward graph loses its no-op sumLikes and
    // its zero tensors.
    expect(after.forward).toBe(before.forward);
    expect(after.backward).toBeLessThan(before.backward);
    expect(after.total).toBe(after.forward + after.backward);
    expect(train.graph.nodes.length).toBe(after.total);
    expect(train.graph.nodes.filter((n) => n.op === "zerosLike")).toEqual([]);
    console.log(
      `${spec.kind} ${spec.sizes.join("-")} training plan: forward ${before.forward} -> ` +
        `${after.forward} nodes, backward ${before.backward} -> ${after.backward}`,
    );
  });

  it("the plan computes what the unsimplified plan computes, bit for bit", () => {
    const spec = modelSpec("mlp", 8, [6], 4);
    const X = variable("X");
    const Y = variable("Y");
    const params = paramSpecs(spec).map((p) => variable(p.name));
    const lossSum = neg(sum(mul(Y, logSoftmax(forward(spec, X, params)))));
    const raw = lowerGraph([lossSum, ...gradients(lossSum, params)], [X, Y, ...params]);
    const random = mulberry32(5);
    const values = [
      randomTensor(random, [9, 8], -2, 2),
      randomTensor(random, [9, 4], 0, 1),
      ...paramSpecs(spec).map((p) => randomTensor(random, p.shape)),
    ];
    const runPlan = (plan: typeof raw) => {
      const graph = rebuildGraph(plan);
      return new Evaluator(graph.outputs).run(
        new Map(graph.placeholders.map((p, i) => [p, values[i]])),
      );
    };
    const expected = runPlan(raw);
    runPlan(buildTrainPlan(spec).graph).forEach((t, i) => expectBitwise(t, expected[i], `${i}`));
  });
});

describe("common subexpressions", () => {
  it("a duplicated subgraph is merged: two nodes fewer", () => {
    const x = variable("x");
    const w = variable("w");
    const y = add(exp(mul(x, w)), exp(mul(x, w)));
    expect(topoSort([y]).length).toBe(7);
    const [s] = simplify([y]);
    expect(topoSort([s]).length).toBe(5);
    expect(s.inputs[0]).toBe(s.inputs[1]);
    expectSameValues(
      [y],
      new Map([
        [x, tensor([1, -2, 0.5])],
        [w, tensor([3, 0.25, -1])],
      ]),
      "merged",
    );
  });

  it("merges across outputs and keeps distinct outputs distinct", () => {
    const x = variable("x");
    const a = sum(exp(x), { axis: [0] });
    const b = sum(exp(x), { axis: [0] }); // deep-equal attrs, another array
    const c = sum(exp(x), { axis: [1] });
    const [sa, sb, sc] = simplify([a, b, c]);
    expect(sa).toBe(sb);
    expect(sc).not.toBe(sa);
    expect(sc.inputs[0]).toBe(sa.inputs[0]); // exp(x) once
    expect(countNodes([a], [a, b, c]).total).toBe(7);
    expect(countNodes([sa], [sa, sb, sc]).total).toBe(4);
  });

  it("never merges placeholders, different constants, or 0 and -0", () => {
    const x1 = variable("x");
    const x2 = variable("x");
    const out = simplify([add(x1, x2), mulByConst(x1, 0), mulByConst(x1, -0), mulByConst(x1, 2)]);
    expect(out[0].inputs).toEqual([x1, x2]);
    expect(new Set(out.slice(1)).size).toBe(3);
  });

  it("a gradient graph with repeated work shrinks and keeps its values", () => {
    const x = variable("x");
    const y = mul(mul(exp(x), exp(x)), exp(x));
    const [g] = gradients(y, [x]);
    const [h] = gradients(sum(g), [x]);
    const { before, after } = expectSameValues(
      [y, g, h],
      new Map([[x, tensor([0.5, -1, 2])]]),
      "exp^3",
    );
    expect(before - after).toBeGreaterThanOrEqual(2); // exp(x) three times -> once, at least
  });
});

describe("identities, only where exact", () => {
  const x = variable("x");
  const w = variable("w");

  it("-(-x), x*1, x/1 and sumLike(g, g) are x or g", () => {
    const g = exp(x);
    const [a, b, c, d, e] = simplify([
      neg(neg(x)),
      mulByConst(x, 1),
      divByConst(x, 1),
      sumLike(g, g),
      neg(neg(neg(x))),
    ]);
    expect([a, b, c]).toEqual([x, x, x]);
    expect(d).toBe(simplify([g])[0]);
    expect(e.op.name).toBe("neg");
    expect(e.inputs[0]).toBe(x);
    const [f] = simplify([mulByConst(x, -1)]);
    expect(f.op.name).toBe("mulByConst");
  });

  it("x * onesLike(y) is x when y has x's shape and dtype, kept otherwise", () => {
    const [same, sameShape, other, wider] = simplify([
      mul(x, onesLike(x)),
      mul(onesLike(exp(x)), x),
      mul(x, onesLike(w)), // w may broadcast x up
      // add(x, broadcastTo(w, x)) has x's shape but may be float64 where x is float32.
      mul(x, onesLike(add(x, broadcastTo(w, x)))),
    ]);
    expect(same).toBe(x);
    expect(sameShape).toBe(x);
    expect(other.op.name).toBe("mul");
    expect(wider.op.name).toBe("mul");
    const feeds = new Map<Node, Tensor>([
      [x, tensor(new Float32Array([1, -0, NaN]), { shape: [3] })],
      [w, tensor([[2], [3]])],
    ]);
    expectSameValues([mul(x, onesLike(w))], feeds, "broadcast ones");
    feeds.set(w, tensor(4));
    expectSameValues([mul(x, onesLike(add(x, broadcastTo(w, x))))], feeds, "float64 ones");
  });

  it("declared shapes prove what broadcasting leaves alone, unknown batch dims included", () => {
    const z = variable("z", { shape: [null, 3], dtype: "float32" });
    const b = variable("b", { shape: [3], dtype: "float32" });
    const u = variable("u", { shape: [null, null], dtype: "float32" });
    const scalar = sum(z); // 0-d: its ones broadcast into anything of known rank
    const [byOnes, kept, summed, keptSum] = simplify([
      mul(onesLike(scalar), z),
      // (null, 1) ones could widen z when z has one row: kept.
      mul(onesLike(variable("o", { shape: [null, 1], dtype: "float32" })), z),
      // add(z, b) has z's shape, so sumLike(exp(z + b), z) is exp(z + b) itself.
      sumLike(exp(add(z, b)), z),
      // But a (3,) bias against (null, null) widens a (n, 1) value: no proof, kept.
      sumLike(exp(add(u, b)), u),
    ]);
    expect(byOnes).toBe(z);
    expect(kept.op.name).toBe("mul");
    expect(summed.op.name).toBe("exp");
    expect(keptSum.op.name).toBe("sumLike");
    const feeds = new Map<Node, Tensor>([
      [z, tensor(new Float32Array([1, -0, NaN, 2, 3, -4]), { shape: [2, 3] })],
      [b, tensor(new Float32Array([0.5, -1, 2]), { shape: [3] })],
    ]);
    feeds.set(u, tensor(new Float32Array([1, 2]), { shape: [2, 1] }));
    const graphs = [
      mul(onesLike(scalar), z),
      sumLike(exp(add(z, b)), z),
      sumLike(exp(add(u, b)), u),
    ];
    expectSameValues(graphs, feeds, "declared");
  });

  it("x + zerosLike(x) becomes addByConst(x, 0): -0 still turns into +0", () => {
    const [s] = simplify([add(zerosLike(exp(x)), exp(x))]);
    expect(s.op.name).toBe("addByConst");
    expect(s.attrs.constant).toBe(0);
    const feeds = new Map([[x, tensor([-0, 0, 1, -Infinity])]]);
    const sumWithZeros = add(neg(mulByConst(x, 0)), zerosLike(x)); // -(x*0) holds -0 and +0
    expectSameValues([sumWithZeros, sub(neg(x), zerosLike(x))], feeds, "zeros");
    const [kept] = simplify([add(x, zerosLike(w))]);
    expect(kept.op.name).toBe("add");
  });

  it("a rewritten node that already exists is merged with it", () => {
    const [a, b] = simplify([add(x, zerosLike(x)), addByConst(x, 0)]);
    expect(a).toBe(b);
  });
});

describe("100,000-node graphs", () => {
  it("a chain of 100,000 nodes simplifies without a stack overflow", () => {
    const steps = 34_000; // three nodes per step
    const x = variable("x");
    let y: Node = x;
    for (let i = 0; i < steps; i++) y = neg(neg(mulByConst(y, 1.00001)));
    expect(topoSort([y]).length).toBe(3 * steps + 1);
    const t0 = performance.now();
    const [s] = simplify([y]);
    const ms = performance.now() - t0;
    expect(topoSort([s]).length).toBe(steps + 1);
    expect(ms).toBeLessThan(2000);
    const feeds = new Map([[x, tensor([1, -2])]]);
    const [expected] = new Evaluator([y]).run(feeds);
    const [actual] = new Evaluator([s]).run(feeds);
    expectBitwise(actual, expected, "chain");
  });

  it("two identical 50,000-node chains merge into one", () => {
    const x = variable("x");
    const chain = () => {
      let y: Node = x;
      for (let i = 0; i < 25_000; i++) y = exp(mulByConst(y, 0.5));
      return y;
    };
    const [a, b] = simplify([chain(), chain()]);
    expect(a).toBe(b);
    expect(topoSort([a]).length).toBe(50_001);
  });
});
