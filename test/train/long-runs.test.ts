/** Long runs: fit()'s memory stays flat over many steps and epochs, and its rates stay bounded. */
import { describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";
import type { WasmBackend } from "../../src/backends/wasm.js";
import { COLD_STEPS, StepRates } from "../../src/train/rates.js";

describe("StepRates", () => {
  it("gives the exact cold, warm and overall rates of a short run", () => {
    const rates = new StepRates();
    const rows = (i: number) => 10 + (i % 3);
    const secs = (i: number) => 0.001 * (1 + (i % 5));
    for (let i = 0; i < 301; i++) rates.add(rows(i), secs(i));
    const sum = (from: number, to: number, f: (i: number) => number) => {
      let s = 0;
      for (let i = from; i < to; i++) s += f(i);
      return s;
    };
    const r = rates.rates();
    expect(r.all).toBeCloseTo(sum(0, 301, rows) / sum(0, 301, secs), 9);
    expect(r.cold).toBeCloseTo(sum(0, COLD_STEPS, rows) / sum(0, COLD_STEPS, secs), 9);
    expect(r.warm).toBeCloseTo(sum(150, 301, rows) / sum(150, 301, secs), 9);
  });
  it("keeps at most about a thousand samples over 200,000 steps, the warm rate within 0.2%", () => {
    const rates = new StepRates();
    const secs = (i: number) => (i < 100_000 ? 0.002 : 0.001 * (1 + (i % 7) / 7));
    let warmRows = 0;
    let warmSeconds = 0;
    for (let i = 0; i < 200_000; i++) {
      rates.add(32, secs(i));
      if (i >= 100_000) [warmRows, warmSeconds] = [warmRows + 32, warmSeconds + secs(i)];
    }
    expect(rates.sampleCount).toBeLessThanOrEqual(1025);
    expect(Math.abs(rates.rates().warm / (warmRows / warmSeconds) - 1)).toBeLessThan(0.002);
  });
});

describe("fit() over many steps", () => {
  /** A one-weight regression fit with `onStep` watching the arena and the history. */
  async function longFit(rows: number, batchSize: number, epochs: number) {
    const x = adj.variable("x", { shape: [null, 1], dtype: "float32" });
    const y = adj.variable("y", { shape: [null, 1], dtype: "float32" });
    const W = adj.variable("W", { shape: [1, 1], dtype: "float32" });
    const error = adj.matmul(x, W).sub(y);
    const xs = Float32Array.from({ length: rows }, (_, i) => i / rows);
    const arena = (adj.backend() as Partial<WasmBackend>).arena;
    const arrays: number[] = [];
    const result = await adj.fit({
      loss: adj.mean(error.mul(error)), // mean: its gradient's unreduce makes a temporary
      params: new Map([[W, adj.tensor(new Float32Array([0.5]), { shape: [1, 1] })]]),
      data: new Map([
        [x, adj.tensor(xs, { shape: [rows, 1] })],
        [
          y,
          adj.tensor(
            xs.map((v) => 2 * v),
            { shape: [rows, 1] },
          ),
        ],
      ]),
      batchSize,
      epochs,
      threads: 1,
      optimizer: { kind: "sgd", lr: 0.1 },
      onStep: ({ step }) => {
        if (step % 500 === 0) arrays.push(arena?.stats.arrays ?? 0);
      },
    });
    return { result, arrays };
  }

  it("3,000 one-step epochs: the history has every epoch, the arena does not grow after step 500", async () => {
    const { result, arrays } = await longFit(8, 8, 3000);
    expect(result.history).toHaveLength(3000);
    expect(result.history.map((h) => h.epoch)).toEqual(
      Array.from({ length: 3000 }, (_, i) => i + 1),
    );
    expect(new Set(arrays.slice(1)).size).toBe(1);
    expect(result.params.values().next().value!.data[0]).toBeCloseTo(2, 3);
  });

  it("3,000 steps in few epochs: the arena does not grow after step 500", async () => {
    const { result, arrays } = await longFit(4000, 4, 3);
    expect(result.steps).toBe(3000);
    expect(new Set(arrays.slice(1)).size).toBe(1);
  });
});

describe("fit() called again and again", () => {
  it("a conv net fit 12 times in one process: the arena does not grow after the first, with no collection", async () => {
    const X = adj.variable("X", { shape: [null, 64], dtype: "float32" });
    const Y = adj.variable("Y", { shape: [null, 4], dtype: "float32" });
    const nn = new adj.Layers({ seed: 1 });
    const image = adj.reshape(X, [-1, 1, 8, 8]);
    const h = adj.maxPool2d(adj.relu(nn.conv2d("c", image, { filters: 4, size: 3 })), { size: 2 });
    const logits = nn.dense("d", adj.reshape(h, [-1, 36]), 4);
    const rows = 96;
    const xs = Float32Array.from({ length: rows * 64 }, (_, i) => Math.sin(i * 0.37));
    const data = new Map([
      [X, adj.tensor(xs, { shape: [rows, 64] })],
      [
        Y,
        adj.oneHot(
          Int32Array.from({ length: rows }, (_, i) => i % 4),
          4,
          "float32",
        ),
      ],
    ]);
    const arena = (adj.backend() as Partial<WasmBackend>).arena;
    const blocks: number[] = [];
    const hashes = new Set<string>();
    for (let run = 0; run < 12; run++) {
      const result = await adj.fit({
        loss: adj.softmaxCrossEntropy(logits, Y),
        params: nn.params,
        data,
        batchSize: 32,
        epochs: 2,
        threads: 1,
      });
      hashes.add(result.paramsHash);
      blocks.push(arena?.highWater ?? 0);
    }
    // Each run gives its programs', rows' and column copies' blocks back at its end: the next
    // run takes them, so the arena's high water stays where the first run left it.
    expect(new Set(blocks.slice(1)).size).toBe(1);
    expect(blocks[1]).toBe(blocks[0]);
    expect(hashes.size).toBe(1); // the same run every time
  });
});
