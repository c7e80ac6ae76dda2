/** A trained model as an ONNX file: the inference graph, its weights baked in as initializers. */
import { variable } from "../graph/node.js";
import { div, sub } from "../graph/ops/elementwise.js";
import { softmax } from "../graph/ops/nn.js";
import { constant } from "../graph/ops/shape.js";
import { exportOnnx } from "../interop/onnx.js";
import { tensor, type Tensor } from "../tensor/tensor.js";
import { forward, paramSpecs, type ModelSpec } from "./models.js";

/** Options of {@link exportModelOnnx}. */
export interface ModelExportOptions {
  /** Per-feature standardization the model was trained behind, folded into the graph. */
  scaling?: { mean: Float64Array; std: Float64Array };
  /** ONNX opset (default 17). */
  opset?: number;
}

/**
 * The model's inference graph as ONNX bytes: input `X` [batch, features] (batch symbolic; raw
 * features when `scaling` is given), outputs `logits` and `probabilities` [batch, classes].
 * Example: `writeFileSync("model.onnx", exportModelOnnx(spec, params))`.
 */
export function exportModelOnnx(
  spec: ModelSpec,
  params: readonly Tensor[],
  options: ModelExportOptions = {},
): Uint8Array {
  const dtype = params[0].dtype;
  const features = spec.sizes[0];
  const X = variable("X", { shape: [null, features], dtype });
  let input = X;
  if (options.scaling) {
    const row = (values: Float64Array) => constant(tensor(values, { shape: [features], dtype }));
    input = div(sub(X, row(options.scaling.mean)), row(options.scaling.std));
  }
  const weights = paramSpecs(spec).map((p) => variable(p.name, { shape: p.shape, dtype }));
  const logits = forward(spec, input, weights);
  return exportOnnx([logits, softmax(logits)], {
    inputs: [X],
    initializers: new Map(weights.map((w, i) => [w, params[i]])),
    outputNames: ["logits", "probabilities"],
    opset: options.opset,
    name: `adjoint ${spec.kind} [${spec.sizes.join("-")}]`,
  });
}
