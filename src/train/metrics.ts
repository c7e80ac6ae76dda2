/** Test metrics of the built-in models: accuracy and mean cross-entropy over a data set. */
import { variable } from "../graph/node.js";
import { clearPool, type Tensor } from "../tensor/tensor.js";
import type { Dataset } from "./data.js";
import { evaluate } from "./evaluate.js";
import { architectureOf, forward, paramSpecs, type ModelSpec } from "./models.js";

/** The bytes of one activation of an evaluation chunk (its rows are chosen to fit). */
export const EVAL_ACTIVATION_BYTES = 64 * 2 ** 20;

/** Fraction of rows of `data` whose arg-max logit is the label (through {@link evaluate}). */
export function accuracy(
  spec: ModelSpec,
  params: readonly Tensor[],
  data: Dataset,
  chunk = 1000,
): number {
  return testMetrics(spec, params, data, chunk).accuracy;
}

/** The accuracy and the mean cross-entropy of the model over `data`'s rows. */
export function testMetrics(
  spec: ModelSpec,
  params: readonly Tensor[],
  data: Dataset,
  chunk = 1000,
): { accuracy: number; loss: number } {
  const X = variable("X");
  const paramNodes = paramSpecs(spec).map((p) => variable(p.name));
  const dtype = params[0].dtype;
  const images = data.X.dtype === dtype ? data.X : data.X.clone({ dtype });
  // Rows per chunk so that a chunk's widest activation stays near EVAL_ACTIVATION_BYTES: a
  // 1000-row chunk of a 200,000-unit layer would take 800 MB of WebAssembly memory at once.
  const widest = spec.arch ? architectureOf(spec).widestPerRow : Math.max(...spec.sizes);
  const rowsPerChunk = Math.max(
    1,
    Math.floor(EVAL_ACTIVATION_BYTES / (widest * (dtype === "float32" ? 4 : 8))),
  );
  const [logits] = evaluate([forward(spec, X, paramNodes)], new Map([[X, images]]), {
    batchSize: Math.min(chunk, rowsPerChunk),
    feeds: new Map(paramNodes.map((p, i) => [p, params[i]])),
  });
  const [n, classes] = [data.X.shape[0], logits.shape[1]];
  let correct = 0;
  let loss = 0;
  const z = logits.data;
  for (let r = 0; r < n; r++) {
    const row = r * classes;
    let best = 0;
    for (let c = 1; c < classes; c++) if (z[row + c] > z[row + best]) best = c;
    if (best === data.y[r]) correct++;
    // -log softmax at the label: log-sum-exp shifted by the row's largest logit.
    let total = 0;
    for (let c = 0; c < classes; c++) total += Math.exp(z[row + c] - z[row + best]);
    loss += Math.log(total) - (z[row + data.y[r]] - z[row + best]);
  }
  // Evaluation-sized plain arrays are not reused by training steps: hand them back to the GC.
  // The backend's are kept for the next epoch's evaluation: its memory never shrinks, and
  // dropped blocks wait for finalizers the loop rarely lets run, so each evaluation took new
  // ones (measured: +50 MB of RSS per epoch on the tutorial's cnn; flat since).
  clearPool("plain");
  return n > 0 ? { accuracy: correct / n, loss: loss / n } : { accuracy: NaN, loss: NaN };
}
