/** Losses and the classic exercise's logistic-regression functions, built from graph ops. */
import type { Node } from "../graph/node.js";
import { add, divByConst, matmul, mul, neg } from "../graph/ops/index.js";
import { broadcastTo, logSoftmax, sum } from "../graph/ops/index.js";
import type { Tensor } from "../tensor/tensor.js";
import { oneHot, takeLabels, takeRows } from "./data.js";

/** Logits XW + b with b (classes,) broadcast over the batch. Example: `logisticRegression(X, W, b)`. */
export function logisticRegression(X: Node, W: Node, b: Node): Node {
  const XW = matmul(X, W);
  return add(XW, broadcastTo(b, XW, { axis: 0 }));
}

/**
 * Mean softmax cross-entropy: -sum(yOneHot * logSoftmax(Z)) / batchSize, a 0-d value, divided by
 * the given batchSize (also for a short last batch, as the exercise does); stable for ±1e4 logits.
 */
export function softmaxLoss(Z: Node, yOneHot: Node, batchSize: number): Node {
  if (!Number.isFinite(batchSize) || batchSize <= 0) {
    throw new RangeError(`softmaxLoss: batchSize must be a positive number, got ${batchSize}`);
  }
  return divByConst(neg(sum(mul(yOneHot, logSoftmax(Z)))), batchSize);
}

/** What the exercise's `runModel` returns for one batch: logits, loss, dL/dW, dL/db. */
export type RunModel = (
  Xbatch: Tensor,
  yOneHotBatch: Tensor,
  W: Tensor,
  b: Tensor,
) => [Tensor, Tensor, Tensor, Tensor];

/**
 * One epoch of mini-batch SGD over X's rows in the given order; returns new W and b (inputs
 * untouched) and the mean of the batch losses. y holds integer labels (n,).
 */
export function sgdEpoch(
  runModel: RunModel,
  X: Tensor,
  y: Tensor,
  W: Tensor,
  b: Tensor,
  batchSize: number,
  lr: number,
): { W: Tensor; b: Tensor; loss: number } {
  if (!Number.isInteger(batchSize) || batchSize <= 0) {
    throw new RangeError(`sgdEpoch: batchSize must be a positive integer, got ${batchSize}`);
  }
  const n = X.shape[0];
  if (y.size !== n) {
    throw new Error(`sgdEpoch: X has ${n} rows but y has ${y.size} labels`);
  }
  const classes = b.size;
  const labels = Int32Array.from(y.data);
  let losses = 0;
  let batches = 0;
  for (let start = 0; start < n; start += batchSize) {
    const rows = Array.from({ length: Math.min(batchSize, n - start) }, (_, i) => start + i);
    const Xb = takeRows(X, rows);
    const yb = oneHot(takeLabels(labels, rows), classes, X.dtype);
    const [, loss, gradW, gradB] = runModel(Xb, yb, W, b);
    W = step(W, gradW, lr);
    b = step(b, gradB, lr);
    losses += loss.data[0];
    batches++;
  }
  return { W, b, loss: batches > 0 ? losses / batches : NaN };
}

/** p - lr * g as a new tensor. */
function step(p: Tensor, g: Tensor, lr: number): Tensor {
  const out = p.clone();
  for (let i = 0; i < out.size; i++) out.data[i] -= lr * g.data[i];
  return out;
}
