/**
 * The built-in image models beyond the MLP: the TensorFlow.js tutorial's CNN and the course's
 * single-head transformer on MNIST rows (as ../shared/peers/peer_models_torch.py defines them),
 * and the better default of each. A model reads flat rows X [n, 784] (pixels / 255) and returns
 * logits [n, 10]; its parameters are declared with their initializers, in a fixed order.
 */
import type { Node } from "../graph/node.js";
import {
  add,
  conv2d,
  divByConst,
  layerNorm,
  matmul,
  maxPool2d,
  mean,
  relu,
  reshape,
  softmax,
} from "../graph/ops/index.js";
import { allocate, type DType, type Tensor } from "../tensor/tensor.js";
import type { Rng } from "./random.js";

/** How a parameter starts (drawn in declaration order from the run's seed). */
export type Initializer =
  | { kind: "he" } // normal, std sqrt(2 / fanIn): weights before a ReLU
  | { kind: "glorot" } // uniform in +-sqrt(6 / (fanIn + fanOut))
  | { kind: "uniform"; limit: number } // uniform in +-limit (the course's 1/sqrt(10))
  | { kind: "normal"; std: number }
  | { kind: "zeros" };

/** A parameter of a model: name, shape and initializer. */
export interface LayerParam {
  name: string;
  shape: number[];
  init: Initializer;
}

/** A model's parameters and its forward pass. */
export interface Architecture {
  params: LayerParam[];
  /** Logits [n, classes] of X [n, features], given parameter nodes in `params` order. */
  forward(X: Node, params: readonly Node[]): Node;
  /** Floating-point operations of one example's forward pass (a step costs about 3x). */
  flopsPerRow: number;
  /** Elements of the largest activation of one example (sizes evaluation chunks). */
  widestPerRow: number;
}

/** The architectures of `--model cnn` and `--model transformer`, by `--arch` name. */
export const ARCHITECTURES = {
  cnn: ["wide", "tutorial"],
  transformer: ["residual", "course"],
} as const;

/** A model kind that has architectures. */
export type ArchModel = keyof typeof ARCHITECTURES;

/** The architecture names, default first. */
export type ArchName = (typeof ARCHITECTURES)[ArchModel][number];

/**
 * A parameter's fan-in and fan-out, from its shape: [inputs, outputs] of a matrix, C*kH*kW and
 * F*kH*kW of filters [F, C, kH, kW], the length of a vector both.
 */
function fans(shape: readonly number[]): [number, number] {
  if (shape.length < 2) return [shape[0], shape[0]];
  const receptive = shape.slice(2).reduce((a, b) => a * b, 1);
  return shape.length > 2 ? [shape[1] * receptive, shape[0] * receptive] : [shape[0], shape[1]];
}

/** Draws `p`'s initial value from `rng`. */
export function initialValue(p: LayerParam, rng: Rng, dtype: DType): Tensor {
  const t = allocate(p.shape, dtype);
  const init = p.init;
  if (init.kind === "zeros") return t;
  const [fanIn, fanOut] = fans(p.shape);
  const limit =
    init.kind === "glorot"
      ? Math.sqrt(6 / (fanIn + fanOut))
      : init.kind === "uniform"
        ? init.limit
        : 0;
  const std = init.kind === "he" ? Math.sqrt(2 / fanIn) : init.kind === "normal" ? init.std : 0;
  for (let k = 0; k < t.size; k++)
    t.data[k] = limit > 0 ? rng.uniform(-limit, limit) : rng.normal() * std;
  return t;
}

/** A dense layer's weight [inputs, outputs] and bias. */
function dense(name: string, inputs: number, outputs: number, init: Initializer): LayerParam[] {
  return [
    { name: `${name}.weight`, shape: [inputs, outputs], init },
    { name: `${name}.bias`, shape: [outputs], init: { kind: "zeros" } },
  ];
}

/** A convolution's filters [F, C, k, k] (He) and bias [F, 1, 1] (broadcast over the image). */
function convLayer(name: string, channels: number, filters: number, k: number): LayerParam[] {
  return [
    { name: `${name}.weight`, shape: [filters, channels, k, k], init: { kind: "he" } },
    { name: `${name}.bias`, shape: [filters, 1, 1], init: { kind: "zeros" } },
  ];
}

/**
 * conv 5x5 (valid) + bias -> relu -> max-pool 2x2, twice, then dense layers: `filters` per conv,
 * `hidden` units of a ReLU layer before the 10 logits (none: the tutorial's net).
 */
function cnn(filters: [number, number], hidden: number[]): Architecture {
  const [f1, f2] = filters;
  const flat = f2 * 4 * 4;
  const widths = [flat, ...hidden, 10];
  const params = [
    ...convLayer("conv1", 1, f1, 5),
    ...convLayer("conv2", f1, f2, 5),
    ...widths
      .slice(1)
      .flatMap((w, l) =>
        dense(
          `dense${l + 1}`,
          widths[l],
          w,
          l === hidden.length ? { kind: "glorot" } : { kind: "he" },
        ),
      ),
  ];
  let denseFlops = 0;
  for (let l = 1; l < widths.length; l++) denseFlops += 2 * widths[l - 1] * widths[l];
  return {
    params,
    forward(X, p) {
      const block = (x: Node, w: Node, b: Node) =>
        maxPool2d(relu(add(conv2d(x, w), b)), { size: 2 });
      let h = block(reshape(X, [-1, 1, 28, 28]), p[0], p[1]);
      h = reshape(block(h, p[2], p[3]), [-1, flat]);
      for (let l = 0; l < widths.length - 1; l++) {
        const z = add(matmul(h, p[4 + 2 * l]), p[5 + 2 * l]);
        h = l < hidden.length ? relu(z) : z;
      }
      return h;
    },
    flopsPerRow: 2 * (24 * 24 * f1 * 25 + 8 * 8 * f2 * f1 * 25) + denseFlops,
    widestPerRow: 24 * 24 * f1 * 25,
  };
}

/** The course's uniform initializer: +-1/sqrt(10) for every parameter. */
const COURSE_INIT: Initializer = { kind: "uniform", limit: 1 / Math.sqrt(10) };

/** A weight matrix [inputs, outputs] with no bias. */
function weight(name: string, inputs: number, outputs: number, init: Initializer): LayerParam {
  return { name, shape: [inputs, outputs], init };
}

/** Single-head attention of x [n, 28, d] with weights Wq, Wk, Wv: softmax(Q K^T / sqrt(d)) V. */
function attention(x: Node, wq: Node, wk: Node, wv: Node, d: number): Node {
  const scores = matmul(matmul(x, wq), matmul(x, wk), { transB: true });
  return matmul(softmax(divByConst(scores, Math.sqrt(d))), matmul(x, wv));
}

/**
 * The course's encoder: 28 tokens of 28 features, Q, K, V from 28 to 128 (no bias), attention,
 * O = layerNorm(A Wo), H = layerNorm(relu(O W1 + b1)), logits the mean over the tokens of
 * H W2 + b2. Every parameter uniform in +-1/sqrt(10), as the course initializes them.
 */
function courseTransformer(): Architecture {
  const d = 128;
  const u = COURSE_INIT;
  const params: LayerParam[] = [
    weight("Wq", 28, d, u),
    weight("Wk", 28, d, u),
    weight("Wv", 28, d, u),
    weight("Wo", d, d, u),
    weight("W1", d, d, u),
    { name: "b1", shape: [d], init: u },
    weight("W2", d, 10, u),
    { name: "b2", shape: [10], init: u },
  ];
  return {
    params,
    forward(X, [wq, wk, wv, wo, w1, b1, w2, b2]) {
      const x = reshape(X, [-1, 28, 28]);
      const o = layerNorm(matmul(attention(x, wq, wk, wv, d), wo));
      const h = layerNorm(relu(add(matmul(o, w1), b1)));
      return mean(add(matmul(h, w2), b2), { axis: 1 });
    },
    flopsPerRow: 2 * 28 * (3 * 28 * d + 2 * 28 * d + 2 * d * d + d * 10),
    widestPerRow: 28 * d,
  };
}

/**
 * The default transformer: what the course's lacks to tell rows apart and to train deep: an input
 * projection (28 -> d), a learned positional embedding per row, residual connections around the
 * attention and the feed-forward block (post-norm), then the mean over the tokens and a dense
 * layer to the logits. Glorot weights, zero biases, positions normal with std 0.02.
 */
function residualTransformer(d: number, hidden: number): Architecture {
  const g: Initializer = { kind: "glorot" };
  const params: LayerParam[] = [
    ...dense("embed", 28, d, g),
    { name: "position", shape: [28, d], init: { kind: "normal", std: 0.02 } },
    weight("Wq", d, d, g),
    weight("Wk", d, d, g),
    weight("Wv", d, d, g),
    weight("Wo", d, d, g),
    ...dense("ff1", d, hidden, { kind: "he" }),
    ...dense("ff2", hidden, d, g),
    ...dense("out", d, 10, g),
  ];
  return {
    params,
    forward(X, [we, be, pos, wq, wk, wv, wo, w1, b1, w2, b2, wOut, bOut]) {
      const x = add(add(matmul(reshape(X, [-1, 28, 28]), we), be), pos);
      const a = layerNorm(add(x, matmul(attention(x, wq, wk, wv, d), wo)));
      const f = add(matmul(relu(add(matmul(a, w1), b1)), w2), b2);
      const h = layerNorm(add(a, f));
      return add(matmul(mean(h, { axis: 1 }), wOut), bOut);
    },
    flopsPerRow: 2 * 28 * (28 * d + 6 * d * d + 2 * d * hidden) + 2 * d * 10,
    widestPerRow: 28 * Math.max(d, hidden),
  };
}

/** The architecture `--model model --arch name` builds. */
export function architecture(model: ArchModel, name: ArchName): Architecture {
  switch (name) {
    case "tutorial":
      return cnn([8, 16], []);
    case "wide":
      return cnn([16, 32], [128]);
    case "course":
      return courseTransformer();
    case "residual":
      return residualTransformer(64, 128);
  }
  throw new Error(`model ${model}: no architecture ${String(name)}`);
}
