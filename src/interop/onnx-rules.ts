/**
 * The ONNX rule of every built-in op, keyed by op name (as PyTorch keeps its ONNX symbolic
 * functions apart from its ops): the exporter's vocabulary stays out of the core and the workers.
 */
import type { BuiltinOpName } from "../graph/op-names.js";
import { fmtType } from "../graph/types.js";
import { normalizeAxis } from "../tensor/shape.js";
import { type DType } from "../tensor/tensor.js";
import {
  ELEM,
  BOOL,
  tensorProto,
  type AttributeValue,
  type Emitter,
  type RuleContext,
  type Rule,
  type Unsupported,
} from "./onnx-proto.js";

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

/** Every built-in op's rule (or why it has none): a Record over the op names, so none is missed. */
export const RULES: Record<BuiltinOpName, Rule | Unsupported> = {
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
