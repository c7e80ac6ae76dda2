/** evaluate(): runs nodes over a dataset in batches (predictions, losses, accuracies). */
import { checkNodeList, checkOptions, type Node } from "../graph/node.js";
import { Evaluator } from "../runtime/evaluator.js";
import { allocate, Tensor, type DType } from "../tensor/tensor.js";

/** Options of {@link evaluate}. */
export interface EvaluateOptions {
  /** Rows per run (default 1000). */
  batchSize?: number;
  /** Values of the other variables the outputs need (the parameters), fed to every batch. */
  feeds?: ReadonlyMap<Node, Tensor>;
}

/**
 * Runs `outputs` over the rows of `data` (tensors with examples along axis 0, all with one row
 * count) in batches. An output with one row per example (predictions, per-row losses) comes back
 * with the batches' rows concatenated; a 0-d output (a batch's mean loss or accuracy) comes back
 * as its mean over the batches weighted by their rows: the dataset's mean, as Keras' evaluate.
 * Example: `const [probabilities] = evaluate([softmax(logits)], new Map([[X, images]]), { feeds })`.
 */
export function evaluate(
  outputs: readonly Node[],
  data: ReadonlyMap<Node, Tensor>,
  options?: EvaluateOptions,
): Tensor[] {
  checkNodeList("evaluate(outputs, data)", "outputs", outputs, "evaluate([y], data)");
  const { batchSize = 1000, feeds } = checkOptions(
    "evaluate(outputs, data, options)",
    options,
    ["batchSize", "feeds"],
    "evaluate([y], data, { batchSize: 256, feeds })",
  );
  if (!(data instanceof Map) || data.size === 0) {
    throw new TypeError("evaluate: data must be a non-empty Map of variables to tensors");
  }
  const columns = [...data];
  const rows = columns[0][1].shape[0];
  for (const [node, t] of columns) {
    if (!(t instanceof Tensor) || t.rank === 0 || t.shape[0] !== rows) {
      const got = t instanceof Tensor ? `shape [${t.shape}]` : "not a Tensor";
      throw new Error(
        `evaluate: data ${node.name} must have ${rows} rows along axis 0, got ${got}`,
      );
    }
  }
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`evaluate: batchSize must be a positive integer, got ${batchSize}`);
  }
  const evaluator = new Evaluator(outputs);
  const parts: Tensor[][] = outputs.map(() => []);
  const weighted = outputs.map(() => 0);
  const dtypes = outputs.map((o) => o.dtype ?? "float64");
  for (let start = 0; start < rows; start += batchSize) {
    const count = Math.min(batchSize, rows - start);
    const batchFeeds = new Map<Node, Tensor>(feeds ?? []);
    for (const [node, t] of columns) {
      const rowSize = t.size / rows;
      const view = t.data.subarray(start * rowSize, (start + count) * rowSize);
      batchFeeds.set(node, new Tensor(view, [count, ...t.shape.slice(1)]));
    }
    evaluator.run(batchFeeds).forEach((value, i) => {
      dtypes[i] = value.dtype;
      if (value.rank === 0) weighted[i] += value.data[0] * count;
      else if (value.shape[0] === count) parts[i].push(value.clone());
      else {
        throw new Error(
          `evaluate: output ${outputs[i].name} has shape [${value.shape}]: neither 0-d nor one row per example (${count})`,
        );
      }
    });
  }
  return outputs.map((_, i) =>
    parts[i].length > 0 ? concatRows(parts[i]) : mean(weighted[i], rows, dtypes[i]),
  );
}

function mean(total: number, rows: number, dtype: DType): Tensor {
  const out = allocate([], dtype);
  out.data[0] = rows > 0 ? total / rows : NaN;
  return out;
}

/** The tensors' rows, in order, in one tensor. */
function concatRows(parts: readonly Tensor[]): Tensor {
  const rows = parts.reduce((n, t) => n + t.shape[0], 0);
  const out = allocate([rows, ...parts[0].shape.slice(1)], parts[0].dtype);
  let offset = 0;
  for (const t of parts) {
    out.data.set(t.data, offset);
    offset += t.size;
  }
  return out;
}
