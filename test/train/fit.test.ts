/** fit(): a user's graph on the worker pool, bitwise identical for any thread count. */
import { availableParallelism } from "node:os";
import { describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";
import type { Node, Tensor } from "../../src/index.js";
import { Rng } from "../../src/train/random.js";

/** A two-layer tanh network on a synthetic problem: y = sin(x0) + x1^2 / 2 with noise. */
function problem(dtype: "float32" | "float64", rows = 256) {
  const rng = new Rng(7);
  const X = Float64Array.from({ length: rows * 2 }, () => rng.uniform(-2, 2));
  const Y = Float64Array.from({ length: rows }, (_, r) => {
    const [a, b] = [X[2 * r], X[2 * r + 1]];
    return Math.sin(a) + (b * b) / 2 + 0.05 * rng.normal();
  });
  const x = adj.variable("x", { shape: [null, 2], dtype });
  const y = adj.variable("y", { shape: [null, 1], dtype });
  const W1 = adj.variable("W1", { shape: [2, 16], dtype });
  const b1 = adj.variable("b1", { shape: [16], dtype });
  const W2 = adj.variable("W2", { shape: [16, 1], dtype });
  const b2 = adj.variable("b2", { shape: [1], dtype });
  const hidden = adj.tanh(adj.matmul(x, W1).add(b1));
  const error = adj.matmul(hidden, W2).add(b2).sub(y);
  const loss = adj.mean(error.mul(error)); // the batch's mean squared error
  const init = (shape: number[], scale: number) =>
    adj.tensor(
      Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => scale * rng.normal()),
      { shape, dtype },
    );
  const params = new Map<Node, Tensor>([
    [W1, init([2, 16], 0.7)],
    [b1, init([16], 0.1)],
    [W2, init([16, 1], 0.25)],
    [b2, init([1], 0.1)],
  ]);
  const data = new Map<Node, Tensor>([
    [x, adj.tensor(X, { shape: [rows, 2], dtype })],
    [y, adj.tensor(Y, { shape: [rows, 1], dtype })],
  ]);
  return { loss, params, data, x, y, W1, error };
}

describe("fit() on a user-built graph", () => {
  it("splits a batch of large rows (a convolution's) into shards of 8 rows; an MLP's into 32", async () => {
    const X = adj.variable("X", { shape: [null, 784], dtype: "float32" });
    const Y = adj.variable("Y", { shape: [null, 10], dtype: "float32" });
    const K = adj.variable("K", { shape: [8, 1, 5, 5], dtype: "float32" });
    const D = adj.variable("D", { shape: [8 * 12 * 12, 10], dtype: "float32" });
    const image = adj.reshape(X, [-1, 1, 28, 28]);
    const pooled = adj.maxPool2d(adj.relu(adj.conv2d(image, K)), { size: 2 });
    const logits = adj.matmul(adj.reshape(pooled, [-1, 8 * 12 * 12]), D);
    const wave = (n: number, seed: number) =>
      Float32Array.from({ length: n }, (_, i) => 0.1 * Math.sin(seed * 3.1 + i * 0.7));
    const params = new Map([
      [K, adj.tensor(wave(200, 1), { shape: [8, 1, 5, 5] })],
      [D, adj.tensor(wave(11520, 2), { shape: [1152, 10] })],
    ]);
    const labels = Float32Array.from({ length: 640 }, (_, i) => Number(i % 10 === 3));
    const data = new Map([
      [X, adj.tensor(wave(64 * 784, 3), { shape: [64, 784] })],
      [Y, adj.tensor(labels, { shape: [64, 10] })],
    ]);
    const options = { loss: adj.softmaxCrossEntropy(logits, Y), params, data, steps: 2 };
    const conv = await adj.fit({ ...options, batchSize: 64, threads: 1 });
    expect(conv.microShards).toBe(8);
    // The given split stands; a dense layer's rows stay in shards of 32.
    expect(
      (await adj.fit({ ...options, batchSize: 64, microShards: 2, threads: 1 })).microShards,
    ).toBe(2);
    const dense = adj.matmul(X, adj.variable("W", { shape: [784, 10], dtype: "float32" }));
    const W = [...dense.inputs][1];
    const mlp = await adj.fit({
      loss: adj.softmaxCrossEntropy(dense, Y),
      params: new Map([[W, adj.tensor(wave(7840, 4), { shape: [784, 10] })]]),
      data,
      batchSize: 64,
      steps: 2,
      threads: 1,
    });
    expect(mlp.microShards).toBe(2);
  });

  it("trains: the loss falls, and threads 1, 2 and 3 give the same parameters bit for bit", async () => {
    const { loss, params, data } = problem("float32");
    const run = (threads: number) =>
      adj.fit({
        loss,
        params,
        data,
        batchSize: 64,
        epochs: 8,
        optimizer: { kind: "adam", lr: 0.02 },
        threads,
        seed: 3,
      });
    const one = await run(1);
    expect(one.microShards).toBe(2);
    expect(one.history).toHaveLength(8);
    expect(one.history[7].loss).toBeLessThan(one.history[0].loss / 2);
    const two = await run(2);
    const three = await run(3);
    expect(two.threads).toBe(2);
    expect(three.threads).toBe(2); // at most one thread per micro-shard
    expect(two.paramsHash).toBe(one.paramsHash);
    expect(three.paramsHash).toBe(one.paramsHash);
    // Four shards of 32 rows: three threads are used, and agree with one.
    const byThreads = (threads: number) =>
      adj.fit({ loss, params, data, batchSize: 128, epochs: 2, microShards: 4, threads, seed: 3 });
    const [four, fourOne] = [await byThreads(3), await byThreads(1)];
    expect(four.threads).toBe(3);
    expect(four.paramsHash).toBe(fourOne.paramsHash);
    // The initial values are the caller's and stay untouched.
    expect(params.get([...params.keys()][0])!.data[0]).not.toBe(
      one.params.get([...params.keys()][0])!.data[0],
    );
  });

  it.each(["mean", "sum"] as const)(
    "reduction %s: one SGD step equals whole-batch gradients(loss, params) to rounding (float64)",
    async (reduction) => {
      const { loss: meanLoss, params, data, error } = problem("float64", 96);
      const loss = reduction === "mean" ? meanLoss : adj.sum(error.mul(error));
      const lr = 0.1;
      const result = await adj.fit({
        loss,
        params,
        data,
        reduction,
        batchSize: 96,
        steps: 1,
        microShards: 5, // shards of 20 and 19 rows: the weighting of unequal shards matters
        optimizer: { kind: "sgd", lr },
        threads: 2,
      });
      expect(result.steps).toBe(1);
      const nodes = [...params.keys()];
      const grads = new adj.Evaluator(adj.gradients(loss, nodes)).run(
        new Map([...params, ...data]),
      );
      nodes.forEach((p, i) => {
        const before = params.get(p)!.data;
        const after = result.params.get(p)!.data;
        after.forEach((v, k) => expect(v).toBeCloseTo(before[k] - lr * grads[i].data[k], 12));
      });
    },
  );

  it("an AbortSignal stops at a step boundary; onStep and onEpoch report", async () => {
    const { loss, params, data } = problem("float32");
    const controller = new AbortController();
    const steps: number[] = [];
    const result = await adj.fit({
      loss,
      params,
      data,
      batchSize: 32,
      epochs: 5,
      threads: 1,
      signal: controller.signal,
      onStep: ({ step, loss: value }) => {
        expect(Number.isFinite(value)).toBe(true);
        steps.push(step);
        if (step === 11) controller.abort();
      },
    });
    expect(result.stopped).toBe(true);
    expect(result.steps).toBe(11);
    expect(steps).toEqual(Array.from({ length: 11 }, (_, i) => i + 1));
    expect(result.history).toHaveLength(1); // 8 steps per epoch: one epoch completed
  });
});

describe("fit() refuses bad input before any step, naming what is wrong", () => {
  const { loss, params, data, x, y, W1 } = problem("float32", 64);
  const other = adj.variable("other");
  it.each([
    [
      "a loss that is not 0-d",
      () => adj.fit({ loss: adj.matmul(x, W1), params, data }),
      /fit: loss must be 0-d .* has shape \[null,16\]/,
    ],
    [
      "a variable in neither map",
      () => adj.fit({ loss: adj.add(loss, adj.sum(other)), params, data }),
      'fit: the loss needs "other", in none of params, data and buffers',
    ],
    [
      "a parameter the loss ignores",
      () =>
        adj.fit({ loss, params: new Map([...params, [other, adj.zeros([1], "float32")]]), data }),
      'fit: the loss does not depend on "other": remove it from params',
    ],
    [
      "different row counts",
      () =>
        adj.fit({
          loss,
          params,
          data: new Map([
            [x, data.get(x)!],
            [y, adj.zeros([63, 1], "float32")],
          ]),
        }),
      "fit: data tensors have different row counts: x 64, y 63",
    ],
    [
      "a batch larger than the data",
      () => adj.fit({ loss, params, data, batchSize: 65 }),
      "fit: batchSize 65 is larger than the 64 rows of data",
    ],
    [
      "mixed dtypes",
      () =>
        adj.fit({
          loss,
          params,
          data: new Map([
            [x, data.get(x)!.clone({ dtype: "float64" })],
            [y, data.get(y)!],
          ]),
        }),
      // x is declared float32: the declaration is checked first, naming the variable.
      "fit: x: fed dtype float64, declared float32",
    ],
    [
      "an unknown option",
      () => adj.fit({ loss, params, data, batch_size: 4 } as never),
      'fit(options): unknown option "batch_size"',
    ],
    [
      "a bad reduction",
      () => adj.fit({ loss, params, data, reduction: "avg" as never }),
      'fit: reduction must be "mean" or "sum", got "avg"',
    ],
  ])("%s", async (_what, call, message) => {
    await expect(call()).rejects.toThrow(message);
  });
});

describe("fit() checkpoints", () => {
  it("a run stopped and resumed from its checkpoint ends with the uninterrupted run's bits", async () => {
    const { mkdtempSync, rmSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "adjoint-fit-"));
    try {
      const { loss, params, data } = problem("float32", 128);
      const base = { loss, params, data, batchSize: 32, epochs: 3, threads: 2, seed: 5 };
      const straight = await adj.fit(base);
      const checkpoint = join(dir, "fit.ckpt");
      const controller = new AbortController();
      const first = await adj.fit({
        ...base,
        checkpoint,
        signal: controller.signal,
        onStep: ({ step }) => {
          if (step === 6) controller.abort(); // mid-epoch 2
        },
      });
      expect(first.stopped).toBe(true);
      expect(first.steps).toBe(6);
      const resumed = await adj.fit({ ...base, checkpoint, resume: true });
      expect(resumed.steps).toBe(12 - 6);
      expect(resumed.paramsHash).toBe(straight.paramsHash);
      expect(resumed.history.map((r) => r.epoch)).toEqual([1, 2, 3]);
      await expect(adj.fit({ ...base, checkpoint })).rejects.toThrow(/already exists/);
      await expect(adj.fit({ ...base, batchSize: 64, checkpoint, resume: true })).rejects.toThrow(
        /other settings; batchSize: checkpoint 32, this run 64/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("fit() with a custom op", () => {
  it("trains on 1 thread, and says why not on several", async () => {
    const scale = adj.defineOp({
      name: "fitTestScale",
      type: ([x]) => x,
      compute: (_node, [x]) => adj.backend().scalar("mul", x, 2),
      gradient: (_node, g) => [adj.mulByConst(g, 2)],
    });
    const { params, data, x, y, W1 } = problem("float32", 64);
    const out = adj.apply(scale, [adj.matmul(x, W1)]);
    const loss = adj.mean(
      adj
        .sum(out, { axis: 1, keepdims: true })
        .sub(y)
        .mul(adj.sum(out, { axis: 1, keepdims: true }).sub(y)),
    );
    const only = new Map([[W1, params.get(W1)!]]);
    const one = await adj.fit({
      loss,
      params: only,
      data,
      batchSize: 64,
      microShards: 2,
      threads: 1,
    });
    expect(one.steps).toBe(1);
    const auto = await adj.fit({ loss, params: only, data, batchSize: 64, microShards: 2 });
    expect(auto.threads).toBe(1);
    expect(auto.paramsHash).toBe(one.paramsHash);
    await expect(
      adj.fit({ loss, params: only, data, batchSize: 64, microShards: 2, threads: 2 }),
    ).rejects.toThrow(
      'fit: the graph uses "fitTestScale", defined in this thread only: worker threads cannot rebuild it; pass threads: 1',
    );
  });
});

describe('fit\'s threads: "auto" weighs the step', () => {
  /** A dense net in -> hidden -> 1 on `rows` random rows, trained for `steps` steps. */
  function dense(inputs: number, hidden: number, rows: number) {
    const rng = new Rng(3);
    const x = adj.variable("x", { shape: [null, inputs], dtype: "float32" });
    const y = adj.variable("y", { shape: [null, 1], dtype: "float32" });
    const W1 = adj.variable("W1", { shape: [inputs, hidden], dtype: "float32" });
    const W2 = adj.variable("W2", { shape: [hidden, 1], dtype: "float32" });
    const error = adj.matmul(adj.tanh(adj.matmul(x, W1)), W2).sub(y);
    const values = (n: number, scale: number) =>
      Float32Array.from({ length: n }, () => scale * rng.uniform(-1, 1));
    return {
      loss: adj.mean(error.mul(error)),
      params: new Map<Node, Tensor>([
        [W1, adj.tensor(values(inputs * hidden, 0.05), { shape: [inputs, hidden] })],
        [W2, adj.tensor(values(hidden, 0.05), { shape: [hidden, 1] })],
      ]),
      data: new Map<Node, Tensor>([
        [x, adj.tensor(values(rows * inputs, 1), { shape: [rows, inputs] })],
        [y, adj.tensor(values(rows, 1), { shape: [rows, 1] })],
      ]),
      batchSize: 128,
      steps: 2,
    };
  }

  it("one thread for a step of a few µs of products (threads would cost more), the same bits", async () => {
    const small = dense(2, 16, 256); // 6 x 128 x (2x16 + 16): about 0.04 MFLOP a step
    const auto = await adj.fit(small);
    expect(auto.threads).toBe(1);
    expect(auto.paramsHash).toBe((await adj.fit({ ...small, threads: 2 })).paramsHash);
  });

  it("a thread per core (at most one per micro-shard) for a step of milliseconds", async () => {
    const large = dense(784, 256, 256); // about 0.15 GFLOP a step: 8 ms at 20 GFLOP/s
    const auto = await adj.fit(large);
    expect(auto.threads).toBe(Math.min(availableParallelism(), 4)); // batch 128: 4 shards
  });
});
