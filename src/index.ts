/** adjoint: symbolic automatic differentiation and multithreaded training for Node.js. */
export { Tensor, tensor, zeros, ones, full, allocate } from "./tensor/tensor.js";
export type { DType, TypedArray, NestedArray, TensorOptions } from "./tensor/tensor.js";
export { backend, setBackend } from "./tensor/backend.js";
export type { Backend } from "./tensor/backend.js";
export { jsBackend } from "./tensor/kernels/js.js";
export { Node, variable, isPlaceholder } from "./graph/node.js";
export type { Op, Attrs } from "./graph/op.js";
export { opByName } from "./graph/op.js";
export { topoSort } from "./graph/topo.js";
export {
  add,
  sub,
  mul,
  div,
  neg,
  addByConst,
  mulByConst,
  divByConst,
  pow,
  exp,
  log,
  sqrt,
  relu,
  sigmoid,
  tanh,
  zerosLike,
  onesLike,
} from "./graph/ops/elementwise.js";
export { matmul } from "./graph/ops/matmul.js";
export type { MatmulOptions } from "./graph/ops/matmul.js";
export { sum, mean, max, logsumexp } from "./graph/ops/reduce.js";
export type { ReduceOptions } from "./graph/ops/reduce.js";
export { broadcastTo, expandDims, reshape, transpose } from "./graph/ops/shape.js";
export type { BroadcastOptions } from "./graph/ops/shape.js";
export { logSoftmax, softmax } from "./graph/ops/nn.js";
export type { SoftmaxOptions } from "./graph/ops/nn.js";
export { Evaluator } from "./runtime/evaluator.js";
export { gradients } from "./autodiff/gradients.js";
