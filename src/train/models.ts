/**
 * The trainer's models built from the graph API: logistic regression, ReLU MLPs, and the cnn and
 * transformer of architectures.ts, plus their training plan.
 */
import { variable, type Node } from "../graph/node.js";
import { add, matmul, relu, softmaxCrossEntropy } from "../graph/ops/index.js";
import { gradients } from "../autodiff/gradients.js";
import { countNodes, simplify, type NodeCounts } from "../autodiff/simplify.js";
import { lowerGraph } from "../runtime/plan.js";
import type { TrainPlan } from "./parallel/state.js";
import type { DType, Tensor } from "../tensor/tensor.js";
import type { Rng } from "./random.js";
import {
  architecture,
  ARCHITECTURES,
  initialValue,
  type Architecture,
  type ArchName,
  type Initializer,
} from "./architectures.js";

/**
 * A model: layer sizes [inputs, ...hidden, classes] (logreg has no hidden layer); a cnn or
 * transformer names its architecture (`arch`) and has sizes [784, 10].
 */
export interface ModelSpec {
  kind: "logreg" | "mlp" | "cnn" | "transformer";
  sizes: number[];
  arch?: ArchName;
}

/** The cnn's or transformer's architecture (built once per spec object). */
export function architectureOf(spec: ModelSpec): Architecture {
  if (spec.arch === undefined || (spec.kind !== "cnn" && spec.kind !== "transformer"))
    throw new Error(`model ${spec.kind} has no architecture`);
  let built = built_.get(spec);
  if (!built) built_.set(spec, (built = architecture(spec.kind, spec.arch)));
  return built;
}
const built_ = new WeakMap<ModelSpec, Architecture>();

/** A named parameter shape. */
export interface ParamSpec {
  name: string;
  shape: number[];
}

/** Builds a model spec, validating sizes. Example: `modelSpec("mlp", 784, [128], 10)`. */
export function modelSpec(
  kind: ModelSpec["kind"],
  inputs: number,
  hidden: readonly number[],
  classes: number,
  arch?: ArchName,
): ModelSpec {
  if (kind === "cnn" || kind === "transformer") {
    const chosen = arch ?? ARCHITECTURES[kind][0];
    if (!(ARCHITECTURES[kind] as readonly string[]).includes(chosen))
      throw new RangeError(
        `model ${kind}: no architecture ${chosen} (${ARCHITECTURES[kind].join(", ")})`,
      );
    if (inputs !== 784 || classes !== 10) {
      throw new RangeError(
        `model ${kind} reads 28x28 images (784 features) into 10 classes, not ${inputs} features into ${classes}`,
      );
    }
    return { kind, sizes: [inputs, classes], arch: chosen };
  }
  const sizes = kind === "logreg" ? [inputs, classes] : [inputs, ...hidden, classes];
  if (!sizes.every((s) => Number.isInteger(s) && s > 0)) {
    throw new RangeError(`model ${kind}: layer sizes must be positive integers, got [${sizes}]`);
  }
  if (kind === "mlp" && hidden.length === 0)
    throw new RangeError("model mlp: give at least one hidden layer");
  return { kind, sizes };
}

/** Parameter names and shapes in their fixed order: W1, b1, W2, b2, ... (an MLP). */
export function paramSpecs(spec: ModelSpec): ParamSpec[] {
  if (spec.arch !== undefined)
    return architectureOf(spec).params.map((p) => ({ name: p.name, shape: p.shape }));
  const out: ParamSpec[] = [];
  for (let l = 1; l < spec.sizes.length; l++) {
    out.push({ name: `W${l}`, shape: [spec.sizes[l - 1], spec.sizes[l]] });
    out.push({ name: `b${l}`, shape: [spec.sizes[l]] });
  }
  return out;
}

/**
 * Initial parameters: He-normal weights before a ReLU, Glorot-uniform for the output layer, zero
 * biases; drawn from `rng` in a fixed order.
 */
export function initParams(spec: ModelSpec, rng: Rng, dtype: DType): Tensor[] {
  if (spec.arch !== undefined)
    return architectureOf(spec).params.map((p) => initialValue(p, rng, dtype));
  const layers = spec.sizes.length - 1;
  return paramSpecs(spec).map(({ name, shape }, i) => {
    const isOutput = Math.floor(i / 2) === layers - 1;
    const init: Initializer =
      shape.length === 1 ? { kind: "zeros" } : { kind: isOutput ? "glorot" : "he" };
    return initialValue({ name, shape, init }, rng, dtype);
  });
}

/** Logits of the model for inputs X given parameter nodes in paramSpecs order. */
export function forward(spec: ModelSpec, X: Node, params: readonly Node[]): Node {
  if (spec.arch !== undefined) return architectureOf(spec).forward(X, params);
  let h = X;
  const layers = spec.sizes.length - 1;
  for (let l = 0; l < layers; l++) {
    const z = matmul(h, params[2 * l]);
    const logits = add(z, params[2 * l + 1]); // the bias (k,) broadcasts over the rows
    h = l < layers - 1 ? relu(logits) : logits;
  }
  return h;
}

/**
 * The graph a training shard runs: placeholders [X, Y, ...params], outputs [lossSum, ...grads],
 * simplified (bitwise-exact rewrites); `stats` has its node counts before and after.
 */
export function buildTrainPlan(
  spec: ModelSpec,
): TrainPlan & { stats: { before: NodeCounts; after: NodeCounts } } {
  // Shapes declared (the batch unknown), so that simplify() can prove the identities it removes.
  const X = variable("X", { shape: [null, spec.sizes[0]] });
  const Y = variable("Y", { shape: [null, spec.sizes[spec.sizes.length - 1]] });
  const specs = paramSpecs(spec);
  const params = specs.map((p) => variable(p.name, { shape: p.shape }));
  const logits = forward(spec, X, params);
  // Summed cross-entropy: shards add up exactly, and the reduction divides by the batch size.
  const lossSum = softmaxCrossEntropy(logits, Y, { reduction: "sum" });
  const outputs = [lossSum, ...gradients(lossSum, params)];
  const simplified = simplify(outputs);
  return {
    graph: lowerGraph(simplified, [X, Y, ...params]),
    paramShapes: specs.map((p) => p.shape),
    dataCount: 2,
    shardLoss: "sum",
    objective: "mean",
    stats: {
      before: countNodes([lossSum], outputs),
      after: countNodes([simplified[0]], simplified),
    },
  };
}
