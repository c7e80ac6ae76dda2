/** fit() with fixed inputs (constants and buffers), and the options it now refuses by name. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";
import type { Node, Tensor } from "../../src/index.js";

const rows = 48;
const X = adj.variable("X", { shape: [null, 3], dtype: "float32" });
const Y = adj.variable("Y", { shape: [null, 2], dtype: "float32" });
const W = adj.variable("W", { shape: [3, 2], dtype: "float32" });
const mask = adj.variable("mask", { shape: [3, 2], dtype: "float32" });
const Xs = adj.tensor(
  Float32Array.from({ length: rows * 3 }, (_, i) => Math.sin(1.7 * i)),
  { shape: [rows, 3] },
);
const Ys = adj.tensor(
  Float32Array.from({ length: rows * 2 }, (_, i) => Number(i % 2 === Math.floor(i / 2) % 2)),
  { shape: [rows, 2] },
);
const W0 = adj.tensor(
  [
    [0.1, 0.2],
    [0.3, 0.4],
    [0.5, 0.6],
  ],
  { dtype: "float32" },
);
const M = adj.tensor(
  [
    [1, 0],
    [1, 1],
    [0, 1],
  ],
  { dtype: "float32" },
);
const bias = adj.tensor([[0.25, -0.25]], { dtype: "float32" });

/** SGD on whole batches in order, through the Evaluator: the reference fit() must match. */
function reference(
  loss: Node,
  fixed: Map<Node, Tensor>,
  batch: number,
  lr: number,
  epochs: number,
) {
  const [dW] = adj.gradients(loss, [W]);
  const evaluator = new adj.Evaluator([dW]);
  const w = W0.clone();
  for (let e = 0; e < epochs; e++) {
    for (let start = 0; start < rows; start += batch) {
      const take = (t: Tensor, width: number) =>
        adj.tensor(t.data.slice(start * width, (start + batch) * width), {
          shape: [batch, width],
        });
      const [g] = evaluator.run(
        new Map<Node, Tensor>([[X, take(Xs, 3)], [Y, take(Ys, 2)], [W, w], ...fixed]),
      );
      for (let i = 0; i < w.size; i++) w.data[i] -= lr * g.data[i];
    }
  }
  return [...w.data];
}

describe("fit() with fixed inputs", () => {
  const options = (loss: Node) => ({
    loss,
    params: new Map([[W, W0]]),
    data: new Map([
      [X, Xs],
      [Y, Ys],
    ]),
    batchSize: 16,
    epochs: 2,
    shuffle: false,
    reduction: "sum" as const,
    optimizer: { kind: "sgd" as const, lr: 0.05 },
  });

  it("a constant() in the loss trains (it crashed the wasm compiled step), same bits on 1 and 2 threads", async () => {
    const loss = adj.softmaxCrossEntropy(adj.matmul(X, W).add(adj.constant(bias)), Y, {
      reduction: "sum",
    });
    const one = await adj.fit({ ...options(loss), threads: 1 });
    const two = await adj.fit({ ...options(loss), threads: 2 });
    expect(two.paramsHash).toBe(one.paramsHash);
    const want = reference(loss, new Map(), 16, 0.05, 2);
    [...one.params.get(W)!.data].forEach((v, i) => expect(v).toBeCloseTo(want[i], 5));
  });

  it("buffers: a fixed mask on every thread, never trained, the masked weights untouched", async () => {
    const loss = adj.softmaxCrossEntropy(adj.matmul(X, W.mul(mask)), Y, { reduction: "sum" });
    const buffers = new Map([[mask, M]]);
    const one = await adj.fit({ ...options(loss), buffers, threads: 1 });
    const two = await adj.fit({ ...options(loss), buffers, threads: 2 });
    expect(two.paramsHash).toBe(one.paramsHash);
    const trained = [...one.params.get(W)!.data];
    const want = reference(loss, new Map([[mask, M]]), 16, 0.05, 2);
    trained.forEach((v, i) => expect(v).toBeCloseTo(want[i], 5));
    // Where the mask is 0 the weight gets no gradient.
    expect(trained[1]).toBe(W0.data[1]);
    expect(trained[4]).toBe(W0.data[4]);
    expect(one.params.has(mask)).toBe(false);
  });

  it("a checkpoint's fingerprint holds the data's and the buffers' values", async () => {
    const dir = mkdtempSync(join(tmpdir(), "adjoint-fit-inputs-"));
    try {
      const loss = adj.softmaxCrossEntropy(adj.matmul(X, W.mul(mask)), Y);
      const checkpoint = join(dir, "c.ckpt");
      const base = { ...options(loss), reduction: "mean" as const, checkpoint, threads: 1 };
      await adj.fit({ ...base, buffers: new Map([[mask, M]]) });
      const otherData = new Map([
        [X, Xs.clone()],
        [Y, Ys.clone()],
      ]);
      otherData.get(X)!.data[5] += 1; // same rows, one value changed
      await expect(
        adj.fit({
          ...base,
          data: otherData,
          buffers: new Map([[mask, M]]),
          resume: true,
          epochs: 3,
        }),
      ).rejects.toThrow(/other settings; data: checkpoint "[0-9a-f]+", this run "[0-9a-f]+"/);
      const otherMask = M.clone();
      otherMask.data[0] = 0;
      await expect(
        adj.fit({ ...base, buffers: new Map([[mask, otherMask]]), resume: true, epochs: 3 }),
      ).rejects.toThrow(/other settings; buffers/);
      const resumed = await adj.fit({
        ...base,
        buffers: new Map([[mask, M]]),
        resume: true,
        epochs: 3,
      });
      expect(resumed.history).toHaveLength(3);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("fit() options refused by name", () => {
  const loss = adj.softmaxCrossEntropy(adj.matmul(X, W), Y);
  const base = {
    loss,
    params: new Map([[W, W0]]),
    data: new Map([
      [X, Xs],
      [Y, Ys],
    ]),
  };
  it.each([
    ['shuffle: "no"', { shuffle: "no" }, "fit: shuffle must be a boolean, got string"],
    ['signal: "stop"', { signal: "stop" }, "fit: signal must be an AbortSignal"],
    ["resume without a checkpoint", { resume: true }, "fit: resume: true needs the checkpoint"],
    ['batchSize: "32"', { batchSize: "32" }, 'fit: batchSize must be a number, got string "32"'],
    [
      'optimizer: "adam"',
      { optimizer: "adam" },
      'optimizer must be an object such as { kind: "adam", lr: 1e-3 }, got the string "adam"',
    ],
    ["adam without lr", { optimizer: { kind: "adam" } }, "optimizer adam: lr is required"],
    [
      "a misspelt optimizer key",
      { optimizer: { kind: "sgd", lr: 0.1, learningRate: 5 } },
      'optimizer: unknown option "learningRate"',
    ],
    [
      "float32 values for float64 declarations",
      {
        params: new Map([[adj.variable("W", { shape: [3, 2], dtype: "float64" }), W0]]),
      },
      "fit: W: fed dtype float32, declared float64",
    ],
    [
      "a buffer that is also a parameter",
      { buffers: new Map([[W, W0]]) },
      "fit: W is in more than one of params, data and buffers",
    ],
    [
      "a fixed tensor passed nowhere",
      { loss: adj.softmaxCrossEntropy(adj.matmul(X, W.mul(mask)), Y) },
      /the loss needs "mask", in none of params, data and buffers \(a fixed tensor that is not split into rows goes in buffers\)/,
    ],
    [
      "a summed cross-entropy under fit's default mean",
      { loss: adj.softmaxCrossEntropy(adj.matmul(X, W), Y, { reduction: "sum" }) },
      'fit: the loss is softmaxCrossEntropy with reduction "sum" but fit\'s reduction is "mean" (the default): give both the same',
    ],
    [
      "NaN in the data",
      {
        data: new Map([
          [
            X,
            adj.tensor(
              Float32Array.from(Xs.data, (v, i) => (i === 7 ? NaN : v)),
              { shape: [rows, 3] },
            ),
          ],
          [Y, Ys],
        ]),
      },
      "fit: data X holds NaN at element 7: every value must be finite",
    ],
    [
      "Infinity in a parameter",
      {
        params: new Map([
          [
            W,
            adj.tensor(
              Float32Array.from(W0.data, (v, i) => (i === 2 ? Infinity : v)),
              { shape: [3, 2] },
            ),
          ],
        ]),
      },
      "fit: params W holds Infinity at element 2: every value must be finite",
    ],
    [
      "0 rows of data",
      {
        data: new Map([
          [X, adj.zeros([0, 3], "float32")],
          [Y, adj.zeros([0, 2], "float32")],
        ]),
      },
      "fit: data has 0 rows (X [0,3], Y [0,2]): nothing to train on",
    ],
  ])("%s", async (_what, extra, message) => {
    await expect(adj.fit({ ...base, ...(extra as object) } as never)).rejects.toThrow(message);
  });
});
