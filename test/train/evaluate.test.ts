/** evaluate(): outputs over a dataset in batches, rows concatenated, 0-d outputs averaged. */
import { expect, it } from "vitest";
import * as adj from "../../src/index.js";
import { evaluate } from "../../src/train/evaluate.js";

it("per-row outputs are concatenated and 0-d outputs are the dataset mean, whatever the batch", () => {
  const X = adj.variable("X");
  const w = adj.variable("w");
  const rows = adj.matmul(X, w); // one value per example
  const meanSquare = adj.mean(rows.mul(rows)); // a batch mean
  const data = adj.tensor(Array.from({ length: 7 }, (_, r) => [r, 1]));
  const feeds = new Map([[w, adj.tensor([[2], [0.5]])]]);
  const expectedRows = Array.from({ length: 7 }, (_, r) => 2 * r + 0.5);
  const expectedMean = expectedRows.reduce((s, v) => s + v * v, 0) / 7;
  for (const batchSize of [1, 3, 7, 100]) {
    const [values, m] = evaluate([rows, meanSquare], new Map([[X, data]]), { batchSize, feeds });
    expect(values.shape).toEqual([7, 1]);
    expect([...values.data]).toEqual(expectedRows);
    expect(m.shape).toEqual([]);
    expect(m.item()).toBeCloseTo(expectedMean, 12);
  }
  expect(() => evaluate([adj.sum(X, { axis: 0 })], new Map([[X, data]]), { batchSize: 3 })).toThrow(
    /evaluate: output sum\(X,axis=0\) has shape \[2\]: neither 0-d nor one row per example \(3\)/,
  );
  expect(() => evaluate([rows], new Map([[X, data]]), { batch: 3 } as never)).toThrow(
    /unknown option "batch"/,
  );
});
