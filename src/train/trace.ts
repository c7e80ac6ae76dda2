/** One training step of a built-in model as a step-through trace page (the CLI's --trace). */
import { variable } from "../graph/node.js";
import { divByConst } from "../graph/ops/elementwise.js";
import { softmaxCrossEntropy } from "../graph/ops/nn.js";
import { traceHtml } from "../inspect/trace.js";
import { Tensor } from "../tensor/tensor.js";
import { oneHot, type Dataset } from "./data.js";
import { forward, paramSpecs, type ModelSpec } from "./models.js";

/**
 * The trace page of the mean cross-entropy of `model` on the first `batchSize` rows of `data`
 * at `params`, differentiated with respect to every parameter: what one SGD step computes.
 * Example: `writeFileSync("step.html", traceModelStep(spec, params, split.train, 8, "digits"))`.
 */
export function traceModelStep(
  spec: ModelSpec,
  params: readonly Tensor[],
  data: Dataset,
  batchSize: number,
  title: string,
): string {
  const dtype = params[0].dtype;
  const rows = Math.min(batchSize, data.X.shape[0]);
  const features = data.X.shape[1];
  const X = variable("X", { shape: [null, features], dtype });
  const Y = variable("Y", { shape: [null, spec.sizes[spec.sizes.length - 1]], dtype });
  const weights = paramSpecs(spec).map((p) => variable(p.name, { shape: p.shape, dtype }));
  const loss = divByConst(
    softmaxCrossEntropy(forward(spec, X, weights), Y, { reduction: "sum" }),
    rows,
  );
  const x = new Tensor(data.X.data.slice(0, rows * features), [rows, features]).clone({ dtype });
  const y = oneHot(data.y.subarray(0, rows), data.classes, dtype);
  const feeds = new Map([[X, x], [Y, y], ...weights.map((w, i) => [w, params[i]] as const)]);
  return traceHtml(loss, feeds, weights, { title });
}
