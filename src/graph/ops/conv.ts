/** Convolution and max-pooling over [N, C, H, W] images: conv2d and maxPool2d with their adjoint ops. */
import { backend } from "../../tensor/active.js";
import { checkArity, checkOptions, label, makeNode, type Node } from "../node.js";
import { declareOp, type Op } from "../op.js";
import { fmtType, promoteTypes, type NodeType } from "../types.js";

/** The attrs of the convolution ops: strides and zero padding along height and width. */
interface ConvAttrs {
  stride: [number, number];
  padding: [number, number];
}

/** The output type of conv2d(x [N,C,H,W], w [F,C,kH,kW]); throws naming the shapes. */
function convType(x: NodeType, w: NodeType, { stride, padding }: ConvAttrs): NodeType {
  const dtype = promoteTypes(x.dtype, w.dtype);
  const shapes = `${fmtType(x.shape)} * ${fmtType(w.shape)}`;
  if ((x.shape && x.shape.length !== 4) || (w.shape && w.shape.length !== 4)) {
    throw new Error(`expects x [N,C,H,W] and w [F,C,kH,kW], got ${shapes}`);
  }
  if (x.shape === null || w.shape === null)
    return { shape: [x.shape?.[0] ?? null, w.shape?.[0] ?? null, null, null], dtype };
  const [n, c, h, wd] = x.shape;
  const [f, c2, kh, kw] = w.shape;
  if (c !== null && c2 !== null && c !== c2) throw new Error(`channels differ: ${shapes}`);
  const out = (size: number | null, k: number | null, axis: 0 | 1) => {
    if (size === null || k === null) return null;
    const padded = size + 2 * padding[axis];
    if (k > padded) {
      throw new Error(
        `the kernel (${kh}x${kw}) is larger than the padded image (${shapes}, padding ${padding.join(",")})`,
      );
    }
    return Math.floor((padded - k) / stride[axis]) + 1;
  };
  return { shape: [n, f, out(h, kh, 0), out(wd, kw, 1)], dtype };
}

const geometry = (attrs: ConvAttrs) => ({ stride: attrs.stride, padding: attrs.padding });

// NOTE: three ops closed under differentiation: conv2d is linear in x and in w, and so are its
// two adjoints, whose own adjoints are the other two: every order is built from these three.

/** Cross-correlation of x [N,C,H,W] with w [F,C,kH,kW] (ONNX's and PyTorch's layout). */
export const conv2dOp: Op = declareOp<ConvAttrs>({
  name: "conv2d",
  sameAs: { dtype: "promote" },
  type: ([x, w], attrs) => convType(x, w, attrs),
  compute: (node, [x, w]) => {
    convType({ shape: x.shape, dtype: x.dtype }, { shape: w.shape, dtype: w.dtype }, node.attrs);
    return backend().conv2d(x, w, geometry(node.attrs));
  },
  gradient: (node, g) => {
    const [x, w] = node.inputs;
    return [conv2dInputGrad(g, w, x, node.attrs), conv2dFilterGrad(x, g, w, node.attrs)];
  },
});

/** d conv2d / d x applied to g: x's shape (input 2 is x, for its shape). */
export const conv2dInputGradOp: Op = declareOp<ConvAttrs>({
  name: "conv2dInputGrad",
  sameAs: { shape: 2, dtype: "promote" },
  type: ([g, w, x]) => ({ shape: x.shape, dtype: promoteTypes(g.dtype, w.dtype) }),
  compute: (node, [g, w, x]) => backend().conv2dInputGrad(g, w, x.shape, geometry(node.attrs)),
  gradient: (node, u) => {
    const [g, w] = node.inputs;
    return [conv2d(u, w, node.attrs), conv2dFilterGrad(u, g, w, node.attrs), null];
  },
});

/** d conv2d / d w applied to g: w's shape (input 2 is w, for its shape). */
export const conv2dFilterGradOp: Op = declareOp<ConvAttrs>({
  name: "conv2dFilterGrad",
  sameAs: { shape: 2, dtype: "promote" },
  type: ([x, g, w]) => ({ shape: w.shape, dtype: promoteTypes(x.dtype, g.dtype) }),
  compute: (node, [x, g, w]) => backend().conv2dFilterGrad(x, g, w.shape, geometry(node.attrs)),
  gradient: (node, v) => {
    const [x, g] = node.inputs;
    return [conv2dInputGrad(g, v, x, node.attrs), conv2d(x, v, node.attrs), null];
  },
});

/** A number or an [h, w] pair of integers at least `least`, checked. */
function pair(name: string, value: unknown, least: number, builder = "conv2d"): [number, number] {
  const p = typeof value === "number" ? [value, value] : value;
  if (!Array.isArray(p) || p.length !== 2 || !p.every((v) => Number.isInteger(v) && v >= least)) {
    throw new RangeError(
      `${builder}: ${name} must be an integer >= ${least} or a pair [h, w] of them, got ${JSON.stringify(value)}`,
    );
  }
  return [p[0], p[1]];
}

/**
 * Cross-correlation (what every framework calls convolution) of x [N,C,H,W] with w [F,C,kH,kW],
 * zero padding, as PyTorch's `conv2d` and ONNX's Conv: [N,F,H',W']. `stride` and `padding` are a
 * number or [h, w]. Example: `conv2d(x, w, { stride: 1, padding: 2 })`.
 */
export function conv2d(
  x: Node,
  w: Node,
  options?: { stride?: number | [number, number]; padding?: number | [number, number] },
): Node {
  const example = "conv2d(x, w, { stride: 1, padding: 0 })";
  checkArity("conv2d(x, w, options)", arguments.length, 3, example);
  const { stride = 1, padding = 0 } = checkOptions(
    "conv2d(x, w, options)",
    options,
    ["stride", "padding"],
    example,
  );
  const attrs = { stride: pair("stride", stride, 1), padding: pair("padding", padding, 0) };
  return makeNode(conv2dOp, [x, w], attrs, `conv2d(${label(x)},${label(w)})`);
}

function conv2dInputGrad(g: Node, w: Node, x: Node, attrs: ConvAttrs): Node {
  const a = { stride: attrs.stride, padding: attrs.padding };
  return makeNode(conv2dInputGradOp, [g, w, x], a, `conv2dInputGrad(${label(g)},${label(w)})`);
}

function conv2dFilterGrad(x: Node, g: Node, w: Node, attrs: ConvAttrs): Node {
  const a = { stride: attrs.stride, padding: attrs.padding };
  return makeNode(conv2dFilterGradOp, [x, g, w], a, `conv2dFilterGrad(${label(x)},${label(g)})`);
}

/** The attrs of the max-pooling ops: window size and stride along height and width. */
interface PoolAttrs {
  size: [number, number];
  stride: [number, number];
}

/** The output type of max pooling x [N,C,H,W]; throws naming the shape. */
function poolType(x: NodeType, { size, stride }: PoolAttrs): NodeType {
  if (x.shape === null) return { shape: [null, null, null, null], dtype: x.dtype };
  if (x.shape.length !== 4) throw new Error(`expects x [N,C,H,W], got ${fmtType(x.shape)}`);
  const [n, c, h, w] = x.shape;
  const out = (dim: number | null, axis: 0 | 1) => {
    if (dim === null) return null;
    if (size[axis] > dim) {
      throw new Error(
        `the window (${size.join("x")}) is larger than the image ${fmtType(x.shape)}`,
      );
    }
    return Math.floor((dim - size[axis]) / stride[axis]) + 1;
  };
  return { shape: [n, c, out(h, 0), out(w, 1)], dtype: x.dtype };
}

const window = (attrs: PoolAttrs) => ({ size: attrs.size, stride: attrs.stride });

/** The maximum of each window of x [N,C,H,W]; its gradient goes to the window's first maximum. */
export const maxPool2dOp: Op = declareOp<PoolAttrs>({
  name: "maxPool2d",
  sameAs: { dtype: 0 },
  type: ([x], attrs) => poolType(x, attrs),
  compute: (node, [x]) => {
    poolType({ shape: x.shape, dtype: x.dtype }, node.attrs);
    return backend().maxPoolSelect(x, x, window(node.attrs));
  },
  gradient: (node, g) => [maxPoolGrad(g, node.inputs[0], node.attrs)],
});

/** u at the maximum of each window of x (the adjoint of maxPoolGrad in u; x picks, no gradient). */
export const maxPoolSelectOp: Op = declareOp<PoolAttrs>({
  name: "maxPoolSelect",
  sameAs: { dtype: 0 },
  type: ([u, x], attrs) => ({ shape: poolType(x, attrs).shape, dtype: u.dtype }),
  compute: (node, [u, x]) => backend().maxPoolSelect(u, x, window(node.attrs)),
  gradient: (node, g) => [maxPoolGrad(g, node.inputs[1], node.attrs), null],
});

/** g added at the maximum of each window of x, zeros elsewhere: x's shape. */
export const maxPoolGradOp: Op = declareOp<PoolAttrs>({
  name: "maxPoolGrad",
  sameAs: { shape: 1, dtype: "promote" },
  compute: (node, [g, x]) => backend().maxPoolGrad(g, x, window(node.attrs)),
  gradient: (node, u) => [maxPoolSelect(u, node.inputs[1], node.attrs), null],
});

/**
 * The maximum of each size x size window of x [N,C,H,W] (stride default: the size; no padding), as
 * PyTorch's `max_pool2d`; the gradient goes to each window's first maximum in row-major order, as
 * PyTorch's does. `size` and `stride` are a number or [h, w]. Example: `maxPool2d(h, { size: 2 })`.
 */
export function maxPool2d(
  x: Node,
  options: { size: number | [number, number]; stride?: number | [number, number] },
): Node {
  const example = "maxPool2d(x, { size: 2, stride: 2 })";
  checkArity("maxPool2d(x, options)", arguments.length, 2, example);
  const { size, stride = size } = checkOptions(
    "maxPool2d(x, options)",
    options,
    ["size", "stride"],
    example,
  );
  const attrs = {
    size: pair("size", size, 1, "maxPool2d"),
    stride: pair("stride", stride, 1, "maxPool2d"),
  };
  return makeNode(maxPool2dOp, [x], attrs, `maxPool2d(${label(x)})`);
}

function maxPoolSelect(u: Node, x: Node, attrs: PoolAttrs): Node {
  const a = { size: attrs.size, stride: attrs.stride };
  return makeNode(maxPoolSelectOp, [u, x], a, `maxPoolSelect(${label(u)},${label(x)})`);
}

function maxPoolGrad(g: Node, x: Node, attrs: PoolAttrs): Node {
  const a = { size: attrs.size, stride: attrs.stride };
  return makeNode(maxPoolGradOp, [g, x], a, `maxPoolGrad(${label(g)},${label(x)})`);
}
