/**
 * Layers for models written by hand and trained with fit(): each call declares its parameters
 * (variables with their shapes), draws their initial values from one seeded generator in call
 * order, and returns the layer's output node. `layers.params` is then fit()'s `params`.
 * The accuracy of a classifier over a data set, argmax against labels, for any graph.
 */
import { variable, type Node } from "../graph/node.js";
import { add, argmax, conv2d, matmul } from "../graph/ops/index.js";
import { fmtType } from "../graph/types.js";
import { Tensor, type DType } from "../tensor/tensor.js";
import { initialValue, type Initializer } from "./architectures.js";
import { evaluate } from "./evaluate.js";
import { Rng } from "./random.js";

export type { Initializer } from "./architectures.js";

/** Options of {@link Layers}. */
export interface LayersOptions {
  /** Seeds the initial values (default 0). */
  seed?: number;
  /** The parameters' element type (default float32, as training is). */
  dtype?: DType;
}

/** How {@link Layers.dense} and {@link Layers.conv2d} start their weights ("he" by default). */
export type InitName = "he" | "glorot" | Initializer;

/**
 * A set of trainable parameters declared layer by layer. Example:
 * `const nn = new Layers({ seed: 0 }); const h = relu(nn.dense("fc1", X, 128));`, then
 * `fit({ loss, params: nn.params, data })`.
 */
export class Layers {
  /** Every parameter declared so far and its initial value, in declaration order. */
  readonly params = new Map<Node, Tensor>();
  private readonly rng: Rng;
  private readonly dtype: DType;
  private readonly names = new Set<string>();

  /** Starts an empty set; `seed` fixes every initial value. */
  constructor(options: LayersOptions = {}) {
    this.rng = new Rng(options.seed ?? 0);
    this.dtype = options.dtype ?? "float32";
  }

  /**
   * Declares a parameter of `shape` started by `init` (fan-in and fan-out: the first two dims of
   * a matrix, C*k*k and F*k*k of filters [F, C, k, k]). Example: `nn.param("pos", [28, 64], {
   * kind: "normal", std: 0.02 })`.
   */
  param(name: string, shape: readonly number[], init: InitName = "he"): Node {
    if (this.names.has(name)) throw new Error(`Layers: a parameter named "${name}" exists already`);
    if (!shape.every((d) => Number.isSafeInteger(d) && d > 0))
      throw new RangeError(
        `Layers.param "${name}": shape must be positive integers, got [${shape}]`,
      );
    const initializer: Initializer = typeof init === "string" ? { kind: init } : init;
    const value = initialValue(
      { name, shape: [...shape], init: initializer },
      this.rng,
      this.dtype,
    );
    const node = variable(name, { shape, dtype: this.dtype });
    this.names.add(name);
    this.params.set(node, value);
    return node;
  }

  /** x [..., inputs] @ W [inputs, units] + b (zeros): `name.weight`, `name.bias`. */
  dense(
    name: string,
    x: Node,
    units: number,
    options: { init?: InitName; bias?: boolean } = {},
  ): Node {
    return this.layer(() => {
      const inputs = knownDim(x, -1, `Layers.dense "${name}"`);
      const y = matmul(x, this.param(`${name}.weight`, [inputs, units], options.init ?? "he"));
      return options.bias === false
        ? y
        : add(y, this.param(`${name}.bias`, [units], { kind: "zeros" }));
    });
  }

  /** Runs a layer's declarations; when it throws, the parameters it declared are taken back. */
  private layer(build: () => Node): Node {
    const before = new Set(this.params.keys());
    try {
      return build();
    } catch (error) {
      for (const node of [...this.params.keys()].filter((p) => !before.has(p))) {
        this.params.delete(node);
        this.names.delete(node.name);
      }
      throw error;
    }
  }

  /**
   * conv2d of x [N, C, H, W] with `filters` filters of size x size (stride, padding as conv2d's),
   * plus a bias per filter: `name.weight` [F, C, k, k], `name.bias` [F, 1, 1].
   */
  conv2d(
    name: string,
    x: Node,
    options: { filters: number; size: number; stride?: number; padding?: number; init?: InitName },
  ): Node {
    return this.layer(() => {
      const channels = knownDim(x, 1, `Layers.conv2d "${name}"`);
      const { filters, size } = options;
      const w = this.param(`${name}.weight`, [filters, channels, size, size], options.init ?? "he");
      const y = conv2d(x, w, { stride: options.stride ?? 1, padding: options.padding ?? 0 });
      return add(y, this.param(`${name}.bias`, [filters, 1, 1], { kind: "zeros" }));
    });
  }
}

/** Dimension `axis` of x's type, which a layer needs to size its weights. */
function knownDim(x: Node, axis: number, where: string): number {
  const shape = x.type.shape;
  const d = shape === null ? null : shape[axis < 0 ? shape.length + axis : axis];
  if (typeof d !== "number") {
    throw new Error(
      `${where}: needs dimension ${axis} of its input ${x.name} (shape ${fmtType(x.type.shape)}); declare the input's shape, e.g. variable("X", { shape: [null, 784] })`,
    );
  }
  return d;
}

/**
 * The fraction of rows whose largest logit is the label: `logits` [n, classes] evaluated over
 * `data` (rows along axis 0) with `params` fed (fit()'s result.params). Example:
 * `classificationAccuracy(logits, new Map([[X, test.X]]), test.y, result.params)`.
 */
export function classificationAccuracy(
  logits: Node,
  data: ReadonlyMap<Node, Tensor>,
  labels: Int32Array,
  params?: ReadonlyMap<Node, Tensor>,
): number {
  const [predicted] = evaluate([argmax(logits, { axis: -1 })], data, {
    feeds: params,
    batchSize: 500,
  });
  if (predicted.size !== labels.length) {
    throw new Error(
      `classificationAccuracy: ${predicted.size} predictions for ${labels.length} labels`,
    );
  }
  let correct = 0;
  for (let i = 0; i < labels.length; i++) if (predicted.data[i] === labels[i]) correct++;
  return labels.length > 0 ? correct / labels.length : NaN;
}
