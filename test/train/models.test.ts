/** Model specs, initialisation statistics, and the sharded training plan against plain gradients. */
import { describe, expect, it } from "vitest";
import { gradients } from "../../src/autodiff/gradients.js";
import { variable } from "../../src/graph/node.js";
import { logSoftmax, mul, neg, sum } from "../../src/graph/ops/index.js";
import { Evaluator } from "../../src/runtime/evaluator.js";
import {
  allocateShared,
  CONTROL,
  shardBounds,
  sliceBounds,
} from "../../src/train/parallel/state.js";
import { ShardRunner } from "../../src/train/parallel/shard.js";
import { Tensor } from "../../src/tensor/tensor.js";
import { oneHot } from "../../src/train/data.js";
import {
  buildTrainPlan,
  forward,
  initParams,
  modelSpec,
  paramSpecs,
  type ModelSpec,
} from "../../src/train/models.js";
import { Rng } from "../../src/train/random.js";
import { defaultMicroShards, shardCountFor } from "../../src/train/config.js";
import { paramsHash } from "../../src/train/serialize.js";

function stats(data: ArrayLike<number>): { mean: number; std: number; maxAbs: number } {
  let s = 0;
  let maxAbs = 0;
  for (let i = 0; i < data.length; i++) {
    s += data[i];
    maxAbs = Math.max(maxAbs, Math.abs(data[i]));
  }
  const mean = s / data.length;
  let ss = 0;
  for (let i = 0; i < data.length; i++) ss += (data[i] - mean) ** 2;
  return { mean, std: Math.sqrt(ss / data.length), maxAbs };
}

describe("paramSpecs", () => {
  it("logistic regression: W1 (inputs x classes), b1 (classes)", () => {
    const spec = modelSpec("logreg", 64, [], 10);
    expect(spec).toEqual({ kind: "logreg", sizes: [64, 10] });
    expect(paramSpecs(spec)).toEqual([
      { name: "W1", shape: [64, 10] },
      { name: "b1", shape: [10] },
    ]);
  });

  it("MLP [784, 128, 64, 10]: W1, b1, W2, b2, W3, b3 in order", () => {
    const spec = modelSpec("mlp", 784, [128, 64], 10);
    expect(spec.sizes).toEqual([784, 128, 64, 10]);
    expect(paramSpecs(spec)).toEqual([
      { name: "W1", shape: [784, 128] },
      { name: "b1", shape: [128] },
      { name: "W2", shape: [128, 64] },
      { name: "b2", shape: [64] },
      { name: "W3", shape: [64, 10] },
      { name: "b3", shape: [10] },
    ]);
  });

  it("modelSpec rejects bad sizes and an MLP without hidden layers", () => {
    expect(() => modelSpec("mlp", 784, [], 10)).toThrow(/at least one hidden layer/);
    expect(() => modelSpec("mlp", 784, [0], 10)).toThrow(/positive integers, got \[784,0,10\]/);
    expect(() => modelSpec("logreg", 64, [], 1.5)).toThrow(/positive integers/);
    // logreg ignores hidden sizes
    expect(modelSpec("logreg", 64, [32], 10).sizes).toEqual([64, 10]);
  });
});

describe("initParams", () => {
  const spec = modelSpec("mlp", 784, [128, 64], 10);

  it("is deterministic per seed and differs between seeds", () => {
    const a = initParams(spec, new Rng(3), "float64");
    const b = initParams(spec, new Rng(3), "float64");
    const c = initParams(spec, new Rng(4), "float64");
    expect(paramsHash(a)).toBe(paramsHash(b));
    expect(paramsHash(a)).not.toBe(paramsHash(c));
    expect(a.map((t) => t.shape)).toEqual(paramSpecs(spec).map((p) => p.shape));
    expect(a.every((t) => t.dtype === "float64")).toBe(true);
    const f32 = initParams(spec, new Rng(3), "float32");
    expect(f32.every((t) => t.dtype === "float32")).toBe(true);
    // The same draws, rounded to float32.
    expect(f32[4].data[7]).toBe(Math.fround(a[4].data[7]));
  });

  it("draws He-normal hidden weights (std sqrt(2 / fanIn)), Glorot-uniform output weights, zero biases", () => {
    const [W1, b1, W2, b2, W3, b3] = initParams(spec, new Rng(0), "float64");
    for (const b of [b1, b2, b3]) expect(b.data.every((v) => v === 0)).toBe(true);

    // He-normal, 100352 draws: the sample std is within ~0.3% of sqrt(2/784); allow 2%.
    const s1 = stats(W1.data);
    const std1 = Math.sqrt(2 / 784);
    expect(Math.abs(s1.std / std1 - 1)).toBeLessThan(0.02);
    expect(Math.abs(s1.mean)).toBeLessThan((5 * std1) / Math.sqrt(W1.size));
    // A normal (unlike a uniform of the same std, bounded by sqrt(3) std) has draws past 3 std.
    expect(s1.maxAbs).toBeGreaterThan(3.5 * std1);

    // 8192 draws: relative standard error ~0.8%; allow 5%.
    const s2 = stats(W2.data);
    const std2 = Math.sqrt(2 / 128);
    expect(Math.abs(s2.std / std2 - 1)).toBeLessThan(0.05);
    expect(s2.maxAbs).toBeGreaterThan(3 * std2);

    // Glorot-uniform on (-limit, limit), limit = sqrt(6 / (64 + 10)); variance limit^2 / 3.
    const limit = Math.sqrt(6 / 74);
    const s3 = stats(W3.data);
    expect(s3.maxAbs).toBeLessThanOrEqual(limit);
    expect(s3.maxAbs).toBeGreaterThan(0.95 * limit);
    expect(Math.abs(s3.std / (limit / Math.sqrt(3)) - 1)).toBeLessThan(0.1);
  });

  it("treats logistic regression's only layer as the output layer (Glorot-uniform)", () => {
    const [W, b] = initParams(modelSpec("logreg", 64, [], 10), new Rng(1), "float32");
    const limit = Math.sqrt(6 / 74);
    const s = stats(W.data);
    expect(s.maxAbs).toBeLessThanOrEqual(limit);
    expect(s.maxAbs).toBeGreaterThan(0.9 * limit);
    expect(b.data.every((v) => v === 0)).toBe(true);
  });
});

describe("shardCountFor", () => {
  it("splits a cnn's or transformer's batch into powers of two of at least 8 rows, at most 16", () => {
    for (const kind of ["cnn", "transformer"] as const) {
      const spec = modelSpec(kind, 784, [], 10);
      for (const [batch, shards] of [
        [8, 1],
        [15, 1],
        [16, 2],
        [50, 4],
        [64, 8],
        [127, 8],
        [128, 16],
        [512, 16],
      ]) {
        const count = shardCountFor(spec, batch);
        expect(count, `${kind} batch ${batch}`).toBe(shards);
        // Every shard has at least 8 rows (shardBounds gives the larger ones first).
        const [lo, hi] = shardBounds(batch, count, count - 1);
        expect(hi - lo).toBeGreaterThanOrEqual(8);
      }
    }
    // An MLP's shards stay at 32 rows or more.
    expect(shardCountFor(modelSpec("mlp", 784, [256], 10), 64)).toBe(2);
    // fit()'s: by the bytes a row's values fill (planRowBytes), small shards from 64 KB.
    expect([64, 50, 512].map((b) => defaultMicroShards(b, 7 * 1024))).toEqual([2, 1, 16]);
    expect([64, 50, 512].map((b) => defaultMicroShards(b, 64 * 1024))).toEqual([8, 4, 16]);
  });
});

describe("shardBounds", () => {
  it("partitions every batch of 1..40 rows into contiguous shards differing by at most one row", () => {
    for (let batch = 1; batch <= 40; batch++) {
      for (let count = 1; count <= 9; count++) {
        let expectedLo = 0;
        const sizes: number[] = [];
        for (let s = 0; s < count; s++) {
          const [lo, hi] = shardBounds(batch, count, s);
          expect(lo, `batch ${batch} count ${count} shard ${s}`).toBe(expectedLo);
          expect(hi).toBeGreaterThanOrEqual(lo);
          sizes.push(hi - lo);
          expectedLo = hi;
          expect(sliceBounds(batch, count, s)).toEqual([lo, hi]);
        }
        expect(expectedLo, `batch ${batch} count ${count}`).toBe(batch);
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
        // Larger shards first, so the layout depends on (batch, count) alone.
        expect([...sizes].sort((a, b) => b - a)).toEqual(sizes);
      }
    }
  });
});

/** Plain-loop MLP: summed softmax cross-entropy of the rows, float64. */
function referenceLossSum(
  spec: ModelSpec,
  params: readonly Float64Array[],
  X: Float64Array,
  labels: readonly number[],
): number {
  const layers = spec.sizes.length - 1;
  let total = 0;
  labels.forEach((label, r) => {
    let h = Array.from(X.subarray(r * spec.sizes[0], (r + 1) * spec.sizes[0]));
    for (let l = 0; l < layers; l++) {
      const [fanIn, fanOut] = [spec.sizes[l], spec.sizes[l + 1]];
      const W = params[2 * l];
      const b = params[2 * l + 1];
      const z = Array.from({ length: fanOut }, (_, j) => {
        let s = b[j];
        for (let i = 0; i < fanIn; i++) s += h[i] * W[i * fanOut + j];
        return s;
      });
      h = l < layers - 1 ? z.map((v) => Math.max(0, v)) : z;
    }
    const max = Math.max(...h);
    const lse = max + Math.log(h.reduce((a, v) => a + Math.exp(v - max), 0));
    total += lse - h[label];
  });
  return total;
}

describe("the training plan through ShardRunner", () => {
  const spec = modelSpec("mlp", 5, [4], 3);
  const n = 11;
  const rng = new Rng(11);
  const X = Float64Array.from({ length: n * 5 }, () => rng.normal());
  const y = Int32Array.from({ length: n }, () => rng.int(3));
  const params = initParams(spec, rng, "float64");
  // Non-zero biases, so their gradients and the broadcast are exercised.
  for (const i of [1, 3])
    params[i].data.forEach((_, k) => (params[i].data[k] = rng.normal() * 0.3));
  const batch = [7, 2, 9, 0, 4, 10, 3];

  function makeShared(shardCount: number, optimizerLr = 0.1) {
    const optimizer = { kind: "sgd" as const, lr: optimizerLr };
    const train = buildTrainPlan(spec);
    const shared = allocateShared({
      dtype: "float64",
      columns: [
        { data: X, rowShape: [5] },
        { data: oneHot(y, 3, "float64").data, rowShape: [3] },
      ],
      paramShapes: train.paramShapes,
      optimizer,
      shardCount,
      maxBatch: batch.length,
    });
    let offset = 0;
    for (const p of params) {
      shared.params[0].set(p.data, offset);
      offset += p.size;
    }
    shared.batch.set(batch);
    shared.control[CONTROL.batchSize] = batch.length;
    shared.control[CONTROL.step] = 1;
    const runner = new ShardRunner(train, shared, optimizer);
    runner.beginStep();
    for (let s = 0; s < shardCount; s++) runner.runShard(s);
    const summed = new Float64Array(shared.paramCount);
    for (let s = 0; s < shardCount; s++)
      for (let i = 0; i < shared.paramCount; i++)
        summed[i] += shared.grads[s * shared.paramCount + i];
    const loss = [...shared.losses].reduce((a, b) => a + b, 0);
    return { shared, runner, summed, loss };
  }

  /** Full-batch gradient from gradients() on an unsharded graph. */
  function fullBatch(): { loss: number; grad: Float64Array } {
    const Xn = variable("X");
    const Yn = variable("Y");
    const pn = paramSpecs(spec).map((p) => variable(p.name));
    const lossSum = neg(sum(mul(Yn, logSoftmax(forward(spec, Xn, pn)))));
    const evaluator = new Evaluator([lossSum, ...gradients(lossSum, pn)]);
    const rowsX = new Float64Array(batch.length * 5);
    batch.forEach((r, i) => rowsX.set(X.subarray(r * 5, (r + 1) * 5), i * 5));
    const feeds = new Map([
      [Xn, new Tensor(rowsX, [batch.length, 5])],
      [
        Yn,
        oneHot(
          Int32Array.from(batch, (r) => y[r]),
          3,
          "float64",
        ),
      ],
    ]);
    pn.forEach((p, i) => feeds.set(p, params[i]));
    const [loss, ...grads] = evaluator.run(feeds);
    const grad = new Float64Array(grads.reduce((a, t) => a + t.size, 0));
    let offset = 0;
    for (const t of grads) {
      grad.set(t.data, offset);
      offset += t.size;
    }
    return { loss: loss.item(), grad };
  }

  const relClose = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number) => {
    expect(a.length).toBe(b.length);
    let scale = 0;
    for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
    for (let i = 0; i < b.length; i++) {
      if (!(Math.abs(a[i] - b[i]) <= tol * scale))
        throw new Error(`element ${i}: ${a[i]} vs ${b[i]} (scale ${scale})`);
    }
  };

  it("sums over micro-shards to the full-batch gradient and loss (float64, 1e-12)", () => {
    const full = fullBatch();
    for (const shardCount of [1, 2, 3, 7, 9]) {
      const { summed, loss } = makeShared(shardCount);
      relClose(summed, full.grad, 1e-12);
      expect(Math.abs(loss - full.loss)).toBeLessThan(1e-12 * full.loss);
    }
    // With 9 shards over 7 rows, two shards are empty and contribute zeros.
    const { shared } = makeShared(9);
    expect(shared.losses[7]).toBe(0);
    expect(shared.losses[8]).toBe(0);
  });

  it("matches central differences of a plain-loop loss", () => {
    const { summed, loss } = makeShared(3);
    const labels = batch.map((r) => y[r]);
    const rowsX = new Float64Array(batch.length * 5);
    batch.forEach((r, i) => rowsX.set(X.subarray(r * 5, (r + 1) * 5), i * 5));
    const flat = params.map((p) => Float64Array.from(p.data));
    expect(Math.abs(loss - referenceLossSum(spec, flat, rowsX, labels))).toBeLessThan(1e-12);
    const h = 1e-6;
    const numeric: number[] = [];
    for (const p of flat) {
      for (let k = 0; k < p.length; k++) {
        const orig = p[k];
        p[k] = orig + h;
        const up = referenceLossSum(spec, flat, rowsX, labels);
        p[k] = orig - h;
        const down = referenceLossSum(spec, flat, rowsX, labels);
        p[k] = orig;
        numeric.push((up - down) / (2 * h));
      }
    }
    relClose(summed, numeric, 1e-6);
  });

  it("reduceAndUpdate writes p - lr * (summed gradient / batch size) into the next buffer", () => {
    const whole = makeShared(3, 0.25);
    whole.runner.reduceAndUpdate(0, whole.shared.paramCount);
    const cur = whole.shared.params[0];
    const next = whole.shared.params[1];
    const expected = Array.from(cur, (p, i) => p - 0.25 * (whole.summed[i] / batch.length));
    relClose(next, expected, 1e-15);
    // The current buffer is left alone.
    expect(paramsHash([{ data: cur }])).toBe(
      paramsHash([{ data: makeShared(3).shared.params[0] }]),
    );
    // Reducing in two element ranges gives bitwise the same next buffer.
    const split = makeShared(3, 0.25);
    split.runner.reduceAndUpdate(0, 17);
    split.runner.reduceAndUpdate(17, split.shared.paramCount);
    expect(paramsHash([{ data: split.shared.params[1] }])).toBe(paramsHash([{ data: next }]));
  });
});
