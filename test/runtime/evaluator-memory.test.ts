/**
 * Memory stays flat in a synchronous loop, on either backend, whatever the garbage collector does:
 * the Evaluator frees intermediates at their last use and copies outputs out of the wasm arena,
 * and tensors a user makes are plain arrays. The arena's live-array count is exact (no GC timing),
 * so the wasm runs assert it does not grow at all after the first runs.
 */
import { describe, expect, it } from "vitest";
import {
  backend,
  Evaluator,
  gradients,
  logSoftmax,
  matmul,
  relu,
  sgdEpoch,
  sum,
  tensor,
  variable,
  logisticRegression,
  loadDigits,
  loadMnist,
  loadMnistFull,
  softmaxLoss,
  type Node,
  type Tensor,
} from "../../src/index.js";
import { inBackendMemory } from "../../src/tensor/tensor.js";
import { accuracy } from "../../src/train/metrics.js";
import { initParams, modelSpec } from "../../src/train/models.js";
import { Rng } from "../../src/train/random.js";
import type { WasmBackend } from "../../src/backends/wasm.js";

/** The active backend's arena counters, or undefined on the js backend. */
function arenaStats(): { arrays: number; top: number } | undefined {
  const arena = (backend() as Partial<WasmBackend>).arena;
  return arena ? { arrays: arena.stats.arrays, top: arena.highWater } : undefined;
}

/** A deterministic float32 tensor of `shape` with values in [-0.05, 0.05). */
function filled(shape: number[], seed: number): Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const values = Float32Array.from(
    { length: size },
    (_, i) => (((i * 7919 + seed) % 1000) - 500) / 1e4,
  );
  return tensor(values, { shape, dtype: "float32" });
}

/** An MLP's loss and gradients (784 -> 256 -> 10 scaled down to keep the test quick). */
function mlp(inputs: number, hidden: number, batch: number) {
  const X = variable("X", { shape: [null, inputs], dtype: "float32" });
  const W1 = variable("W1");
  const W2 = variable("W2");
  const Y = variable("Y");
  const logits = matmul(relu(matmul(X, W1)), W2);
  const loss = sum(Y.mul(logSoftmax(logits))).div(-batch);
  const [g1, g2] = gradients(loss, [W1, W2]);
  const feeds = new Map<Node, Tensor>([
    [X, filled([batch, inputs], 1)],
    [W1, filled([inputs, hidden], 2)],
    [W2, filled([hidden, 10], 3)],
    [Y, filled([batch, 10], 4)],
  ]);
  return { outputs: [loss, g1, g2], feeds };
}

describe("a synchronous Evaluator loop keeps memory flat", () => {
  it("1,500 runs of an MLP's loss and gradients: the arena's arrays and top do not move after run 100", () => {
    const { outputs, feeds } = mlp(196, 64, 32);
    const evaluator = new Evaluator(outputs);
    let after100: ReturnType<typeof arenaStats>;
    const rss100 = { value: 0 };
    let first: number[] = [];
    for (let run = 1; run <= 1500; run++) {
      const values = evaluator.run(feeds);
      if (run === 1) first = [...values[2].data];
      if (run === 100) {
        after100 = arenaStats();
        rss100.value = process.memoryUsage().rss;
      }
    }
    expect(arenaStats()).toEqual(after100);
    expect(process.memoryUsage().rss - rss100.value).toBeLessThan(150e6);
    // And the values are still the first run's (outputs copied before their blocks were reused).
    expect([...evaluator.run(feeds)[2].data]).toEqual(first);
  });

  it("outputs are handed out of the arena: not in backend memory, aliases copied alike", () => {
    const x = variable("x");
    const y = x.mul(2);
    const evaluator = new Evaluator([y, y, x]);
    const fed = tensor([1, 2, 3]);
    const [a, b, c] = evaluator.run({ x: fed });
    expect(inBackendMemory(a.data)).toBe(false);
    expect(a.toArray()).toEqual([2, 4, 6]);
    expect(b.toArray()).toEqual([2, 4, 6]);
    expect(c).toBe(fed); // a feed returned as an output is the caller's own tensor
    // runInPlace keeps them where they were computed, for a caller that recycles them.
    const inPlace = evaluator.runInPlace({ x: fed });
    expect(inPlace[0].toArray()).toEqual([2, 4, 6]);
    evaluator.recycle(inPlace);
  });

  it("a loop that makes a new feed tensor every iteration does not grow the arena", () => {
    const x = variable("x");
    const evaluator = new Evaluator([sum(x.mul(x))]);
    let after: ReturnType<typeof arenaStats>;
    for (let i = 0; i < 3000; i++) {
      const value = tensor(
        Float64Array.from({ length: 4096 }, (_, k) => k + i),
        { shape: [4096] },
      );
      evaluator.run({ x: value });
      if (i === 100) after = arenaStats();
    }
    expect(arenaStats()).toEqual(after);
  });

  it("the exercise's sgdEpoch over many batches keeps the arena flat", () => {
    const X = variable("X");
    const W = variable("W");
    const b = variable("b");
    const Y = variable("y");
    const Z = logisticRegression(X, W, b);
    const loss = softmaxLoss(Z, Y, 50);
    const [gW, gb] = gradients(loss, [W, b]);
    const evaluator = new Evaluator([Z, loss, gW, gb]);
    const runModel = (Xb: Tensor, yb: Tensor, Wv: Tensor, bv: Tensor) =>
      evaluator.run(
        new Map([
          [X, Xb],
          [Y, yb],
          [W, Wv],
          [b, bv],
        ]),
      ) as [Tensor, Tensor, Tensor, Tensor];
    const rows = 2000;
    const data = filled([rows, 64], 5);
    const labels = tensor(Array.from({ length: rows }, (_, i) => i % 10));
    let Wv = filled([64, 10], 6);
    let bv = filled([10], 7);
    let after: ReturnType<typeof arenaStats>;
    for (let epoch = 0; epoch < 12; epoch++) {
      ({ W: Wv, b: bv } = sgdEpoch(runModel, data, labels, Wv, bv, 50, 0.05));
      if (epoch === 1) after = arenaStats();
    }
    expect(arenaStats()).toEqual(after);
    expect(Number.isFinite(Wv.data[0])).toBe(true);
  });

  // The arena is the wasm backend's: on js there is nothing to count (and its conv is slow).
  it.runIf(process.env.ADJOINT_BACKEND === "wasm")(
    "a model's evaluation every epoch takes no new arena blocks after the first (the cnn's)",
    () => {
      const spec = modelSpec("cnn", 784, [], 10, "tutorial");
      const params = initParams(spec, new Rng(1), "float32");
      const data = {
        X: filled([1500, 784], 3),
        y: Int32Array.from({ length: 1500 }, (_, i) => i % 10),
        classes: 10,
      };
      accuracy(spec, params, data, 100);
      const after = arenaStats();
      for (let epoch = 0; epoch < 3; epoch++) accuracy(spec, params, data, 100);
      expect(arenaStats()).toEqual(after);
    },
  );

  it("data sets handed to users are plain arrays on either backend (onnxruntime-node refuses shared memory)", () => {
    for (const t of [loadDigits().X, loadMnist().X, loadMnistFull().test.X]) {
      expect(t.data.buffer).toBeInstanceOf(ArrayBuffer);
      expect(inBackendMemory(t.data)).toBe(false);
    }
  });
});
