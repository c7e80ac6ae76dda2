/**
 * ONNX export: any graph (forward or gradient: gradient nodes are ordinary nodes) as an ONNX
 * ModelProto, encoded with `onnx-proto` (protobufjs code generated from the official onnx.proto).
 * Each adjoint op maps to standard ONNX operators in the table below; shapes that are unknown at
 * export (the batch) become symbolic dimensions, and every rule that needs a shape reads it at run
 * time (`Shape`), so an exported model runs for any batch size.
 */
import type { BuiltinOpName } from "../graph/op-names.js";
import onnxProto from "onnx-proto";
import { checkFeed, checkOptions, isPlaceholder, type Node } from "../graph/node.js";
import { typeName } from "../tensor/options.js";
import { topoSort } from "../graph/topo.js";
import { fmtType, type Dim, type NodeType } from "../graph/types.js";
import { littleEndianBytes } from "../interop/bytes.js";
import { normalizeAxis } from "../tensor/shape.js";
import { Tensor, type DType } from "../tensor/tensor.js";

const { onnx } = onnxProto;
type AttributeValue = number | number[] | string | onnxProto.onnx.ITensorProto;

/** Options of {@link exportOnnx}. */
export interface OnnxExportOptions {
  /** The graph's inputs: variables with a declared dtype and shape (null dims become symbolic). */
  inputs: readonly Node[];
  /** Variables baked into the model as weights, with their values. */
  initializers?: ReadonlyMap<Node, Tensor>;
  /** The default opset's version (default 17; 13 to 26). */
  opset?: number;
  /** The graph's name (default "adjoint"). */
  name?: string;
  /** Names of the outputs (default the nodes' names where they are unique, else output0...). */
  outputNames?: readonly string[];
}

/** What an ONNX value name may be here: no renaming needed. */
const ONNX_NAME = /^[A-Za-z_][A-Za-z0-9_.:/-]*$/;

/** Each output's node name where it is a plain, unique, unused name, else `output_k`. */
function defaultOutputNames(outputs: readonly Node[], used: ReadonlySet<string>): string[] {
  const counts = new Map<string, number>();
  for (const o of outputs) counts.set(o.name, (counts.get(o.name) ?? 0) + 1);
  return outputs.map((o, k) =>
    ONNX_NAME.test(o.name) && counts.get(o.name) === 1 && !used.has(o.name)
      ? o.name
      : `output_${k}`,
  );
}

/**
 * The opsets {@link exportOnnx} writes: ReduceSum takes axes as an input from 13 on; 26 is the
 * newest onnxruntime-node 1.30 accepts (tested).
 */
export const ONNX_OPSETS = { min: 13, max: 26, default: 17 } as const;

const ELEM: Record<DType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float64: onnx.TensorProto.DataType.DOUBLE,
};
const INT64 = onnx.TensorProto.DataType.INT64;
const BOOL = onnx.TensorProto.DataType.BOOL;

/** What a rule writes with: ONNX nodes, constants and the run-time shape of a value. */
interface Emitter {
  readonly opset: number;
  /** Appends an ONNX node and returns the name of its (first) output. */
  node(opType: string, inputs: string[], attrs?: Record<string, AttributeValue>): string;
  /** Appends an ONNX node with `count` outputs and returns their names. */
  nodeOutputs(
    opType: string,
    inputs: string[],
    attrs: Record<string, AttributeValue>,
    count: number,
  ): string[];
  /** A constant of `dtype` (float) or int64 (`"int64"`) as an initializer; its name. */
  constant(values: readonly number[], dims: readonly number[], dtype: DType | "int64"): string;
  /** The run-time shape (an int64 vector) of a value, one `Shape` node per value. */
  shapeOf(name: string): string;
  /** `name` cast to `dtype` when its type differs (adjoint promotes float32 with float64). */
  cast(name: string, from: DType, to: DType): string;
}

/** Everything a rule knows of one node: its inputs' ONNX names and types, its own type, attrs. */
interface RuleContext {
  readonly node: Node;
  readonly inputs: string[];
  readonly inputTypes: NodeType[];
  readonly type: NodeType;
  readonly dtype: DType;
  readonly attrs: Record<string, unknown>;
}

type Rule = (e: Emitter, c: RuleContext) => string;

/** The inputs cast to the node's dtype (ONNX element-wise ops need one element type). */
function castInputs(e: Emitter, c: RuleContext): string[] {
  return c.inputs.map((name, i) => e.cast(name, c.inputTypes[i].dtype!, c.dtype));
}

const elementwise =
  (opType: string): Rule =>
  (e, c) =>
    e.node(opType, castInputs(e, c));
const byConstant =
  (opType: string): Rule =>
  (e, c) =>
    e.node(opType, [c.inputs[0], e.constant([c.attrs.constant as number], [], c.dtype)]);

/** The rank of input `i`, which a rule needs (an axis to insert, a permutation to invert). */
function rankOf(c: RuleContext, i: number): number {
  const shape = c.inputTypes[i].shape;
  if (shape === null) {
    throw new Error(
      `exportOnnx: ${c.node.op.name} node "${c.node.name}" needs the rank of input ${i} (${c.node.inputs[i].name}); declare its variables' shapes`,
    );
  }
  return shape.length;
}

/** A pooling node's window and strides as MaxPool's attributes. */
function poolAttrs(c: RuleContext): Record<string, AttributeValue> {
  return {
    kernel_shape: [...(c.attrs.size as number[])],
    strides: [...(c.attrs.stride as number[])],
  };
}

/** A convolution node's strides and padding. */
function convAttrs(c: RuleContext): { stride: number[]; padding: number[] } {
  return { stride: [...(c.attrs.stride as number[])], padding: [...(c.attrs.padding as number[])] };
}

/** Input `i`'s dims at `axes`, which must be known at export time. */
function knownDims(c: RuleContext, i: number, axes: number[]): number[] {
  const shape = c.inputTypes[i].shape;
  const dims = axes.map((a) => shape?.[a] ?? null);
  if (dims.some((d) => d === null)) {
    throw new Error(
      `exportOnnx: ${c.node.op.name} node "${c.node.name}" needs the spatial sizes of input ${i} (${c.node.inputs[i].name}), ${fmtType(shape)}; declare its variables' shapes`,
    );
  }
  return dims as number[];
}

/** The reduction axes as a list (undefined: all axes). */
function axesList(attrs: Record<string, unknown>): number[] | undefined {
  const axis = attrs.axis as number | number[] | undefined;
  return axis === undefined ? undefined : typeof axis === "number" ? [axis] : [...axis];
}

/** A Reduce* node: axes an input for ReduceSum (opset 13) and for all of them from opset 18. */
function reduce(e: Emitter, opType: string, x: string, axes: number[] | undefined, keep: boolean) {
  const attrs = { keepdims: keep ? 1 : 0 };
  if (axes === undefined) return e.node(opType, [x], attrs);
  if (opType === "ReduceSum" || e.opset >= 18) {
    return e.node(opType, [x, e.constant(axes, [axes.length], "int64")], attrs);
  }
  return e.node(opType, [x], { ...attrs, axes });
}

/** The int64 shape `ref` has with `missing` ones inserted at `at` (broadcastTo's axis rule). */
function expandedShape(e: Emitter, ref: string, refRank: number, missing: number, at: number) {
  const shape = e.shapeOf(ref);
  if (missing <= 0) return shape;
  const ones = e.constant(new Array<number>(missing).fill(1), [missing], "int64");
  const part = (from: number, to: number) =>
    e.node("Slice", [shape, e.constant([from], [1], "int64"), e.constant([to], [1], "int64")]);
  const pieces = [at > 0 ? part(0, at) : "", ones, at < refRank ? part(at, refRank) : ""];
  return e.node(
    "Concat",
    pieces.filter((p) => p !== ""),
    { axis: 0 },
  );
}

/** Where x's missing leading dims go for broadcastTo/sumLike's `axis` (NumPy: 0). */
function insertionPoint(axis: unknown, rank: number): number {
  const a = axis === undefined ? 0 : (axis as number);
  return a < 0 ? a + rank + 1 : a;
}

/** An op with no ONNX rule, and why (the exporter says so, naming the node). */
interface Unsupported {
  readonly unsupported: string;
}

/**
 * The ONNX rule of every built-in op, keyed by op name (as PyTorch keeps its ONNX symbolic
 * functions apart from its ops): the exporter's vocabulary stays out of the core and the workers.
 */
const RULES: Record<BuiltinOpName, Rule | Unsupported> = {
  add: elementwise("Add"),
  sub: elementwise("Sub"),
  mul: elementwise("Mul"),
  div: elementwise("Div"),
  minimum: elementwise("Min"),
  maximum: elementwise("Max"),
  neg: elementwise("Neg"),
  exp: elementwise("Exp"),
  log: elementwise("Log"),
  sqrt: elementwise("Sqrt"),
  relu: elementwise("Relu"),
  sigmoid: elementwise("Sigmoid"),
  tanh: elementwise("Tanh"),
  abs: elementwise("Abs"),
  addByConst: byConstant("Add"),
  mulByConst: byConstant("Mul"),
  divByConst: byConstant("Div"),
  pow: byConstant("Pow"),
  step: (e, c) =>
    e.node("Cast", [e.node("Greater", [c.inputs[0], e.constant([0], [], c.dtype)])], {
      to: ELEM[c.dtype],
    }),
  greater: (e, c) => e.node("Cast", [e.node("Greater", castInputs(e, c))], { to: ELEM[c.dtype] }),
  where: (e, c) => {
    const [cond, a, b] = c.inputs;
    const t = c.inputTypes;
    // cond != 0, as the kernel reads it (NaN counts as true there and in Cast to bool).
    const test = e.node("Cast", [cond], { to: BOOL });
    return e.node("Where", [
      test,
      e.cast(a, t[1].dtype!, c.dtype),
      e.cast(b, t[2].dtype!, c.dtype),
    ]);
  },
  zerosLike: (e, c) =>
    e.node("ConstantOfShape", [e.shapeOf(c.inputs[0])], {
      value: tensorProto("value", [0], [1], c.dtype),
    }),
  onesLike: (e, c) =>
    e.node("ConstantOfShape", [e.shapeOf(c.inputs[0])], {
      value: tensorProto("value", [1], [1], c.dtype),
    }),
  matmul: (e, c) => {
    const [a, b] = castInputs(e, c);
    const [ra, rb] = [rankOf(c, 0), rankOf(c, 1)];
    if (ra === 2 && rb === 2) {
      return e.node("Gemm", [a, b], {
        transA: c.attrs.transA ? 1 : 0,
        transB: c.attrs.transB ? 1 : 0,
      });
    }
    // Batched: MatMul broadcasts the leading axes as NumPy does; a transpose swaps the last two.
    const swapped = (x: string, rank: number) =>
      e.node("Transpose", [x], {
        perm: [...Array.from({ length: rank - 2 }, (_, i) => i), rank - 1, rank - 2],
      });
    return e.node("MatMul", [
      c.attrs.transA ? swapped(a, ra) : a,
      c.attrs.transB ? swapped(b, rb) : b,
    ]);
  },
  sum: (e, c) => reduce(e, "ReduceSum", c.inputs[0], axesList(c.attrs), c.attrs.keepdims === true),
  mean: (e, c) =>
    reduce(e, "ReduceMean", c.inputs[0], axesList(c.attrs), c.attrs.keepdims === true),
  max: (e, c) => reduce(e, "ReduceMax", c.inputs[0], axesList(c.attrs), c.attrs.keepdims === true),
  logsumexp: (e, c) =>
    reduce(e, "ReduceLogSumExp", c.inputs[0], axesList(c.attrs), c.attrs.keepdims === true),
  unreduce: (e, c) => {
    // g back over x's reduced axes: Unsqueeze them (unless kept), Expand to x's run-time shape.
    const [g, x] = c.inputs;
    const axes = axesList(c.attrs);
    let kept = g;
    if (axes !== undefined && c.attrs.keepdims !== true) {
      kept = e.node("Unsqueeze", [g, e.constant(axes, [axes.length], "int64")]);
    }
    const out = e.node("Expand", [kept, e.shapeOf(x)]);
    if (c.attrs.mean !== true) return out;
    const size = (name: string) => e.node("Cast", [e.node("Size", [name])], { to: ELEM[c.dtype] });
    return e.node("Div", [
      out,
      e.node("Div", [size(x), e.node("Max", [size(g), e.constant([1], [], c.dtype)])]),
    ]);
  },
  maxMask: (e, c) => {
    const x = c.inputs[0];
    const axes = axesList(c.attrs);
    const at = e.node("Cast", [e.node("Equal", [x, reduce(e, "ReduceMax", x, axes, true)])], {
      to: ELEM[c.dtype],
    });
    return e.node("Div", [at, reduce(e, "ReduceSum", at, axes, true)]);
  },
  broadcastTo: (e, c) => {
    const [x, target] = c.inputs;
    const xRank = rankOf(c, 0);
    const targetShape = target
      ? e.shapeOf(target)
      : e.constant(c.attrs.shape as number[], [(c.attrs.shape as number[]).length], "int64");
    const rank = target ? rankOf(c, 1) : (c.attrs.shape as number[]).length;
    const at = insertionPoint(c.attrs.axis, xRank);
    let expanded = x;
    if (rank > xRank && at > 0) {
      const axes = Array.from({ length: rank - xRank }, (_, i) => at + i);
      expanded = e.node("Unsqueeze", [x, e.constant(axes, [axes.length], "int64")]);
    }
    return e.node("Expand", [expanded, targetShape]);
  },
  sumLike: (e, c) => {
    // Sum g over the axes where ref (its missing dims inserted as ones) has size 1, found at run
    // time: correct for any batch size, whatever is known at export.
    const [g, ref] = c.inputs;
    const gRank = rankOf(c, 0);
    const refRank = rankOf(c, 1);
    const at = insertionPoint(c.attrs.axis, refRank);
    const refShape = expandedShape(e, ref, refRank, gRank - refRank, at);
    const isOne = e.node("Equal", [refShape, e.constant([1], [1], "int64")]);
    const all = e.constant(
      Array.from({ length: gRank }, (_, i) => i),
      [gRank],
      "int64",
    );
    const axes = e.node("Compress", [all, isOne], { axis: 0 });
    const summed = e.node("ReduceSum", [g, axes], { keepdims: 1, noop_with_empty_axes: 1 });
    return e.node("Reshape", [summed, e.shapeOf(ref)]);
  },
  reshapeLike: (e, c) => e.node("Reshape", [c.inputs[0], e.shapeOf(c.inputs[1])]),
  reshape: (e, c) => {
    const shape = c.attrs.shape as number[];
    // allowzero: a 0 in the shape is a size, not "copy the input's dim".
    return e.node("Reshape", [c.inputs[0], e.constant(shape, [shape.length], "int64")], {
      allowzero: shape.includes(0) ? 1 : 0,
    });
  },
  expandDims: (e, c) =>
    e.node("Unsqueeze", [c.inputs[0], e.constant([c.attrs.axis as number], [1], "int64")]),
  transpose: (e, c) => {
    const axes = c.attrs.axes as number[] | undefined;
    if (axes === undefined) return e.node("Transpose", [c.inputs[0]]);
    const rank = rankOf(c, 0);
    return e.node("Transpose", [c.inputs[0]], { perm: axes.map((a) => (a < 0 ? a + rank : a)) });
  },
  constant: (e, c) =>
    e.constant(c.attrs.values as number[], c.attrs.shape as number[], c.attrs.dtype as DType),
  layerNorm: (e, c) => {
    // Decomposed at every opset (ReduceMean, Sub, Mul, Add, Sqrt, Div): the same arithmetic in
    // either dtype, without LayerNormalization's mandatory scale of the normalized shape.
    const x = c.inputs[0];
    const rank = rankOf(c, 0);
    const axes = (c.attrs.axis as number[]).map((a) => normalizeAxis(a, rank));
    const centred = e.node("Sub", [x, reduce(e, "ReduceMean", x, axes, true)]);
    const variance = reduce(e, "ReduceMean", e.node("Mul", [centred, centred]), axes, true);
    const eps = e.constant([c.attrs.eps as number], [], c.dtype);
    return e.node("Div", [centred, e.node("Sqrt", [e.node("Add", [variance, eps])])]);
  },
  layerNormGrad: (e, c) => {
    // r * (g - mean(g) - y * mean(g * y)), y = (x - mean(x)) * r, r = 1 / sqrt(var + eps).
    const [x, g] = castInputs(e, c);
    const axes = (c.attrs.axis as number[]).map((a) => normalizeAxis(a, rankOf(c, 0)));
    const centred = e.node("Sub", [x, reduce(e, "ReduceMean", x, axes, true)]);
    const variance = reduce(e, "ReduceMean", e.node("Mul", [centred, centred]), axes, true);
    const eps = e.constant([c.attrs.eps as number], [], c.dtype);
    const r = e.node("Reciprocal", [e.node("Sqrt", [e.node("Add", [variance, eps])])]);
    const y = e.node("Mul", [centred, r]);
    const gy = reduce(e, "ReduceMean", e.node("Mul", [g, y]), axes, true);
    const inner = e.node("Sub", [g, reduce(e, "ReduceMean", g, axes, true)]);
    return e.node("Mul", [r, e.node("Sub", [inner, e.node("Mul", [y, gy])])]);
  },
  softmax: (e, c) => e.node("Softmax", [c.inputs[0]], { axis: c.attrs.axis as number }),
  logSoftmax: (e, c) => e.node("LogSoftmax", [c.inputs[0]], { axis: c.attrs.axis as number }),
  conv2d: (e, c) => {
    const { stride, padding } = convAttrs(c);
    return e.node("Conv", castInputs(e, c), { strides: stride, pads: [...padding, ...padding] });
  },
  conv2dInputGrad: (e, c) => {
    // ConvTranspose takes w [F,C,kH,kW] as it is; output_padding restores the rows and columns
    // the forward stride skipped, from the export-time sizes.
    const { stride, padding } = convAttrs(c);
    const [g, w] = castInputs(e, c).slice(0, 2);
    const [gh, gw] = knownDims(c, 0, [2, 3]);
    const [kh, kw] = knownDims(c, 1, [2, 3]);
    const [h, wd] = knownDims(c, 2, [2, 3]);
    const extra = (size: number, out: number, k: number, a: 0 | 1) =>
      size - ((out - 1) * stride[a] - 2 * padding[a] + k);
    return e.node("ConvTranspose", [g, w], {
      strides: stride,
      pads: [...padding, ...padding],
      output_padding: [extra(h, gh, kh, 0), extra(wd, gw, kw, 1)],
    });
  },
  conv2dFilterGrad: (e, c) => {
    // dw[f,c,p,q] = sum over n,i,j of g[n,f,i,j] x[n,c,i*s+p,j*s+q]: a convolution of x with its
    // batch as channels by g as the kernel, dilated by the stride, cut to the kernel's size.
    const { stride, padding } = convAttrs(c);
    const [x, g] = castInputs(e, c).slice(0, 2);
    const swap = (name: string) => e.node("Transpose", [name], { perm: [1, 0, 2, 3] });
    const full = e.node("Conv", [swap(x), swap(g)], {
      dilations: stride,
      pads: [...padding, ...padding],
    });
    const [kh, kw] = knownDims(c, 2, [2, 3]);
    const int = (values: number[]) => e.constant(values, [values.length], "int64");
    const cut = e.node("Slice", [full, int([0, 0]), int([kh, kw]), int([2, 3])]);
    return swap(cut);
  },
  maxPool2d: (e, c) => e.node("MaxPool", [c.inputs[0]], poolAttrs(c)),
  maxPoolSelect: (e, c) => {
    // MaxPool's Indices are flat over the whole of x: Gather from u flattened.
    const [u, x] = c.inputs;
    const [, indices] = e.nodeOutputs("MaxPool", [x], poolAttrs(c), 2);
    return e.node("Gather", [e.node("Reshape", [u, e.constant([-1], [1], "int64")]), indices]);
  },
  maxPoolGrad: (e, c) => {
    // g added at the Indices of x's windows (summed where windows overlap), x's shape.
    if (e.opset < 16) {
      throw new Error(
        `exportOnnx: maxPoolGrad needs opset 16 or later (ScatterElements with reduction add), got ${e.opset}`,
      );
    }
    const [g, x] = c.inputs;
    const flat = (name: string) => e.node("Reshape", [name, e.constant([-1], [1], "int64")]);
    const [, indices] = e.nodeOutputs("MaxPool", [x], poolAttrs(c), 2);
    const count = e.node("Reshape", [e.node("Size", [x]), e.constant([1], [1], "int64")]);
    const zeros = e.node("ConstantOfShape", [count], { value: tensorProto("", [0], [1], c.dtype) });
    const sums = e.node(
      "ScatterElements",
      [zeros, flat(indices), flat(e.cast(g, c.inputTypes[0].dtype!, c.dtype))],
      {
        axis: 0,
        reduction: "add",
      },
    );
    return e.node("Reshape", [sums, e.shapeOf(x)]);
  },
  stopGradient: (e, c) => e.node("Identity", [c.inputs[0]]),
  argmax: (e, c) => {
    const axis = c.attrs.axis as number;
    const index = e.node("ArgMax", [c.inputs[0]], { axis, keepdims: 0 });
    return e.node("Cast", [index], { to: ELEM[c.dtype] });
  },
  slice: (e, c) => {
    // ONNX's Slice reads negative indices as adjoint does; INT64_MAX is "to the end" there.
    const end = (c.attrs.end as number | null) ?? Number.MAX_SAFE_INTEGER;
    const int = (v: number) => e.constant([v], [1], "int64");
    return e.node("Slice", [
      c.inputs[0],
      int(c.attrs.start as number),
      int(end),
      int(c.attrs.axis as number),
    ]);
  },
  unslice: (e, c) => {
    // Pad g with `start` zeros before it and the rest of x's size after it, on the axis.
    const rank = rankOf(c, 1);
    const axis = normalizeAxis(c.attrs.axis as number, rank);
    const at = e.constant([axis], [1], "int64");
    const sizeOf = (name: string) => e.node("Gather", [e.shapeOf(name), at]);
    const xSize = sizeOf(c.inputs[1]);
    const start = c.attrs.start as number;
    // A negative start counts from the end of x's size.
    const before =
      start >= 0
        ? e.constant([start], [1], "int64")
        : e.node("Add", [xSize, e.constant([start], [1], "int64")]);
    const after = e.node("Sub", [e.node("Sub", [xSize, sizeOf(c.inputs[0])]), before]);
    const zeros = (n: number) =>
      n > 0 ? [e.constant(new Array<number>(n).fill(0), [n], "int64")] : [];
    const pads = e.node(
      "Concat",
      [...zeros(axis), before, ...zeros(rank - 1), after, ...zeros(rank - 1 - axis)],
      { axis: 0 },
    );
    return e.node("Pad", [c.inputs[0], pads]);
  },
  concatPart: (e, c) => {
    // Part `index` of g: from the sum of the earlier parts' run-time sizes, for its own size.
    const axis = normalizeAxis(c.attrs.axis as number, rankOf(c, 0));
    const at = e.constant([axis], [1], "int64");
    const sizeOf = (name: string) => e.node("Gather", [e.shapeOf(name), at]);
    const [g, ...parts] = c.inputs;
    const index = c.attrs.index as number;
    let start = e.constant([0], [1], "int64");
    for (let i = 0; i < index; i++) start = e.node("Add", [start, sizeOf(parts[i])]);
    const end = e.node("Add", [start, sizeOf(parts[index])]);
    return e.node("Slice", [g, start, end, at]);
  },
  concat: (e, c) => {
    const rank = rankOf(c, 0);
    return e.node("Concat", castInputs(e, c), {
      axis: normalizeAxis(c.attrs.axis as number, rank),
    });
  },
  softmaxCrossEntropy: (e, c) => {
    // -sum(targets * logSoftmax(logits)) over every element, softmax along the class axis.
    const [logits, targets] = castInputs(e, c);
    const axis = c.attrs.axis as number;
    const logp = e.node("LogSoftmax", [logits], { axis });
    const product = e.node("Mul", [targets, logp]);
    if (c.attrs.reduction !== "mean") {
      return e.node("Neg", [reduce(e, "ReduceSum", product, undefined, false)]);
    }
    // The mean over the rows: the class axis summed, then every other axis averaged.
    const perRow = reduce(e, "ReduceSum", product, [axis], false);
    return e.node("Neg", [reduce(e, "ReduceMean", perRow, undefined, false)]);
  },
  softmaxCrossEntropyGrad: (e, c) => {
    // softmax(logits) * sum(targets, axis, keepdims) - targets
    const [logits, targets] = castInputs(e, c);
    const axis = c.attrs.axis as number;
    const p = e.node("Softmax", [logits], { axis });
    const rowSum = reduce(e, "ReduceSum", targets, [axis], true);
    const grad = e.node("Sub", [e.node("Mul", [p, rowSum]), targets]);
    if (c.attrs.reduction !== "mean") return grad;
    const rows = e.node(
      "Cast",
      [e.node("Size", [reduce(e, "ReduceSum", targets, [axis], false)])],
      {
        to: ELEM[c.dtype],
      },
    );
    return e.node("Div", [grad, rows]);
  },
  // Handled before any rule: a variable is one of the graph's inputs or initializers.
  placeholder: { unsupported: "variables become the graph's inputs and initializers" },
};

/** The op names {@link exportOnnx} maps to ONNX. */
export function onnxExportableOps(): string[] {
  return Object.entries(RULES)
    .filter(([, rule]) => typeof rule === "function")
    .map(([name]) => name);
}

/** A TensorProto of `dtype` (float, little-endian raw data) or int64 values. */
function tensorProto(
  name: string,
  values: ArrayLike<number>,
  dims: readonly number[],
  dtype: DType | "int64",
): onnxProto.onnx.ITensorProto {
  if (dtype === "int64") {
    const data = new BigInt64Array(values.length);
    for (let i = 0; i < values.length; i++) data[i] = BigInt(values[i]);
    return { name, dims: [...dims], dataType: INT64, rawData: littleEndianBytes(data) };
  }
  const data = dtype === "float32" ? Float32Array.from(values) : Float64Array.from(values);
  return { name, dims: [...dims], dataType: ELEM[dtype], rawData: littleEndianBytes(data) };
}

/** A ValueInfoProto: element type and shape, unknown dims symbolic (`dim_param`). */
function valueInfo(name: string, type: NodeType, symbol: (i: number) => string) {
  const dims =
    type.shape === null
      ? undefined
      : type.shape.map((d: Dim, i) => (d === null ? { dimParam: symbol(i) } : { dimValue: d }));
  return {
    name,
    type: {
      tensorType: { elemType: ELEM[type.dtype!], shape: dims ? { dim: dims } : undefined },
    },
  };
}

/** One attribute in ONNX's tagged form. */
function attribute(name: string, value: AttributeValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === "number") {
    return Number.isInteger(value)
      ? { name, type: T.INT, i: value }
      : { name, type: T.FLOAT, f: value };
  }
  if (typeof value === "string")
    return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  return { name, type: T.TENSOR, t: value };
}

/**
 * The graph computing `outputs` as an ONNX model (encoded ModelProto bytes): `inputs` become graph
 * inputs, `initializers` weights. Throws, naming the node, for an op without an ONNX mapping (a
 * custom op), a variable that is neither input nor initializer, or an input without a dtype.
 * Example: `exportOnnx([logits], { inputs: [X], initializers: new Map([[W, w]]) })`.
 */
export function exportOnnx(outputs: readonly Node[], options: OnnxExportOptions): Uint8Array {
  checkOptions(
    "exportOnnx(outputs, options)",
    options,
    ["inputs", "initializers", "opset", "name", "outputNames"],
    "exportOnnx([y], { inputs: [x], initializers: new Map([[W, w]]), opset: 17 })",
  );
  if (!Array.isArray(options.inputs)) {
    throw new TypeError(
      `exportOnnx: options.inputs must be an array of variables, got ${typeName(options.inputs)}`,
    );
  }
  const opset = options.opset ?? ONNX_OPSETS.default;
  if (!Number.isInteger(opset) || opset < ONNX_OPSETS.min || opset > ONNX_OPSETS.max) {
    throw new RangeError(
      `exportOnnx: opset must be an integer from ${ONNX_OPSETS.min} to ${ONNX_OPSETS.max}, got ${String(opset)}`,
    );
  }
  if (!Array.isArray(outputs) || outputs.length === 0) {
    throw new TypeError("exportOnnx: outputs must be a non-empty array of nodes");
  }
  const initializers = options.initializers ?? new Map<Node, Tensor>();
  const names = new Map<Node, string>();
  const types = new Map<Node, NodeType>();
  const used = new Set<string>();
  const unique = (base: string): string => {
    const clean = base.replace(/[^A-Za-z0-9_.:/-]/g, "_") || "v";
    let name = clean;
    for (let k = 1; used.has(name); k++) name = `${clean}_${k}`;
    used.add(name);
    return name;
  };
  const onnxNodes: onnxProto.onnx.INodeProto[] = [];
  const inits: onnxProto.onnx.ITensorProto[] = [];
  const graphInputs: ReturnType<typeof valueInfo>[] = [];
  for (const input of options.inputs) {
    if (!isPlaceholder(input)) {
      throw new TypeError(
        `exportOnnx: input "${input.name}" is a ${input.op.name} node, not a variable`,
      );
    }
    if (input.dtype === null) {
      throw new TypeError(
        `exportOnnx: input "${input.name}" has no dtype; declare it: variable("${input.name}", { shape, dtype: "float32" })`,
      );
    }
    const name = unique(input.name);
    names.set(input, name);
    types.set(input, input.type);
    graphInputs.push(valueInfo(name, input.type, (i) => `${name}_dim${i}`));
  }
  for (const [node, value] of initializers) {
    if (!isPlaceholder(node)) {
      throw new TypeError(
        `exportOnnx: initializer "${node.name}" is a ${node.op.name} node, not a variable`,
      );
    }
    if (names.has(node))
      throw new Error(`exportOnnx: "${node.name}" is both an input and an initializer`);
    if (!(value instanceof Tensor)) {
      throw new TypeError(
        `exportOnnx: initializer "${node.name}" is not a Tensor, got ${typeName(value)}`,
      );
    }
    // The variable's declaration holds for its weight: a float64 weight would turn a float32
    // model's outputs float64, a weight of another shape fail in the runtime.
    try {
      checkFeed(node, value);
    } catch (error) {
      throw new Error(`exportOnnx: initializer ${(error as Error).message}`, { cause: error });
    }
    const name = unique(node.name);
    names.set(node, name);
    types.set(node, { shape: [...value.shape], dtype: value.dtype });
    inits.push(tensorProto(name, value.data, value.shape, value.dtype));
  }
  const shapes = new Map<string, string>();
  const emitter: Emitter = {
    opset,
    node(opType, inputs, attrs = {}) {
      return this.nodeOutputs(opType, inputs, attrs, 1)[0];
    },
    nodeOutputs(opType, inputs, attrs, count) {
      const base = unique(`${opType}_${onnxNodes.length}`);
      const outputs = [
        base,
        ...Array.from({ length: count - 1 }, (_, i) => unique(`${base}_${i + 1}`)),
      ];
      onnxNodes.push({
        opType,
        input: inputs,
        output: outputs,
        name: base,
        attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
      });
      return outputs;
    },
    constant(values, dims, dtype) {
      const name = unique(`const_${inits.length}`);
      inits.push(tensorProto(name, values, dims, dtype));
      return name;
    },
    shapeOf(name) {
      let shape = shapes.get(name);
      if (shape === undefined) shapes.set(name, (shape = this.node("Shape", [name])));
      return shape;
    },
    cast(name, from, to) {
      return from === to ? name : this.node("Cast", [name], { to: ELEM[to] });
    },
  };
  for (const node of topoSort(outputs)) {
    if (names.has(node)) continue;
    if (isPlaceholder(node)) {
      throw new Error(
        `exportOnnx: variable "${node.name}" is neither in inputs nor in initializers`,
      );
    }
    const rule = (RULES as Partial<Record<string, Rule | Unsupported>>)[node.op.name];
    if (rule === undefined) {
      throw new Error(
        `exportOnnx: op "${node.op.name}" (node "${node.name}") has no ONNX mapping; export a graph of built-in ops`,
      );
    }
    if (typeof rule !== "function") {
      throw new Error(
        `exportOnnx: op "${node.op.name}" (node "${node.name}") has no ONNX mapping: ${rule.unsupported}`,
      );
    }
    const inputTypes = node.inputs.map((input) => types.get(input)!);
    // The type rule rerun on the inputs' export-time types (weights' shapes are known here).
    const type = node.op.type(inputTypes, node.attrs);
    if (type.dtype === null) {
      throw new Error(`exportOnnx: node "${node.name}" (${node.op.name}) has no known dtype`);
    }
    const name = rule(emitter, {
      node,
      inputs: node.inputs.map((input) => names.get(input)!),
      inputTypes,
      type,
      dtype: type.dtype,
      attrs: node.attrs,
    });
    names.set(node, name);
    types.set(node, type);
  }
  const outputNames = options.outputNames ?? defaultOutputNames(outputs, used);
  if (!Array.isArray(outputNames) || outputNames.length !== outputs.length) {
    throw new Error(
      `exportOnnx: ${Array.isArray(outputNames) ? outputNames.length : typeName(outputNames)} outputNames for ${outputs.length} outputs`,
    );
  }
  outputNames.forEach((name, i) => {
    if (typeof name !== "string" || !ONNX_NAME.test(name)) {
      throw new Error(
        `exportOnnx: outputNames[${i}] ${JSON.stringify(name)} is not a name (letters, digits, _ . : / -)`,
      );
    }
    if (outputNames.indexOf(name) !== i) {
      throw new Error(
        `exportOnnx: output name "${name}" is given twice (outputNames ${i} and ${outputNames.indexOf(name)})`,
      );
    }
    if (used.has(name)) {
      throw new Error(
        `exportOnnx: output name "${name}" is already the name of an input, initializer or node of the graph`,
      );
    }
  });
  const graphOutputs = outputs.map((node, i) => {
    // Each output its own Identity, so an output may be an input or repeat another.
    const name = unique(outputNames[i]);
    onnxNodes.push({ opType: "Identity", input: [names.get(node)!], output: [name], name });
    const type = types.get(node)!;
    return valueInfo(name, type, (d) => `${name}_dim${d}`);
  });
  const model = onnx.ModelProto.create({
    // The IR version each opset came with (ONNX 1.13: IR 8 to opset 18; 1.15: 9, 20; 1.17: 10,
    // 22; 1.18: 11, 23-24; then 12).
    irVersion: opset <= 18 ? 8 : opset <= 20 ? 9 : opset <= 22 ? 10 : opset <= 24 ? 11 : 12,
    producerName: "adjoint",
    producerVersion: "0.1.0",
    opsetImport: [{ domain: "", version: opset }],
    graph: {
      name: options.name ?? "adjoint",
      node: onnxNodes,
      initializer: inits,
      input: graphInputs,
      output: graphOutputs,
    },
  });
  return onnx.ModelProto.encode(model).finish();
}
