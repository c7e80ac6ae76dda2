/**
 * The one interface ops compute through. A backend turns tensors into tensors and never sees a
 * graph; ops call `backend()` and never a concrete backend, so a faster one (WASM SIMD over shared
 * memory) replaces the kernels without touching a gradient rule.
 */
import type { Tensor } from "./tensor.js";

/** Element-wise binary kernels (NumPy broadcasting); greater gives 1 where a > b, else 0. */
export type BinaryKind = "add" | "sub" | "mul" | "div" | "minimum" | "maximum" | "greater";
/** Element-wise unary kernels. */
export type UnaryKind =
  "neg" | "exp" | "log" | "sqrt" | "relu" | "step" | "sigmoid" | "tanh" | "abs";
/** Element-wise kernels with one scalar constant: x+c, x*c, x/c, x^c. */
export type ScalarKind = "add" | "mul" | "div" | "pow";
/** Reductions over a set of axes. */
export type ReduceKind = "sum" | "mean" | "max" | "logsumexp";

/** Kernels every backend provides. Inputs are never written; each call returns a new tensor. */
export interface Backend {
  readonly name: string;
  /** a (op) b with NumPy broadcasting; float64 if either input is. */
  binary(kind: BinaryKind, a: Tensor, b: Tensor): Tensor;
  /** cond != 0 ? a : b element-wise, the three broadcast together; a's and b's dtype promoted. */
  where(cond: Tensor, a: Tensor, b: Tensor): Tensor;
  /** f(x) element-wise. */
  unary(kind: UnaryKind, x: Tensor): Tensor;
  /** x (op) c element-wise. */
  scalar(kind: ScalarKind, x: Tensor, c: number): Tensor;
  /** op(a) @ op(b) for 2-D a, b; op transposes when the flag is set. */
  matmul(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor;
  /** Reduces `axes` (sorted, non-negative) of x. */
  reduce(kind: ReduceKind, x: Tensor, axes: readonly number[], keepdims: boolean): Tensor;
  /** 1/count at the maxima along `axes` (ties share), 0 elsewhere; x's shape. */
  maxMask(x: Tensor, axes: readonly number[]): Tensor;
  /** x broadcast (NumPy rules, same rank or lower) to `shape`. */
  broadcastTo(x: Tensor, shape: readonly number[]): Tensor;
  /** x summed down to `shape` (the inverse of broadcastTo; `shape` has x's rank or lower). */
  sumTo(x: Tensor, shape: readonly number[]): Tensor;
  /** Axes permuted: out.shape[i] = x.shape[perm[i]]. */
  transpose(x: Tensor, perm: readonly number[]): Tensor;
  /** -sum(targets * logSoftmax(logits)) (softmax along `axis`, non-negative), a 0-d tensor. */
  softmaxCrossEntropy(logits: Tensor, targets: Tensor, axis: number): Tensor;
  /** softmax(logits) * sum(targets, axis, keepdims) - targets: logits' shape. */
  softmaxCrossEntropyGrad(logits: Tensor, targets: Tensor, axis: number): Tensor;
  /** The elements of x at indices start..end-1 along `axis` (0 <= start <= end <= size). */
  slice(x: Tensor, axis: number, start: number, end: number): Tensor;
  /** g placed at `start` along `axis` in zeros of `shape` (the adjoint of slice). */
  unslice(g: Tensor, shape: readonly number[], axis: number, start: number): Tensor;
  /** xs joined along `axis` (equal elsewhere); float64 if any is. */
  concat(xs: readonly Tensor[], axis: number): Tensor;
  /** The index of the maximum along `axis`, the axis removed; the first on ties, a NaN's first. */
  argmax(x: Tensor, axis: number): Tensor;
  /** Cross-correlation of x [N,C,H,W] with w [F,C,kH,kW], zero padding: [N,F,H',W']. */
  conv2d(x: Tensor, w: Tensor, geometry: ConvGeometry): Tensor;
  /** d conv2d / d x applied to g [N,F,H',W']: x's shape `xShape`. */
  conv2dInputGrad(g: Tensor, w: Tensor, xShape: readonly number[], geometry: ConvGeometry): Tensor;
  /** d conv2d / d w applied to g: w's shape `wShape`. */
  conv2dFilterGrad(x: Tensor, g: Tensor, wShape: readonly number[], geometry: ConvGeometry): Tensor;
  /** u at the maximum of each pooling window of x [N,C,H,W] (the first on ties): [N,C,H',W']. */
  maxPoolSelect(u: Tensor, x: Tensor, geometry: PoolGeometry): Tensor;
  /** g added at the maximum of each window of x, zeros elsewhere: x's shape (the adjoint). */
  maxPoolGrad(g: Tensor, x: Tensor, geometry: PoolGeometry): Tensor;
  /** (x - mean) / sqrt(var + eps) over each run of `size` trailing elements (biased variance). */
  layerNorm(x: Tensor, size: number, eps: number): Tensor;
  /** layerNorm's adjoint of g: r * (g - mean(g) - y * mean(g * y)), y = layerNorm(x), per run. */
  layerNormGrad(x: Tensor, g: Tensor, size: number, eps: number): Tensor;
}

/** A pooling window's size and stride along height and width (no padding). */
export interface PoolGeometry {
  size: readonly [number, number];
  stride: readonly [number, number];
}

/** A convolution's strides and zero padding along height and width. */
export interface ConvGeometry {
  stride: readonly [number, number];
  padding: readonly [number, number];
}
