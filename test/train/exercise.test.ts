import { describe, expect, test } from "vitest";
import { gradients } from "../../src/autodiff/gradients.js";
import { variable } from "../../src/graph/node.js";
import { Evaluator } from "../../src/runtime/evaluator.js";
import { tensor, Tensor } from "../../src/tensor/tensor.js";
import { loadDigits, randomSplit } from "../../src/train/data.js";
import {
  logisticRegression,
  sgdEpoch,
  softmaxLoss,
  type RunModel,
} from "../../src/train/exercise.js";
import { Rng } from "../../src/train/random.js";

/** The exercise's runModel: logits, loss and gradients from one Evaluator. */
function makeRunModel(batchSize: number): RunModel {
  const X = variable("X");
  const W = variable("W");
  const b = variable("b");
  const Y = variable("y");
  const Z = logisticRegression(X, W, b);
  const loss = softmaxLoss(Z, Y, batchSize);
  const [gW, gb] = gradients(loss, [W, b]);
  const evaluator = new Evaluator([Z, loss, gW, gb]);
  return (Xb, yb, Wv, bv) => {
    const [z, l, dw, db] = evaluator.run(
      new Map([
        [X, Xb],
        [Y, yb],
        [W, Wv],
        [b, bv],
      ]),
    );
    return [z, l, dw, db];
  };
}

/** Reference softmax cross-entropy in plain float64 loops. */
function referenceLoss(Z: number[][], labels: number[], batchSize: number): number {
  let total = 0;
  Z.forEach((row, i) => {
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, z) => s + Math.exp(z - m), 0));
    total += lse - row[labels[i]];
  });
  return total / batchSize;
}

describe("softmaxLoss", () => {
  test("matches a hand-computed cross-entropy, divided by the given batch size", () => {
    const Zv = [
      [1, 2, 3],
      [0.5, -1, 2],
    ];
    const Z = variable("Z");
    const Y = variable("Y");
    const [loss] = new Evaluator([softmaxLoss(Z, Y, 5)]).run(
      new Map([
        [Z, tensor(Zv)],
        [
          Y,
          tensor([
            [0, 0, 1],
            [1, 0, 0],
          ]),
        ],
      ]),
    );
    expect(loss.shape).toEqual([]);
    expect(loss.item()).toBeCloseTo(referenceLoss(Zv, [2, 0], 5), 12);
  });

  test("stays finite with its gradient for logits of ±1e4", () => {
    const Z = variable("Z");
    const Y = variable("Y");
    const loss = softmaxLoss(Z, Y, 2);
    const [gZ] = gradients(loss, [Z]);
    const [l, g] = new Evaluator([loss, gZ]).run(
      new Map([
        [
          Z,
          tensor([
            [1e4, -1e4, 0],
            [-1e4, 1e4, 1e4],
          ]),
        ],
        [
          Y,
          tensor([
            [0, 1, 0],
            [1, 0, 0],
          ]),
        ],
      ]),
    );
    expect(Number.isFinite(l.item())).toBe(true);
    // Row 0: label 1 at -1e4 while 1e4 wins: loss 2e4; row 1: label 0 at -1e4, lse = 1e4 + log 2.
    expect(l.item()).toBeCloseTo((2e4 + 2e4 + Math.log(2)) / 2, 6);
    expect([...g.data].every(Number.isFinite)).toBe(true);
    // Gradient (softmax - y)/batch: row 0 -> [0.5, -0.5, 0]
    expect(g.data[0]).toBeCloseTo(0.5, 12);
    expect(g.data[1]).toBeCloseTo(-0.5, 12);
  });
});

describe("sgdEpoch", () => {
  test("one batch equals a hand-computed SGD step; inputs untouched", () => {
    const X = tensor([
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    const y = tensor([0, 1, 1]);
    const W = tensor([
      [0.1, -0.2],
      [0.3, 0.05],
    ]);
    const b = tensor([0.01, -0.02]);
    const Wcopy = W.clone();
    const out = sgdEpoch(makeRunModel(3), X, y, W, b, 3, 0.5);
    // Reference: dZ = (softmax(Z) - Y) / 3; dW = X^T dZ; db = sum dZ.
    const Xv = [
      [1, 2],
      [3, 4],
      [5, 6],
    ];
    const Z = Xv.map((r) => [0, 1].map((j) => r[0] * W.data[j] + r[1] * W.data[2 + j] + b.data[j]));
    const dZ = Z.map((row, i) => {
      const e = row.map(Math.exp);
      const s = e[0] + e[1];
      return e.map((v, j) => (v / s - (j === [0, 1, 1][i] ? 1 : 0)) / 3);
    });
    for (let p = 0; p < 2; p++) {
      for (let j = 0; j < 2; j++) {
        const dW = Xv.reduce((acc, r, i) => acc + r[p] * dZ[i][j], 0);
        expect(out.W.data[p * 2 + j]).toBeCloseTo(W.data[p * 2 + j] - 0.5 * dW, 12);
      }
    }
    for (let j = 0; j < 2; j++) {
      const db = dZ.reduce((acc, r) => acc + r[j], 0);
      expect(out.b.data[j]).toBeCloseTo(b.data[j] - 0.5 * db, 12);
    }
    expect(out.loss).toBeCloseTo(referenceLoss(Z, [0, 1, 1], 3), 12);
    expect(W.data).toEqual(Wcopy.data);
    expect(out.W).not.toBe(W);
  });

  test("the exercise's exact setting reaches about 0.96 test accuracy on digits", () => {
    const digits = loadDigits({ dtype: "float64" });
    const { train, test: testSet } = randomSplit(digits, 0.2, 0);
    const rng = new Rng(0);
    const limit = 1 / Math.sqrt(10);
    const init = (shape: number[]) => {
      const t = new Tensor(new Float64Array(shape.reduce((a, d) => a * d, 1)), shape);
      for (let i = 0; i < t.size; i++) t.data[i] = rng.uniform(-limit, limit);
      return t;
    };
    let W = init([64, 10]);
    let b = init([10]);
    const runModel = makeRunModel(50);
    const yTrain = new Tensor(Float64Array.from(train.y), [train.y.length]);
    let loss = NaN;
    for (let epoch = 0; epoch < 100; epoch++) {
      ({ W, b, loss } = sgdEpoch(runModel, train.X, yTrain, W, b, 50, 0.05));
    }
    // Accuracy computed here with plain loops, independently of the graph.
    const n = testSet.X.shape[0];
    let correct = 0;
    for (let i = 0; i < n; i++) {
      let best = -Infinity;
      let arg = -1;
      for (let j = 0; j < 10; j++) {
        let z = b.data[j];
        for (let p = 0; p < 64; p++) z += testSet.X.data[i * 64 + p] * W.data[p * 10 + j];
        if (z > best) {
          best = z;
          arg = j;
        }
      }
      if (arg === testSet.y[i]) correct++;
    }
    const acc = correct / n;
    console.log(
      `digits exercise: test accuracy ${acc.toFixed(4)}, last epoch loss ${loss.toFixed(4)}`,
    );
    expect(Number.isFinite(loss)).toBe(true);
    expect(acc).toBeGreaterThanOrEqual(0.95);
  });
});
