/** adjoint: symbolic automatic differentiation and multithreaded training for Node.js. */
import "./graph/fluent.js"; // x.add(y), x.mul(2), x.matmul(w): the methods of Node
export { Tensor, tensor, zeros, ones, full, allocate } from "./tensor/tensor.js";
export type { DType, TypedArray, NestedArray, TensorOptions } from "./tensor/tensor.js";
export { backend, setBackend } from "./tensor/active.js";
export type { Backend } from "./tensor/backend.js";
export { jsBackend } from "./tensor/kernels/js.js";
export { Node, variable, isPlaceholder } from "./graph/node.js";
export type { VariableOptions } from "./graph/node.js";
export type { Dim, NodeType } from "./graph/types.js";
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
  abs,
  minimum,
  maximum,
  greater,
  where,
} from "./graph/ops/elementwise.js";
export { matmul } from "./graph/ops/matmul.js";
export type { MatmulOptions } from "./graph/ops/matmul.js";
export { sum, mean, max, logsumexp, argmax } from "./graph/ops/reduce.js";
export type { ReduceOptions } from "./graph/ops/reduce.js";
export {
  broadcastTo,
  expandDims,
  reshape,
  transpose,
  constant,
  stopGradient,
} from "./graph/ops/shape.js";
export { slice, concat } from "./graph/ops/slice.js";
export type { BroadcastOptions } from "./graph/ops/shape.js";
export { logSoftmax, softmax, softmaxCrossEntropy, layerNorm } from "./graph/ops/nn.js";
export { conv2d, maxPool2d } from "./graph/ops/conv.js";
export type { SoftmaxOptions } from "./graph/ops/nn.js";
export { Evaluator } from "./runtime/evaluator.js";
export { gradients, vjp, tracedGradients } from "./autodiff/gradients.js";
export type { SweepStep, AdjointPart } from "./autodiff/gradients.js";
export { jvp, hvp, jacobian } from "./autodiff/forward.js";
export { checkGradients, GradientCheckError } from "./autodiff/check.js";
export { defineOp, apply } from "./autodiff/custom.js";
export { formatGraph, toDot } from "./inspect/graph.js";
export { traceHtml, TRACE_LAYOUT_LIMIT } from "./inspect/trace.js";
export type { TraceOptions } from "./inspect/trace.js";
export { exportOnnx, onnxExportableOps, ONNX_OPSETS } from "./interop/onnx.js";
export type { OnnxExportOptions } from "./interop/onnx.js";
export type { InspectOptions } from "./inspect/graph.js";
export type { CustomOpSpec } from "./autodiff/custom.js";
export type { CheckOptions, CheckEntry } from "./autodiff/check.js";
export { simplify, countNodes } from "./autodiff/simplify.js";
import { useBackend } from "./backends/select.js";
export { useBackend };
export type { BackendName } from "./backends/select.js";
export { lowerGraph, rebuildGraph } from "./runtime/plan.js";
export type { Plan, PlanNode } from "./runtime/plan.js";
// Training
export { logisticRegression, softmaxLoss, sgdEpoch } from "./train/exercise.js";
export type { RunModel } from "./train/exercise.js";
export { Optimizer } from "./train/optimizers.js";
export type { OptimizerConfig, OptimizerKind } from "./train/optimizers.js";
export { modelSpec, paramSpecs, initParams, forward } from "./train/models.js";
export type { ModelSpec, ParamSpec } from "./train/models.js";
export {
  loadDigits,
  loadMnist,
  randomSplit,
  stratifiedSplit,
  standardize,
  oneHot,
} from "./train/data.js";
export type { Dataset, Split } from "./train/data.js";
export { loadMnistFull, parseIdx } from "./train/idx.js";
export type { IdxArray } from "./train/idx.js";
export { Layers, classificationAccuracy } from "./train/layers.js";
export type { LayersOptions, InitName, Initializer } from "./train/layers.js";
export { Rng } from "./train/random.js";
export { train } from "./train/trainer.js";
export { accuracy } from "./train/metrics.js";
export { exportModelOnnx } from "./train/export.js";
export type { ModelExportOptions } from "./train/export.js";
export type { TrainerOptions, TrainResult } from "./train/trainer.js";
export type { StepInfo } from "./train/loop.js";
export { inProcessEngine } from "./train/parallel/engine.js";
export type { StepEngine, EngineFactory } from "./train/parallel/engine.js";
export { poolEngine } from "./train/parallel/pool.js";
export type { PoolOptions, StepProtocol } from "./train/parallel/pool.js";
export { saveParams, loadParams, paramsHash } from "./train/serialize.js";
export { fit } from "./train/fit.js";
export { defaultMicroShards } from "./train/config.js";
export { evaluate } from "./train/evaluate.js";
export type { EvaluateOptions } from "./train/evaluate.js";
export type { FitOptions, FitResult, FitStep, FitEpoch } from "./train/fit.js";
export { DivergenceError } from "./train/loop.js";

// NOTE: the wasm backend is the default of the package, as of the CLI: many times faster than the
// js kernels (`npm run bench:kernels` prints by how much). Where it cannot load, one warning says why and the js backend runs;
// `backend().name` tells which is active, `useBackend("js")` picks the reference kernels.
useBackend("wasm", (error) =>
  process.emitWarning(`WASM backend unavailable, using js: ${error.message}`, "AdjointWarning"),
);
