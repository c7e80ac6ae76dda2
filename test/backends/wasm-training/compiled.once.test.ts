/**
 * Compiled shards (src/train/parallel/compiled.ts) give the Evaluator's bits: the same loss,
 * gradient slots and update for the built-in models at any shard size and both dtypes, on the
 * wasm backend as shipped and with every kernel in WASM (no js fallbacks below a size).
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, describe, expect, it } from "vitest";
import { setBackend } from "../../../src/tensor/active.js";
import { jsBackend } from "../../../src/tensor/kernels/js.js";
import { createWasmBackend } from "../../../src/backends/wasm.js";
import { useBackend } from "../../../src/backends/select.js";
import { CompiledShard } from "../../../src/backends/wasm-training/compiled.js";
import { CONTROL } from "../../../src/train/parallel/state.js";
import { ShardRunner } from "../../../src/train/parallel/shard.js";
import {
  buildTrainPlan,
  initParams,
  modelSpec,
  type ModelSpec,
} from "../../../src/train/models.js";
import { Rng } from "../../../src/train/random.js";
import { prepareTraining } from "../../../src/train/trainer.js";
import { rebuildGraph } from "../../../src/runtime/plan.js";
import { Evaluator } from "../../../src/runtime/evaluator.js";
import {
  allocate,
  clearPool,
  placeInBackend,
  Tensor,
  type DType,
} from "../../../src/tensor/tensor.js";

/** The wasm backend as shipped; a failure to load it fails the test (no js fallback). */
const strictWasm = () =>
  useBackend("wasm", (e) => {
    throw e;
  });

/** A tensor in the kernels' memory, where a shard places its feeds. */
const placed = (shape: number[], dtype: DType) => placeInBackend(() => allocate(shape, dtype));
import { variable, type Node } from "../../../src/graph/node.js";
import { add, conv2d, maxPool2d, mul, relu, sum } from "../../../src/graph/ops/index.js";
import { gradients } from "../../../src/autodiff/gradients.js";
import type { OptimizerConfig } from "../../../src/train/parallel/optimizer-kernels.js";

afterAll(() => void setBackend(jsBackend));

const hex = (
  a: ArrayLike<number> & { buffer: ArrayBufferLike; byteOffset: number; byteLength: number },
) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("hex");

/** A dataset of `n` rows of `features` with one-hot-able labels, deterministic. */
function dataset(n: number, features: number, classes: number, dtype: DType) {
  const rng = new Rng(7);
  const X = allocate([n, features], dtype);
  for (let i = 0; i < X.size; i++) X.data[i] = rng.normal() * 2;
  const y = Int32Array.from({ length: n }, () => Math.floor(rng.uniform(0, classes)));
  return { X, y, classes };
}

/** Slots, losses and updated parameters after `steps` steps of one batch split into shards. */
function runSteps(
  spec: ModelSpec,
  dtype: DType,
  batch: number,
  shards: number,
  compiled: boolean,
  warmUp = false,
) {
  const optimizer: OptimizerConfig = { kind: "momentum", lr: 0.05 };
  const data = dataset(64, spec.sizes[0], spec.sizes[spec.sizes.length - 1], dtype);
  const initial = initParams(spec, new Rng(1), dtype);
  const { trainPlan, shared } = prepareTraining(
    spec,
    data,
    dtype,
    optimizer,
    shards,
    batch,
    initial,
  );
  const runner = new ShardRunner({ ...trainPlan, compiled }, shared, optimizer);
  if (warmUp) {
    // A worker warms up while other threads step: it must write nothing they share.
    shared.grads.fill(7);
    shared.losses.fill(7);
    const before = [hex(shared.grads), hex(shared.losses), hex(shared.params[0])];
    runner.warmUp();
    expect([hex(shared.grads), hex(shared.losses), hex(shared.params[0])]).toEqual(before);
  }
  for (let t = 1; t <= 3; t++) {
    shared.batch.set(Int32Array.from({ length: batch }, (_, i) => (i * 13 + t * 5) % 64));
    shared.control[CONTROL.batchSize] = batch;
    shared.control[CONTROL.step] = t;
    runner.beginStep();
    for (let s = 0; s < shards; s++) runner.runShard(s);
    runner.reduceAndUpdate(0, shared.paramCount);
    shared.control[CONTROL.current] = 1 - shared.control[CONTROL.current];
  }
  // The path under test really ran: every shard size compiled, or none.
  const sizes = new Set(Array.from({ length: shards }, (_, s) => Math.floor((batch + s) / shards)));
  expect(runner.compiledSizes().length).toBe(compiled ? sizes.size : 0);
  return [
    hex(shared.grads),
    hex(shared.losses),
    hex(shared.params[shared.control[CONTROL.current]]),
  ];
}

const models: [string, ModelSpec][] = [
  ["logreg 64-10", modelSpec("logreg", 64, [], 10)],
  ["mlp 40-33-16-10", modelSpec("mlp", 40, [33, 16], 10)],
  ["mlp 20-8-3 (narrow)", modelSpec("mlp", 20, [8], 3)],
];

describe.each([
  ["wasm", strictWasm],
  ["wasm (every kernel)", () => createWasmBackend({ minElements: 0 })],
])("%s: compiled shards = the Evaluator, bit for bit", (_, make) => {
  it.each(models)("%s, float32 and float64, shard sizes 1 to 50", (_, spec) => {
    setBackend(make());
    clearPool(); // pooled arrays may lie in another backend's memory
    for (const dtype of ["float32", "float64"] as const) {
      for (const [batch, shards] of [
        [1, 1],
        [5, 2],
        [7, 1],
        [50, 3],
        [33, 4],
        [64, 2],
      ]) {
        const interpreted = runSteps(spec, dtype, batch, shards, false);
        const compiled = runSteps(spec, dtype, batch, shards, true);
        expect(compiled, `${dtype} batch ${batch} in ${shards} shards`).toEqual(interpreted);
        const warm = runSteps(spec, dtype, batch, shards, true, true);
        expect(warm, `${dtype} batch ${batch} in ${shards} shards, warmed up`).toEqual(interpreted);
      }
    }
  });
});

/**
 * Feeds [X, Y, W] of `shapes` in the kernels' memory: normals, but Y one-hot at class `hot` of
 * each row (its width the second shape's).
 */
function lossFeeds(
  nodes: Node[],
  shapes: number[][],
  dtype: DType,
  rng: Rng,
  hot: number,
): Map<Node, Tensor> {
  return new Map<Node, Tensor>(
    nodes.map((p, i) => {
      const t = placed(shapes[i], dtype);
      const classes = shapes[1][1];
      for (let k = 0; k < t.size; k++)
        t.data[k] = i === 1 ? Number(k % classes === hot) : rng.normal();
      return [p, t];
    }),
  );
}

/**
 * A built-in model's training plan and feeds of `rows` rows in the kernels' memory: pixels
 * uniform in [0, 1), every row's label class 3, the model's initial parameters.
 */
function modelPlan(spec: ModelSpec, rows: number, dtype: DType, rng: Rng) {
  const { placeholders, outputs } = rebuildGraph(buildTrainPlan(spec).graph);
  const initial = initParams(spec, rng, dtype);
  const shapes = [[rows, 784], [rows, 10], ...initial.map((t) => [...t.shape])];
  const feeds = new Map<Node, Tensor>(
    placeholders.map((p, i) => {
      const t = placed(shapes[i], dtype);
      if (i >= 2) t.data.set(initial[i - 2].data);
      else
        for (let k = 0; k < t.size; k++)
          t.data[k] = i === 1 ? Number(k % 10 === 3) : rng.uniform(0, 1);
      return [p, t];
    }),
  );
  return { placeholders, outputs, feeds };
}

/** `outputs` compile over `feeds` with a step labelled `label`, and give the Evaluator's bits. */
function expectEvaluatorBits(outputs: Node[], feeds: Map<Node, Tensor>, label: string): void {
  const program = CompiledShard.compile(outputs, feeds, useBackend("wasm") as never);
  expect(program).toBeDefined();
  expect(program!.labels.join(" ")).toContain(label);
  const want = new Evaluator(outputs).run(feeds).map((t) => hex(t.data));
  expect(program!.run().map((t) => hex(t.data))).toEqual(want);
}

describe("CompiledShard", () => {
  it("compiles the plans on wasm and returns what the Evaluator returns", () => {
    setBackend(strictWasm());
    const spec = modelSpec("mlp", 12, [9], 4);
    const { graph: plan } = buildTrainPlan(spec);
    const { placeholders, outputs } = rebuildGraph(plan);
    const rng = new Rng(3);
    const feeds = new Map<Node, Tensor>();
    const shapes = [[6, 12], [6, 4], [12, 9], [9], [9, 4], [4]];
    placeholders.forEach((p, i) => {
      const t = placed(shapes[i], "float32");
      for (let k = 0; k < t.size; k++) t.data[k] = i === 1 ? (k % 4 === 1 ? 1 : 0) : rng.normal();
      feeds.set(p, t);
    });
    const program = CompiledShard.compile(outputs, feeds, useBackend("wasm") as never);
    expect(program).toBeDefined();
    const want = new Evaluator(outputs).run(feeds).map((t) => hex(t.data));
    expect(program!.run().map((t) => hex(t.data))).toEqual(want);
    // Runs again on refilled feeds: the buffers are bound once, the values read every run.
    const X = feeds.get(placeholders[0])!;
    for (let k = 0; k < X.size; k++) X.data[k] = rng.normal();
    const again = new Evaluator(outputs).run(feeds).map((t) => hex(t.data));
    expect(program!.run().map((t) => hex(t.data))).toEqual(again);
    expect(again).not.toEqual(want);
  });

  it("the cnn's convolutions keep x's patches for the filter gradient: the Evaluator's bits", () => {
    const wasm = strictWasm();
    setBackend(wasm);
    for (const dtype of ["float32", "float64"] as const) {
      const rng = new Rng(5);
      const { placeholders, outputs, feeds } = modelPlan(
        modelSpec("cnn", 784, [], 10, "tutorial"),
        6,
        dtype,
        rng,
      );
      const program = CompiledShard.compile(outputs, feeds, wasm as never);
      expect(program).toBeDefined();
      // The path under test ran: both layers' convolutions kept their patches.
      expect(program!.labels.filter((l) => l === "conv2d (patches kept)")).toHaveLength(2);
      expect(program!.labels.filter((l) => l === "conv2dFilterGrad (patches kept)")).toHaveLength(
        2,
      );
      // Every image op and the per-channel bias add by address, none interpreted; the bias
      // gradients by address where the backend's sumTo runs its kernel (at this many elements).
      const interpreted = program!.labels.filter((l) => l.endsWith("(interpreted)"));
      expect(interpreted.filter((l) => /conv|Pool|add/.test(l))).toEqual([]);
      expect(program!.labels).toEqual(
        expect.arrayContaining(["conv2dInputGrad", "maxPool2d", "maxPoolGrad", "sumLike"]),
      );
      const want = new Evaluator(outputs).run(feeds).map((t) => hex(t.data));
      expect(
        program!.run().map((t) => hex(t.data)),
        dtype,
      ).toEqual(want);
      // Twice: the patches of the last run are released, the next run's made afresh.
      const X = feeds.get(placeholders[0])!;
      for (let k = 0; k < X.size; k++) X.data[k] = rng.uniform(0, 1);
      const again = new Evaluator(outputs).run(feeds).map((t) => hex(t.data));
      expect(
        program!.run().map((t) => hex(t.data)),
        `${dtype}, second run`,
      ).toEqual(again);
      expect(again).not.toEqual(want);
    }
  });

  it("the transformers' stacked and batched products and reshapes by address: the Evaluator's bits", () => {
    const wasm = strictWasm();
    setBackend(wasm);
    for (const arch of ["course", "residual"] as const)
      for (const dtype of ["float32", "float64"] as const) {
        const spec = modelSpec("transformer", 784, [], 10, arch);
        const { outputs, feeds } = modelPlan(spec, 3, dtype, new Rng(6));
        const program = CompiledShard.compile(outputs, feeds, wasm as never)!;
        // The path under test ran: every product (stacked, batched, plain) and reshape by address.
        expect(program.labels.filter((l) => /matmul|reshape/.test(l))).not.toContainEqual(
          expect.stringContaining("(interpreted)"),
        );
        expect(program.labels.filter((l) => l === "matmul").length).toBeGreaterThan(10);
        // The bias and position adds (rows of the tokens' trailing dims) too.
        expect(program.labels).not.toContain("add (interpreted)");
        const want = new Evaluator(outputs).run(feeds).map((t) => hex(t.data));
        expect(
          program.run().map((t) => hex(t.data)),
          `${arch} ${dtype}`,
        ).toEqual(want);
      }
  });

  it("image ops at other strides and paddings, a filter gradient alone and maxPoolSelect: the Evaluator's bits", () => {
    setBackend(strictWasm());
    for (const dtype of ["float32", "float64"] as const) {
      const x = variable("x", { shape: [3, 2, 9, 8], dtype });
      const w = variable("w", { shape: [4, 2, 3, 2], dtype });
      const b = variable("b", { shape: [4, 1, 1], dtype });
      const c = variable("c", { shape: [3, 4, 2, 3], dtype });
      const v = variable("v", { shape: [3, 2, 9, 8], dtype });
      const conv = conv2d(x, w, { stride: [2, 1], padding: [1, 0] });
      const pooled = maxPool2d(relu(add(conv, b)), { size: [2, 3], stride: [2, 2] });
      const loss = sum(mul(pooled, c));
      const [gx] = gradients(loss, [x]);
      // The filter's gradient alone (no conv2d in that program) ...
      const [gw] = gradients(loss, [w]);
      // ... and a second order through maxPoolGrad, whose adjoint in g is maxPoolSelect.
      const [gc] = gradients(sum(mul(gx, v)), [c]);
      const rng = new Rng(11);
      const shapes = new Map<Node, number[]>([
        [x, [3, 2, 9, 8]],
        [w, [4, 2, 3, 2]],
        [b, [4, 1, 1]],
        [c, [3, 4, 2, 3]],
        [v, [3, 2, 9, 8]],
      ]);
      const feedsOf = (nodes: Node[]) =>
        new Map<Node, Tensor>(
          nodes.map((n) => {
            const t = placed(shapes.get(n)!, dtype);
            for (let k = 0; k < t.size; k++) t.data[k] = rng.normal();
            return [n, t];
          }),
        );
      for (const [outputs, feeds, label] of [
        [[gw], feedsOf([x, w, b, c]), "conv2dFilterGrad"],
        [[loss, gx, gc], feedsOf([x, w, b, c, v]), "maxPoolSelect"],
      ] as const) {
        expectEvaluatorBits([...outputs], feeds, label);
        const labels = CompiledShard.compile(outputs, feeds, useBackend("wasm") as never)!.labels;
        expect(labels.filter((l) => /conv|Pool/.test(l) && l.endsWith("(interpreted)"))).toEqual(
          [],
        );
      }
    }
  });

  it("a mean cross-entropy and a constant compile to the Evaluator's bits (loss and gradients)", async () => {
    setBackend(strictWasm());
    const adj = await import("../../../src/index.js");
    const rng = new Rng(4);
    for (const dtype of ["float32", "float64"] as const) {
      const X = adj.variable("X", { shape: [null, 5], dtype });
      const Y = adj.variable("Y", { shape: [null, 3], dtype });
      const W = adj.variable("W", { shape: [5, 3], dtype });
      const shift = adj.constant(adj.tensor([[0.5, -1, 2]], { dtype }));
      const loss = adj.softmaxCrossEntropy(adj.matmul(X, W).add(shift), Y);
      const outputs = [loss, ...adj.gradients(loss, [W])];
      const shapes = [
        [7, 5],
        [7, 3],
        [5, 3],
      ];
      const feeds = lossFeeds([X, Y, W], shapes, dtype, rng, 1);
      expectEvaluatorBits(outputs, feeds, "softmaxCrossEntropy+grad");
    }
  });

  it("compiles a plan whose types a rule leaves unknown (a custom op) through one interpreted pass", async () => {
    setBackend(strictWasm());
    const adj = await import("../../../src/index.js");
    const rng = new Rng(5);
    // No type rule: nothing is known of its output before it runs, so the compiler cannot take
    // the shapes from the rules and must compute them once.
    const double = adj.defineOp({
      name: "compiledTestDouble",
      compute: (_node, [x]) => adj.backend().binary("add", x, x),
      gradient: (_node, g) => [adj.mulByConst(g, 2)],
    });
    const X = adj.variable("X", { shape: [null, 4], dtype: "float64" });
    const Y = adj.variable("Y", { shape: [null, 3], dtype: "float64" });
    const W = adj.variable("W", { shape: [4, 3], dtype: "float64" });
    const loss = adj.softmaxCrossEntropy(adj.apply(double, [adj.matmul(X, W)]), Y);
    const outputs = [loss, ...adj.gradients(loss, [W])];
    const shapes = [
      [6, 4],
      [6, 3],
      [4, 3],
    ];
    const feeds = lossFeeds([X, Y, W], shapes, "float64", rng, 2);
    expectEvaluatorBits(outputs, feeds, "compiledTestDouble (interpreted)");
  });

  it("keeps its buffers alive: garbage collection never hands them to another program", async () => {
    setBackend(strictWasm());
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const spec = modelSpec("mlp", 30, [40], 5);
    const { placeholders, outputs } = rebuildGraph(buildTrainPlan(spec).graph);
    const shapes = [[16, 30], [16, 5], [30, 40], [40], [40, 5], [5]];
    const rng = new Rng(9);
    const feedsOf = () =>
      new Map<Node, Tensor>(
        placeholders.map((p, i) => {
          const t = placed(shapes[i], "float32");
          for (let k = 0; k < t.size; k++) t.data[k] = i === 1 ? Number(k % 5 === 2) : rng.normal();
          return [p, t];
        }),
      );
    const wasm = useBackend("wasm") as never;
    const program = CompiledShard.compile(outputs, feedsOf(), wasm)!;
    const first = program.run().map((t) => hex(t.data));
    expect(CompiledShard.compile(outputs, feedsOf(), wasm)).toBeDefined(); // another shard size
    // A collected array's block goes back to the arena (a FinalizationRegistry): collect, then
    // compile a program over other values, whose buffers come from the freed blocks if any.
    for (let round = 0; round < 3; round++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const third = CompiledShard.compile(outputs, feedsOf(), wasm)!;
    const outs = program.run();
    third.run();
    expect(outs.map((t) => hex(t.data))).toEqual(first);
  });

  it("is not compiled where a feed lies outside the kernels' memory (the Evaluator then runs)", () => {
    setBackend(strictWasm());
    const { graph: plan } = buildTrainPlan(modelSpec("logreg", 3, [], 2));
    const { placeholders, outputs } = rebuildGraph(plan);
    const shapes = [[2, 3], [2, 2], [3, 2], [2]];
    const feeds = new Map<Node, Tensor>(
      placeholders.map((p, i) => [
        p,
        new Tensor(new Float32Array(shapes[i].reduce((a, b) => a * b, 1)), shapes[i]),
      ]),
    );
    expect(CompiledShard.compile(outputs, feeds, useBackend("wasm") as never)).toBeUndefined();
  });
});
