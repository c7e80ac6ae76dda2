/**
 * The name of every built-in op, in one typed list: the registry accepts a built-in op only under
 * one of these names, and the tables keyed by op (ONNX rules, the compiled step's cases) are
 * `Record<BuiltinOpName, ...>`, so a new op without its rows does not compile.
 */
export const BUILTIN_OP_NAMES = [
  // elementwise.ts
  "add",
  "sub",
  "mul",
  "div",
  "neg",
  "addByConst",
  "mulByConst",
  "divByConst",
  "pow",
  "exp",
  "log",
  "sqrt",
  "relu",
  "step",
  "sigmoid",
  "tanh",
  "abs",
  "minimum",
  "maximum",
  "greater",
  "where",
  "zerosLike",
  "onesLike",
  // reduce.ts
  "sum",
  "mean",
  "max",
  "logsumexp",
  "unreduce",
  "maxMask",
  "argmax",
  // matmul.ts
  "matmul",
  // nn.ts
  "logSoftmax",
  "softmax",
  "softmaxCrossEntropy",
  "softmaxCrossEntropyGrad",
  "layerNorm",
  "layerNormGrad",
  // conv.ts
  "conv2d",
  "conv2dInputGrad",
  "conv2dFilterGrad",
  "maxPool2d",
  "maxPoolSelect",
  "maxPoolGrad",
  // shape.ts
  "broadcastTo",
  "sumLike",
  "reshapeLike",
  "reshape",
  "expandDims",
  "transpose",
  "constant",
  "stopGradient",
  // slice.ts
  "slice",
  "unslice",
  "concat",
  "concatPart",
  // node.ts
  "placeholder",
] as const;

/** The name of a built-in op. */
export type BuiltinOpName = (typeof BUILTIN_OP_NAMES)[number];
