/**
 * The one table of op cases (JAX's LAX_GRAD_OPS): every public builder and Node method, with
 * broadcasting pairs, axes and keepdims, each with an independent reference for its value.
 * test/graph/ops.once.test.ts feeds it to the gradient checker; test/graph/semantics.test.ts reuses it
 * for dtype and op-identity rules.
 */
import * as adj from "../../src/index.js";
import type { Node, Tensor } from "../../src/index.js";
import { awayFromZero, mulberry32, randomTensor, type GradCheckOptions } from "./gradcheck.js";
import * as ref from "./reference.js";
import type { Ref } from "./reference.js";

/** One row of the table. */
export interface OpCase {
  /** Test title. */
  name: string;
  /** The public builder (or `Node.method`) this case exercises. */
  builder: string;
  build: (...xs: Node[]) => Node;
  /** float64 inputs, one per variable passed to build. */
  inputs: Tensor[];
  /** The expected value, computed by the independent reference. */
  expected: (...xs: Ref[]) => Ref;
  options?: GradCheckOptions;
}

const random = mulberry32(20240601);
/** Uniform in [-1, 1). */
const R = (...shape: number[]) => randomTensor(random, shape);
/** Uniform in [0.5, 2): for log, sqrt, fractional powers and denominators. */
const P = (...shape: number[]) => randomTensor(random, shape, 0.5, 2);
/** Magnitude in [0.2, 1.5), random sign: away from relu's kink and x^-1's pole. */
const A = (...shape: number[]) => awayFromZero(random, shape);
/** Zeros: the value of a Node broadcast target (its gradient must be zeros). */
const Z = (...shape: number[]) => adj.zeros(shape);

const add = (a: Ref, b: Ref) => ref.zip(a, b, (x, y) => x + y);
const sub = (a: Ref, b: Ref) => ref.zip(a, b, (x, y) => x - y);
const mul = (a: Ref, b: Ref) => ref.zip(a, b, (x, y) => x * y);
const div = (a: Ref, b: Ref) => ref.zip(a, b, (x, y) => x / y);
/** -sum(y * logSoftmax(z, axis)) as a 0-d value, divided by the row count for "mean". */
const crossEntropy = (z: Ref, y: Ref, axis = -1, reduction = "mean"): Ref => {
  const total = -mul(y, ref.logSoftmax(z, axis)).data.reduce((s, v) => s + v, 0);
  const rows = z.data.length / z.shape[axis < 0 ? axis + z.shape.length : axis];
  return { shape: [], data: [reduction === "mean" ? total / rows : total] };
};
const same = (a: Ref) => ({ shape: [...a.shape], data: [...a.data] });
/** The maximum of each window, by multi-index. */
const poolRef = (x: Ref, size: number[], stride: number[]): Ref => {
  const [N, C, H, W] = x.shape;
  const OH = Math.floor((H - size[0]) / stride[0]) + 1;
  const OW = Math.floor((W - size[1]) / stride[1]) + 1;
  const data: number[] = [];
  for (let plane = 0; plane < N * C; plane++)
    for (let i = 0; i < OH; i++)
      for (let j = 0; j < OW; j++) {
        let best = -Infinity;
        for (let p = 0; p < size[0]; p++)
          for (let q = 0; q < size[1]; q++)
            best = Math.max(best, x.data[(plane * H + i * stride[0] + p) * W + j * stride[1] + q]);
        data.push(best);
      }
  return { shape: [N, C, OH, OW], data };
};
/** v[k] added at the position of window k's first maximum in x, zeros elsewhere. */
const poolGradRef = (x: Ref, v: Ref, size: number[], stride: number[]): Ref => {
  const [N, C, H, W] = x.shape;
  const [OH, OW] = v.shape.slice(2);
  const data = x.data.map(() => 0);
  for (let plane = 0, k = 0; plane < N * C; plane++)
    for (let i = 0; i < OH; i++)
      for (let j = 0; j < OW; j++, k++) {
        let best = -1;
        for (let p = 0; p < size[0]; p++)
          for (let q = 0; q < size[1]; q++) {
            const at = (plane * H + i * stride[0] + p) * W + j * stride[1] + q;
            if (best < 0 || x.data[at] > x.data[best]) best = at;
          }
        data[best] += v.data[k];
      }
  return { shape: [...x.shape], data };
};
/** y[n,f,i,j] = sum over c,p,q of w[f,c,p,q] x[n,c,i*s-pad+p, j*s-pad+q] (zero outside). */
const convRef = (x: Ref, w: Ref, stride: number[], pad: number[]): Ref => {
  const [N, C, H, W] = x.shape;
  const [F, , KH, KW] = w.shape;
  const OH = Math.floor((H + 2 * pad[0] - KH) / stride[0]) + 1;
  const OW = Math.floor((W + 2 * pad[1] - KW) / stride[1]) + 1;
  const at = (r: Ref, i: number[]) =>
    r.data[((i[0] * r.shape[1] + i[1]) * r.shape[2] + i[2]) * r.shape[3] + i[3]];
  const data: number[] = [];
  for (let n = 0; n < N; n++)
    for (let f = 0; f < F; f++)
      for (let i = 0; i < OH; i++)
        for (let j = 0; j < OW; j++) {
          let sum = 0;
          for (let c = 0; c < C; c++)
            for (let p = 0; p < KH; p++)
              for (let q = 0; q < KW; q++) {
                const [r, col] = [i * stride[0] - pad[0] + p, j * stride[1] - pad[1] + q];
                if (r >= 0 && r < H && col >= 0 && col < W)
                  sum += at(w, [f, c, p, q]) * at(x, [n, c, r, col]);
              }
          data.push(sum);
        }
  return { shape: [N, F, OH, OW], data };
};
/** (x - mean) / sqrt(var + eps) over the last `trailing` axes, biased variance, by blocks. */
const layerNormRef = (x: Ref, trailing: number, eps = 1e-5): Ref => {
  const block = x.shape.slice(-trailing).reduce((p, d) => p * d, 1);
  const data: number[] = [];
  for (let start = 0; start < x.data.length; start += block) {
    const part = x.data.slice(start, start + block);
    const mu = part.reduce((a, v) => a + v, 0) / block;
    const variance = part.reduce((a, v) => a + (v - mu) ** 2, 0) / block;
    for (const v of part) data.push((v - mu) / Math.sqrt(variance + eps));
  }
  return { shape: [...x.shape], data };
};
/** NumPy's matmul by its definition: sum over k of a[..., i, k] b[..., k, j], batch broadcast. */
const batched = (a: Ref, b: Ref): Ref => {
  const [m, k] = a.shape.slice(-2);
  const n = b.shape[b.shape.length - 1];
  const batch = ref.broadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const at = (x: Ref, index: number[], i: number, j: number) => {
    const lead = x.shape.length - 2;
    let flat = 0;
    for (let d = 0; d < lead; d++) {
      const bi = index[d + batch.length - lead];
      flat = flat * x.shape[d] + (x.shape[d] === 1 ? 0 : bi);
    }
    return x.data[(flat * x.shape[lead] + i) * x.shape[lead + 1] + j];
  };
  const count = batch.reduce((p, d) => p * d, 1);
  const data: number[] = [];
  for (let t = 0; t < count; t++) {
    const index: number[] = [];
    for (let d = batch.length - 1, r = t; d >= 0; d--) {
      index[d] = r % batch[d];
      r = Math.floor(r / batch[d]);
    }
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let p = 0; p < k; p++) sum += at(a, index, i, p) * at(b, index, p, j);
        data.push(sum);
      }
    }
  }
  return { shape: [...batch, m, n], data };
};

export const opCases: OpCase[] = [
  // Element-wise binary ops with broadcasting pairs.
  {
    name: "add (2,3)+(3,)",
    builder: "add",
    build: adj.add,
    inputs: [R(2, 3), R(3)],
    expected: add,
  },
  {
    name: "add (2,3)+(2,3)",
    builder: "add",
    build: adj.add,
    inputs: [R(2, 3), R(2, 3)],
    expected: add,
  },
  {
    name: "add (2,1)+(1,3)",
    builder: "add",
    build: adj.add,
    inputs: [R(2, 1), R(1, 3)],
    expected: add,
  },
  { name: "add 0-d+(2,3)", builder: "add", build: adj.add, inputs: [R(), R(2, 3)], expected: add },
  { name: "add 0-d+0-d", builder: "add", build: adj.add, inputs: [R(), R()], expected: add },
  {
    name: "add x+x (fan-in)",
    builder: "add",
    build: (a) => adj.add(a, a),
    inputs: [R(2, 2)],
    expected: (a) => add(a, a),
  },
  {
    name: "sub (3,)-(2,3)",
    builder: "sub",
    build: adj.sub,
    inputs: [R(3), R(2, 3)],
    expected: sub,
  },
  { name: "sub (2,3)-0-d", builder: "sub", build: adj.sub, inputs: [R(2, 3), R()], expected: sub },
  {
    name: "sub (4,1,3)-(2,1)",
    builder: "sub",
    build: adj.sub,
    inputs: [R(4, 1, 3), R(2, 1)],
    expected: sub,
  },
  {
    name: "mul (2,1)*(1,3)",
    builder: "mul",
    build: adj.mul,
    inputs: [R(2, 1), R(1, 3)],
    expected: mul,
  },
  {
    name: "mul (2,3)*(2,3)",
    builder: "mul",
    build: adj.mul,
    inputs: [R(2, 3), R(2, 3)],
    expected: mul,
  },
  { name: "mul 0-d*(2,3)", builder: "mul", build: adj.mul, inputs: [R(), R(2, 3)], expected: mul },
  {
    name: "mul (3,)*(2,3)",
    builder: "mul",
    build: adj.mul,
    inputs: [R(3), R(2, 3)],
    expected: mul,
  },
  {
    name: "mul x*x (fan-in)",
    builder: "mul",
    build: (a) => adj.mul(a, a),
    inputs: [R(3)],
    expected: (a) => mul(a, a),
  },
  {
    name: "div (4,1,3)/(2,3)",
    builder: "div",
    build: adj.div,
    inputs: [R(4, 1, 3), P(2, 3)],
    expected: div,
  },
  {
    name: "div (2,3)/(3,)",
    builder: "div",
    build: adj.div,
    inputs: [R(2, 3), P(3)],
    expected: div,
  },
  { name: "div 0-d/(2,3)", builder: "div", build: adj.div, inputs: [R(), A(2, 3)], expected: div },
  { name: "div (2,3)/0-d", builder: "div", build: adj.div, inputs: [R(2, 3), P()], expected: div },
  {
    name: "neg (2,3)",
    builder: "neg",
    build: adj.neg,
    inputs: [R(2, 3)],
    expected: (a) => ref.map(a, (x) => -x),
  },
  {
    name: "neg 0-d",
    builder: "neg",
    build: adj.neg,
    inputs: [R()],
    expected: (a) => ref.map(a, (x) => -x),
  },

  // Constants.
  {
    name: "addByConst 2.5",
    builder: "addByConst",
    build: (a) => adj.addByConst(a, 2.5),
    inputs: [R(2, 3)],
    expected: (a) => ref.map(a, (x) => x + 2.5),
  },
  {
    name: "addByConst 0-d",
    builder: "addByConst",
    build: (a) => adj.addByConst(a, -1),
    inputs: [R()],
    expected: (a) => ref.map(a, (x) => x - 1),
  },
  {
    name: "mulByConst -3",
    builder: "mulByConst",
    build: (a) => adj.mulByConst(a, -3),
    inputs: [R(2, 3)],
    expected: (a) => ref.map(a, (x) => -3 * x),
  },
  {
    name: "divByConst 4",
    builder: "divByConst",
    build: (a) => adj.divByConst(a, 4),
    inputs: [R(3, 2)],
    expected: (a) => ref.map(a, (x) => x / 4),
  },

  // matmul: all four transpose combinations, rectangular.
  {
    name: "matmul (2,3)@(3,4)",
    builder: "matmul",
    build: (a, b) => adj.matmul(a, b),
    inputs: [R(2, 3), R(3, 4)],
    expected: (a, b) => ref.matmul(a, b),
  },
  {
    name: "matmul transA (3,2)ᵀ@(3,4)",
    builder: "matmul",
    build: (a, b) => adj.matmul(a, b, { transA: true }),
    inputs: [R(3, 2), R(3, 4)],
    expected: (a, b) => ref.matmul(a, b, true, false),
  },
  {
    name: "matmul transB (2,3)@(4,3)ᵀ",
    builder: "matmul",
    build: (a, b) => adj.matmul(a, b, { transB: true }),
    inputs: [R(2, 3), R(4, 3)],
    expected: (a, b) => ref.matmul(a, b, false, true),
  },
  {
    name: "matmul transA transB (3,2)ᵀ@(4,3)ᵀ",
    builder: "matmul",
    build: (a, b) => adj.matmul(a, b, { transA: true, transB: true }),
    inputs: [R(3, 2), R(4, 3)],
    expected: (a, b) => ref.matmul(a, b, true, true),
  },
  {
    name: "matmul x@xᵀ (fan-in)",
    builder: "matmul",
    build: (a) => adj.matmul(a, a, { transB: true }),
    inputs: [R(2, 3)],
    expected: (a) => ref.matmul(a, a, false, true),
  },

  // zerosLike / onesLike: zero gradients, alone and inside a graph.
  {
    name: "zerosLike",
    builder: "zerosLike",
    build: adj.zerosLike,
    inputs: [R(2, 3)],
    expected: (a) => ref.map(a, () => 0),
  },
  {
    name: "onesLike",
    builder: "onesLike",
    build: adj.onesLike,
    inputs: [R(2, 3)],
    expected: (a) => ref.map(a, () => 1),
  },
  {
    name: "x*onesLike(x)+zerosLike(x)",
    builder: "onesLike",
    build: (a) => adj.add(adj.mul(a, adj.onesLike(a)), adj.zerosLike(a)),
    inputs: [R(3)],
    expected: same,
  },

  // Unary functions.
  {
    name: "exp",
    builder: "exp",
    build: adj.exp,
    inputs: [R(2, 3)],
    expected: (a) => ref.map(a, Math.exp),
  },
  {
    name: "exp 0-d",
    builder: "exp",
    build: adj.exp,
    inputs: [R()],
    expected: (a) => ref.map(a, Math.exp),
  },
  {
    name: "log (positive)",
    builder: "log",
    build: adj.log,
    inputs: [P(2, 3)],
    expected: (a) => ref.map(a, Math.log),
  },
  {
    name: "sqrt (positive)",
    builder: "sqrt",
    build: adj.sqrt,
    inputs: [P(2, 3)],
    expected: (a) => ref.map(a, Math.sqrt),
  },
  {
    name: "relu (away from 0)",
    builder: "relu",
    build: adj.relu,
    inputs: [A(3, 4)],
    expected: (a) => ref.map(a, (x) => (x > 0 ? x : 0)),
  },
  {
    name: "sigmoid",
    builder: "sigmoid",
    build: adj.sigmoid,
    inputs: [R(2, 3)],
    expected: (a) => ref.map(a, (x) => 1 / (1 + Math.exp(-x))),
  },
  {
    name: "sigmoid of ±30",
    builder: "sigmoid",
    build: (a) => adj.sigmoid(adj.mulByConst(a, 30)),
    inputs: [A(4)],
    expected: (a) => ref.map(a, (x) => 1 / (1 + Math.exp(-30 * x))),
    options: { rtol: 1e-4 },
  },
  {
    name: "tanh",
    builder: "tanh",
    build: adj.tanh,
    inputs: [R(2, 3)],
    expected: (a) => ref.map(a, Math.tanh),
  },
  {
    name: "constant: x + c",
    builder: "constant",
    // float32 values exact in both dtypes: float32 in stays float32 out, float64 stays float64.
    build: (a) => adj.add(a, adj.constant(adj.tensor([[0.5, -2, 3]], { dtype: "float32" }))),
    inputs: [R(2, 3)],
    expected: (a) => ref.zip(a, { shape: [1, 3], data: [0.5, -2, 3] }, (x, y) => x + y),
  },
  // The ops added as the proof of "one home per op": declaration, kernel, this row.
  {
    name: "abs (away from 0)",
    builder: "abs",
    build: adj.abs,
    inputs: [A(2, 3)],
    expected: (a) => ref.map(a, Math.abs),
  },
  {
    name: "minimum (2,3) with (3,)",
    builder: "minimum",
    build: adj.minimum,
    inputs: [R(2, 3), R(3)],
    expected: (a, b) => ref.zip(a, b, Math.min),
  },
  {
    name: "maximum (2,1) with (1,3)",
    builder: "maximum",
    build: adj.maximum,
    inputs: [R(2, 1), R(1, 3)],
    expected: (a, b) => ref.zip(a, b, Math.max),
  },
  {
    name: "greater (2,3) > (3,): piecewise constant, no gradient",
    builder: "greater",
    build: adj.greater,
    inputs: [R(2, 3), R(3)],
    expected: (a, b) => ref.zip(a, b, (x, y) => (x > y ? 1 : 0)),
  },
  {
    name: "where(c > 0, a, b) with (2,3), (3,), (2,1)",
    builder: "where",
    build: (c, a, b) => adj.where(adj.greater(c, adj.zerosLike(c)), a, b),
    inputs: [A(2, 3), R(3), R(2, 1)],
    expected: (c, a, b) => {
      const cond = ref.map(c, (v) => (v > 0 ? 1 : 0));
      return add(
        mul(cond, a),
        mul(
          ref.map(cond, (v) => 1 - v),
          b,
        ),
      );
    },
  },
  {
    name: "pow 2",
    builder: "pow",
    build: (a) => adj.pow(a, 2),
    inputs: [R(2, 3)],
    expected: (a) => ref.map(a, (x) => x * x),
  },
  {
    name: "pow 3",
    builder: "pow",
    build: (a) => adj.pow(a, 3),
    inputs: [R(2, 3)],
    expected: (a) => ref.map(a, (x) => x * x * x),
  },
  {
    name: "pow 0.5 (positive)",
    builder: "pow",
    build: (a) => adj.pow(a, 0.5),
    inputs: [P(2, 3)],
    expected: (a) => ref.map(a, Math.sqrt),
  },
  {
    name: "pow -1 (away from 0)",
    builder: "pow",
    build: (a) => adj.pow(a, -1),
    inputs: [A(2, 3)],
    expected: (a) => ref.map(a, (x) => 1 / x),
  },
  { name: "pow 1", builder: "pow", build: (a) => adj.pow(a, 1), inputs: [R(3)], expected: same },
  {
    name: "pow 0",
    builder: "pow",
    build: (a) => adj.pow(a, 0),
    inputs: [R(3)],
    expected: (a) => ref.map(a, () => 1),
  },

  // Reductions: no axis, axis, negative axis, axis list, keepdims, 0-d.
  ...reductionCases("sum", adj.sum, ref.folds.sum),
  ...reductionCases("mean", adj.mean, ref.folds.mean),
  ...reductionCases("max", adj.max, ref.folds.max),
  ...reductionCases("logsumexp", adj.logsumexp, ref.folds.logsumexp),

  // Composites.
  {
    name: "logisticRegression XW + b",
    builder: "logisticRegression",
    build: (X, W, b) => adj.logisticRegression(X, W, b),
    inputs: [R(3, 4), R(4, 2), R(2)],
    expected: (X, W, b) => add(ref.matmul(X, W), b),
  },
  {
    name: "softmaxLoss divided by the given batch size",
    builder: "softmaxLoss",
    build: (Z, Y) => adj.softmaxLoss(Z, Y, 5),
    inputs: [R(3, 4), P(3, 4)],
    expected: (Z, Y) => {
      const terms = mul(Y, ref.logSoftmax(Z));
      return { shape: [], data: [-terms.data.reduce((s, v) => s + v, 0) / 5] };
    },
  },
  {
    name: "forward of a logreg model",
    builder: "forward",
    build: (X, W, b) => adj.forward(adj.modelSpec("logreg", 4, [], 2), X, [W, b]),
    inputs: [R(3, 4), R(4, 2), R(2)],
    expected: (X, W, b) => add(ref.matmul(X, W), b),
  },
  {
    name: "matmul batched (2,3,4) @ (2,4,5)",
    builder: "matmul",
    build: (a, b) => adj.matmul(a, b),
    inputs: [R(2, 3, 4), R(2, 4, 5)],
    expected: (a, b) => batched(a, b),
  },
  {
    name: "matmul batched (2,3,4) @ (4,5): the 2-D weight broadcast, its gradient summed",
    builder: "matmul",
    build: (a, b) => adj.matmul(a, b),
    inputs: [R(2, 3, 4), R(4, 5)],
    expected: (a, b) => batched(a, b),
  },
  {
    name: "matmul batched (3,1,2,4) @ (2,4,3): batch axes broadcast both ways",
    builder: "matmul",
    build: (a, b) => adj.matmul(a, b),
    inputs: [R(3, 1, 2, 4), R(2, 4, 3)],
    expected: (a, b) => batched(a, b),
  },
  {
    name: "matmul batched (2,3,4) @ (2,5,4)^T, attention scores",
    builder: "matmul",
    build: (a, b) => adj.matmul(a, b, { transB: true }),
    inputs: [R(2, 3, 4), R(2, 5, 4)],
    expected: (a, b) => batched(a, ref.transpose(b, [0, 2, 1])),
  },
  {
    name: "matmul batched (2,4,3)^T @ (4,2)",
    builder: "matmul",
    build: (a, b) => adj.matmul(a, b, { transA: true }),
    inputs: [R(2, 4, 3), R(4, 2)],
    expected: (a, b) => batched(ref.transpose(a, [0, 2, 1]), b),
  },
  {
    name: "conv2d (2,2,5,5) * (3,2,3,3)",
    builder: "conv2d",
    build: (x, w) => adj.conv2d(x, w),
    inputs: [R(2, 2, 5, 5), R(3, 2, 3, 3)],
    expected: (x, w) => convRef(x, w, [1, 1], [0, 0]),
  },
  {
    name: "conv2d (1,2,6,5) * (2,2,3,2), stride [2,1], padding [1,2]",
    builder: "conv2d",
    build: (x, w) => adj.conv2d(x, w, { stride: [2, 1], padding: [1, 2] }),
    inputs: [R(1, 2, 6, 5), R(2, 2, 3, 2)],
    expected: (x, w) => convRef(x, w, [2, 1], [1, 2]),
  },
  {
    name: "conv2d (2,1,7,7) * (2,1,3,3), stride 2, padding 1 (rows the stride skips)",
    builder: "conv2d",
    build: (x, w) => adj.conv2d(x, w, { stride: 2, padding: 1 }),
    inputs: [R(2, 1, 7, 7), R(2, 1, 3, 3)],
    expected: (x, w) => convRef(x, w, [2, 2], [1, 1]),
  },
  {
    name: "maxPool2d (2,2,4,6) size 2",
    builder: "maxPool2d",
    build: (x) => adj.maxPool2d(x, { size: 2 }),
    inputs: [R(2, 2, 4, 6)],
    expected: (x) => poolRef(x, [2, 2], [2, 2]),
  },
  {
    name: "maxPool2d (1,2,5,5) size 3 stride [1,2]: overlapping windows",
    builder: "maxPool2d",
    build: (x) => adj.maxPool2d(x, { size: 3, stride: [1, 2] }),
    inputs: [R(1, 2, 5, 5)],
    expected: (x) => poolRef(x, [3, 3], [1, 2]),
  },
  {
    name: "maxPool2d's gradient as a graph, v routed to each window's maximum (its own adjoint gathers)",
    builder: "maxPool2d",
    build: (x, v) => adj.gradients(adj.sum(adj.maxPool2d(x, { size: 2 }).mul(v)), [x])[0],
    inputs: [R(1, 2, 4, 4), R(1, 2, 2, 2)],
    expected: (x, v) => poolGradRef(x, v, [2, 2], [2, 2]),
  },
  {
    name: "layerNorm (3,5), the last axis",
    builder: "layerNorm",
    build: (x) => adj.layerNorm(x),
    inputs: [R(3, 5)],
    expected: (x) => layerNormRef(x, 1),
  },
  {
    name: "layerNorm (2,3,4) over the last two axes, eps 0.1",
    builder: "layerNorm",
    build: (x) => adj.layerNorm(x, { axis: [-2, -1], eps: 0.1 }),
    inputs: [R(2, 3, 4)],
    expected: (x) => layerNormRef(x, 2, 0.1),
  },
  {
    name: "slice (3,5) axis 1, 1:4",
    builder: "slice",
    build: (x) => adj.slice(x, { axis: 1, start: 1, end: 4 }),
    inputs: [R(3, 5)],
    expected: (x) => ref.slice(x, 1, 1, 4),
  },
  {
    name: "slice (4,3) axis 0, -3: (to the end)",
    builder: "slice",
    build: (x) => adj.slice(x, { axis: 0, start: -3 }),
    inputs: [R(4, 3)],
    expected: (x) => ref.slice(x, 0, 1, 4),
  },
  {
    name: "slice (2,3,4) axis -1, 0:-2",
    builder: "slice",
    build: (x) => adj.slice(x, { axis: -1, start: 0, end: -2 }),
    inputs: [R(2, 3, 4)],
    expected: (x) => ref.slice(x, 2, 0, 2),
  },
  {
    name: "concat (2,3) (2,1) (2,2) axis 1",
    builder: "concat",
    build: (a, b, c) => adj.concat([a, b, c], { axis: 1 }),
    inputs: [R(2, 3), R(2, 1), R(2, 2)],
    expected: (a, b, c) => ref.concat([a, b, c], 1),
  },
  {
    name: "concat (1,3) (2,3) axis -2, a shared input",
    builder: "concat",
    build: (a, b) => adj.concat([a, b, a], { axis: -2 }),
    inputs: [R(1, 3), R(2, 3)],
    expected: (a, b) => ref.concat([a, b, a], 0),
  },
  {
    name: "argmax (3,4) axis 1: piecewise constant, no gradient",
    builder: "argmax",
    build: (x) => adj.argmax(x, { axis: 1 }),
    inputs: [R(3, 4)],
    expected: (x) => ref.argmax(x, 1),
  },
  {
    name: "argmax (3,2,2) axis 1 plus the default axis -1",
    builder: "argmax",
    build: (x) => adj.argmax(x, { axis: 1 }).add(adj.argmax(x)),
    inputs: [R(3, 2, 2)],
    expected: (x) => add(ref.argmax(x, 1), ref.argmax(x, 2)),
  },
  {
    name: "stopGradient: its value (x + 0 * stopGradient(x), whose gradient is 1 either way)",
    builder: "stopGradient",
    build: (x) => x.add(adj.stopGradient(x).mul(0)),
    inputs: [R(2, 3)],
    expected: (x) => same(x),
  },
  {
    name: "softmaxCrossEntropy (3,4), non-one-hot targets",
    builder: "softmaxCrossEntropy",
    build: (Z, Y) => adj.softmaxCrossEntropy(Z, Y),
    inputs: [R(3, 4), P(3, 4)],
    expected: (Z, Y) => crossEntropy(Z, Y),
  },
  {
    name: "softmaxCrossEntropy (3,4), reduction sum",
    builder: "softmaxCrossEntropy",
    build: (Z, Y) => adj.softmaxCrossEntropy(Z, Y, { reduction: "sum" }),
    inputs: [R(3, 4), P(3, 4)],
    expected: (Z, Y) => crossEntropy(Z, Y, -1, "sum"),
  },
  {
    name: "softmaxCrossEntropy rank 3 axis 1, reduction sum",
    builder: "softmaxCrossEntropy",
    build: (Z, Y) => adj.softmaxCrossEntropy(Z, Y, { axis: 1, reduction: "sum" }),
    inputs: [R(2, 3, 2), P(2, 3, 2)],
    expected: (Z, Y) => crossEntropy(Z, Y, 1, "sum"),
  },
  {
    name: "softmaxCrossEntropy (3,4), one-hot targets",
    builder: "softmaxCrossEntropy",
    build: (Z, Y) => adj.softmaxCrossEntropy(Z, Y),
    inputs: [R(3, 4), adj.tensor([0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1], { shape: [3, 4] })],
    expected: (Z, Y) => crossEntropy(Z, Y),
  },
  {
    name: "softmaxCrossEntropy axis 0, signed targets",
    builder: "softmaxCrossEntropy",
    build: (Z, Y) => adj.softmaxCrossEntropy(Z, Y, { axis: 0 }),
    inputs: [R(4, 3), R(4, 3)],
    expected: (Z, Y) => crossEntropy(Z, Y, 0),
  },
  {
    name: "softmaxCrossEntropy rank 3 axis 1",
    builder: "softmaxCrossEntropy",
    build: (Z, Y) => adj.softmaxCrossEntropy(Z, Y, { axis: 1 }),
    inputs: [R(2, 3, 2), P(2, 3, 2)],
    expected: (Z, Y) => crossEntropy(Z, Y, 1),
  },
  {
    name: "softmaxCrossEntropy (4,)",
    builder: "softmaxCrossEntropy",
    build: (Z, Y) => adj.softmaxCrossEntropy(Z, Y),
    inputs: [R(4), P(4)],
    expected: (Z, Y) => crossEntropy(Z, Y),
  },
  {
    name: "logSoftmax default axis",
    builder: "logSoftmax",
    build: (a) => adj.logSoftmax(a),
    inputs: [R(2, 4)],
    expected: (a) => ref.logSoftmax(a),
  },
  {
    name: "logSoftmax axis 0",
    builder: "logSoftmax",
    build: (a) => adj.logSoftmax(a, { axis: 0 }),
    inputs: [R(3, 2)],
    expected: (a) => ref.logSoftmax(a, 0),
  },
  {
    name: "logSoftmax rank 3 axis 1",
    builder: "logSoftmax",
    build: (a) => adj.logSoftmax(a, { axis: 1 }),
    inputs: [R(2, 3, 2)],
    expected: (a) => ref.logSoftmax(a, 1),
  },
  {
    name: "softmax default axis",
    builder: "softmax",
    build: (a) => adj.softmax(a),
    inputs: [R(2, 4)],
    expected: (a) => ref.map(ref.logSoftmax(a), Math.exp),
  },
  {
    name: "softmax axis 0",
    builder: "softmax",
    build: (a) => adj.softmax(a, { axis: 0 }),
    inputs: [R(3, 2)],
    expected: (a) => ref.map(ref.logSoftmax(a, 0), Math.exp),
  },
  {
    name: "softmax (4,)",
    builder: "softmax",
    build: (a) => adj.softmax(a),
    inputs: [R(4)],
    expected: (a) => ref.map(ref.logSoftmax(a), Math.exp),
  },

  // Shape ops.
  {
    name: "broadcastTo (3,) -> [2,3]",
    builder: "broadcastTo",
    build: (a) => adj.broadcastTo(a, [2, 3]),
    inputs: [R(3)],
    expected: (a) => ref.broadcastTo(a, [2, 3]),
  },
  {
    name: "broadcastTo (3,) -> Node (2,3), axis 0",
    builder: "broadcastTo",
    build: (a, t) => adj.broadcastTo(a, t, { axis: 0 }),
    inputs: [R(3), Z(2, 3)],
    expected: (a) => ref.broadcastTo(a, [2, 3], 0),
  },
  {
    name: "broadcastTo (4,) -> Node (4,3), axis 1",
    builder: "broadcastTo",
    build: (a, t) => adj.broadcastTo(a, t, { axis: 1 }),
    inputs: [R(4), Z(4, 3)],
    expected: (a) => ref.broadcastTo(a, [4, 3], 1),
  },
  {
    name: "broadcastTo (4,) -> [4,3], axis 1",
    builder: "broadcastTo",
    build: (a) => adj.broadcastTo(a, [4, 3], { axis: 1 }),
    inputs: [R(4)],
    expected: (a) => ref.broadcastTo(a, [4, 3], 1),
  },
  {
    name: "broadcastTo (4,) -> [4,3], axis -1",
    builder: "broadcastTo",
    build: (a) => adj.broadcastTo(a, [4, 3], { axis: -1 }),
    inputs: [R(4)],
    expected: (a) => ref.broadcastTo(a, [4, 3], 1),
  },
  {
    name: "broadcastTo (2,) -> [2,3,2], axis 1",
    builder: "broadcastTo",
    build: (a) => adj.broadcastTo(a, [2, 3, 2], { axis: 1 }),
    inputs: [R(2)],
    expected: (a) => ref.broadcastTo(a, [2, 3, 2], 1),
  },
  {
    name: "broadcastTo 0-d -> [2,3]",
    builder: "broadcastTo",
    build: (a) => adj.broadcastTo(a, [2, 3]),
    inputs: [R()],
    expected: (a) => ref.broadcastTo(a, [2, 3]),
  },
  {
    name: "broadcastTo 0-d -> Node (3,2)",
    builder: "broadcastTo",
    build: (a, t) => adj.broadcastTo(a, t),
    inputs: [R(), Z(3, 2)],
    expected: (a) => ref.broadcastTo(a, [3, 2]),
  },
  {
    name: "broadcastTo (2,1) -> [2,3], same rank, axis ignored",
    builder: "broadcastTo",
    build: (a) => adj.broadcastTo(a, [2, 3], { axis: 1 }),
    inputs: [R(2, 1)],
    expected: (a) => ref.broadcastTo(a, [2, 3]),
  },
  {
    name: "expandDims axis 0",
    builder: "expandDims",
    build: (a) => adj.expandDims(a, 0),
    inputs: [R(3)],
    expected: (a) => ref.reshape(a, [1, 3]),
  },
  {
    name: "expandDims axis 1",
    builder: "expandDims",
    build: (a) => adj.expandDims(a, 1),
    inputs: [R(2, 3)],
    expected: (a) => ref.reshape(a, [2, 1, 3]),
  },
  {
    name: "expandDims axis -1",
    builder: "expandDims",
    build: (a) => adj.expandDims(a, -1),
    inputs: [R(2, 3)],
    expected: (a) => ref.reshape(a, [2, 3, 1]),
  },
  {
    name: "expandDims 0-d",
    builder: "expandDims",
    build: (a) => adj.expandDims(a, 0),
    inputs: [R()],
    expected: (a) => ref.reshape(a, [1]),
  },
  {
    name: "reshape (2,3) -> [3,2]",
    builder: "reshape",
    build: (a) => adj.reshape(a, [3, 2]),
    inputs: [R(2, 3)],
    expected: (a) => ref.reshape(a, [3, 2]),
  },
  {
    name: "reshape (2,3) -> [-1]",
    builder: "reshape",
    build: (a) => adj.reshape(a, [-1]),
    inputs: [R(2, 3)],
    expected: (a) => ref.reshape(a, [-1]),
  },
  {
    name: "reshape (6,) -> [2,-1,1]",
    builder: "reshape",
    build: (a) => adj.reshape(a, [2, -1, 1]),
    inputs: [R(6)],
    expected: (a) => ref.reshape(a, [2, -1, 1]),
  },
  {
    name: "reshape 0-d -> [1,1]",
    builder: "reshape",
    build: (a) => adj.reshape(a, [1, 1]),
    inputs: [R()],
    expected: (a) => ref.reshape(a, [1, 1]),
  },
  {
    name: "transpose 2-D default",
    builder: "transpose",
    build: (a) => adj.transpose(a),
    inputs: [R(2, 3)],
    expected: (a) => ref.transpose(a),
  },
  {
    name: "transpose rank 3 default",
    builder: "transpose",
    build: (a) => adj.transpose(a),
    inputs: [R(2, 3, 4)],
    expected: (a) => ref.transpose(a),
  },
  {
    name: "transpose rank 3 [1,0,2]",
    builder: "transpose",
    build: (a) => adj.transpose(a, [1, 0, 2]),
    inputs: [R(2, 3, 4)],
    expected: (a) => ref.transpose(a, [1, 0, 2]),
  },
  {
    name: "transpose rank 3 [2,0,1]",
    builder: "transpose",
    build: (a) => adj.transpose(a, [2, 0, 1]),
    inputs: [R(2, 3, 4)],
    expected: (a) => ref.transpose(a, [2, 0, 1]),
  },
  {
    name: "transpose rank 3 [-1,0,1]",
    builder: "transpose",
    build: (a) => adj.transpose(a, [-1, 0, 1]),
    inputs: [R(2, 3, 4)],
    expected: (a) => ref.transpose(a, [2, 0, 1]),
  },

  // Node methods.
  {
    name: "a.add(b)",
    builder: "Node.add",
    build: (a, b) => a.add(b),
    inputs: [R(2, 3), R(3)],
    expected: add,
  },
  {
    name: "a.add(2)",
    builder: "Node.add",
    build: (a) => a.add(2),
    inputs: [R(2, 3)],
    expected: (a) => ref.map(a, (x) => x + 2),
  },
  {
    name: "a.sub(b)",
    builder: "Node.sub",
    build: (a, b) => a.sub(b),
    inputs: [R(2, 1), R(1, 3)],
    expected: sub,
  },
  {
    name: "a.sub(3)",
    builder: "Node.sub",
    build: (a) => a.sub(3),
    inputs: [R(2, 3)],
    expected: (a) => ref.map(a, (x) => x - 3),
  },
  {
    name: "a.mul(b)",
    builder: "Node.mul",
    build: (a, b) => a.mul(b),
    inputs: [R(2, 3), R()],
    expected: mul,
  },
  {
    name: "a.mul(-2)",
    builder: "Node.mul",
    build: (a) => a.mul(-2),
    inputs: [R(2, 3)],
    expected: (a) => ref.map(a, (x) => -2 * x),
  },
  {
    name: "a.div(b)",
    builder: "Node.div",
    build: (a, b) => a.div(b),
    inputs: [R(2, 3), P(2, 1)],
    expected: div,
  },
  {
    name: "a.div(4)",
    builder: "Node.div",
    build: (a) => a.div(4),
    inputs: [R(2, 3)],
    expected: (a) => ref.map(a, (x) => x / 4),
  },
  {
    name: "a.neg()",
    builder: "Node.neg",
    build: (a) => a.neg(),
    inputs: [R(2, 3)],
    expected: (a) => ref.map(a, (x) => -x),
  },
  {
    name: "a.matmul(b)",
    builder: "Node.matmul",
    build: (a, b) => a.matmul(b),
    inputs: [R(2, 3), R(3, 2)],
    expected: (a, b) => ref.matmul(a, b),
  },
  {
    name: "a.matmul(b, {transA, transB})",
    builder: "Node.matmul",
    build: (a, b) => a.matmul(b, { transA: true, transB: true }),
    inputs: [R(3, 2), R(4, 3)],
    expected: (a, b) => ref.matmul(a, b, true, true),
  },
  {
    name: "chained a.mul(b).add(1).div(b).sub(a)",
    builder: "Node.add",
    build: (a, b) => a.mul(b).add(1).div(b).sub(a),
    inputs: [R(2, 3), P(3)],
    expected: (a, b) =>
      sub(
        div(
          ref.map(mul(a, b), (x) => x + 1),
          b,
        ),
        a,
      ),
  },
];

function reductionCases(
  builder: string,
  reduce: (x: Node, options?: adj.ReduceOptions) => Node,
  fold: (values: number[]) => number,
): OpCase[] {
  const variants: {
    label: string;
    axis?: number | number[];
    keepdims?: boolean;
    shape: number[];
  }[] = [
    { label: "no axis", shape: [2, 3] },
    { label: "no axis, keepdims", keepdims: true, shape: [2, 3] },
    { label: "axis 0", axis: 0, shape: [2, 3] },
    { label: "axis 1", axis: 1, shape: [2, 3] },
    { label: "axis -1, keepdims", axis: -1, keepdims: true, shape: [2, 3] },
    { label: "axis -2", axis: -2, shape: [3, 2, 2] },
    { label: "axis [0,2]", axis: [0, 2], shape: [2, 3, 2] },
    { label: "axis [2,-3], keepdims", axis: [2, -3], keepdims: true, shape: [2, 3, 2] },
    { label: "0-d", shape: [] },
    { label: "(4,) no axis", shape: [4] },
  ];
  return variants.map(({ label, axis, keepdims, shape }) => ({
    name: `${builder} ${label}`,
    builder,
    build: (a: Node) =>
      reduce(a, {
        ...(axis === undefined ? {} : { axis }),
        ...(keepdims === undefined ? {} : { keepdims }),
      }),
    inputs: [R(...shape)],
    expected: (a: Ref) => ref.reduce(a, fold, axis, keepdims),
  }));
}
