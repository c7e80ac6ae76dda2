/** Element-wise ops: arithmetic with NumPy broadcasting, constants, and unary functions. */
import { backend } from "../../tensor/active.js";
import { full } from "../../tensor/tensor.js";
import { describe, label, makeNode, type Node } from "../node.js";
import { defineOp, type Op } from "../op.js";
import { broadcastDims, promoteTypes, type NodeType } from "../types.js";
import { broadcastTo, sumLike } from "./shape.js";

/** The attrs of the ops with a scalar constant. */
interface ConstantAttrs {
  constant: number;
}

/** Facts of element-wise ops: a unary one keeps its input's shape and dtype. */
const SAME = { shape: 0, dtype: 0 } as const;
const BROADCAST = { shape: "broadcast", dtype: "promote" } as const;

/** The type of an element-wise op on two broadcast inputs. */
function broadcastType([a, b]: readonly NodeType[]): NodeType {
  return { shape: broadcastDims(a.shape, b.shape), dtype: promoteTypes(a.dtype, b.dtype) };
}

/** The type of an op whose value has its first input's shape and dtype. */
function sameType([x]: readonly NodeType[]): NodeType {
  return x;
}

function checkConstant(builder: string, c: unknown): number {
  if (typeof c !== "number") {
    throw new TypeError(`${builder}: the constant must be a number, got ${describe(c)}`);
  }
  return c;
}

/** a + b, broadcasting. */
export const addOp: Op = defineOp({
  name: "add",
  type: broadcastType,
  sameAs: BROADCAST,
  jvp: (node, [ta, tb]) => (ta && tb ? add(ta, tb) : broadcastTo(ta ?? tb!, node)),
  compute: (_node, [a, b]) => backend().binary("add", a, b),
  gradient: (node, g) => [sumLike(g, node.inputs[0]), sumLike(g, node.inputs[1])],
});

/** a - b, broadcasting. */
export const subOp: Op = defineOp({
  name: "sub",
  type: broadcastType,
  sameAs: BROADCAST,
  jvp: (node, [ta, tb]) =>
    ta && tb ? sub(ta, tb) : ta ? broadcastTo(ta, node) : broadcastTo(neg(tb!), node),
  compute: (_node, [a, b]) => backend().binary("sub", a, b),
  gradient: (node, g) => [sumLike(g, node.inputs[0]), sumLike(neg(g), node.inputs[1])],
});

/** a * b, broadcasting. */
export const mulOp: Op = defineOp({
  name: "mul",
  type: broadcastType,
  sameAs: BROADCAST,
  jvp: (node, [ta, tb]) => {
    const [a, b] = node.inputs;
    const da = ta && mul(ta, b);
    const db = tb && mul(a, tb);
    return da && db ? add(da, db) : broadcastTo((da ?? db)!, node);
  },
  compute: (_node, [a, b]) => backend().binary("mul", a, b),
  gradient: (node, g) => {
    const [a, b] = node.inputs;
    return [sumLike(mul(g, b), a), sumLike(mul(g, a), b)];
  },
});

/** a / b, broadcasting. */
export const divOp: Op = defineOp({
  name: "div",
  type: broadcastType,
  sameAs: BROADCAST,
  // d(a/b) = (da - (a/b) db) / b
  jvp: (node, [ta, tb]) => {
    const b = node.inputs[1];
    const numerator = ta && tb ? sub(ta, mul(node, tb)) : ta ? ta : neg(mul(node, tb!));
    return broadcastTo(div(numerator, b), node);
  },
  compute: (_node, [a, b]) => backend().binary("div", a, b),
  // d(a/b)/db = -a/b^2 = -(a/b)/b: reuse the node itself.
  gradient: (node, g) => {
    const [a, b] = node.inputs;
    return [sumLike(div(g, b), a), sumLike(neg(mul(g, div(node, b))), b)];
  },
});

/** -x. */
export const negOp: Op = defineOp({
  name: "neg",
  type: sameType,
  sameAs: SAME,
  jvp: (_node, [t]) => neg(t!),
  compute: (_node, [x]) => backend().unary("neg", x),
  gradient: (_node, g) => [neg(g)],
});

/** x + c for a constant c. */
export const addByConstOp: Op = defineOp<ConstantAttrs>({
  name: "addByConst",
  type: sameType,
  sameAs: SAME,
  jvp: (_node, [t]) => t,
  compute: (node, [x]) => backend().scalar("add", x, node.attrs.constant),
  gradient: (_node, g) => [g],
});

/** x * c for a constant c. */
export const mulByConstOp: Op = defineOp<ConstantAttrs>({
  name: "mulByConst",
  type: sameType,
  sameAs: SAME,
  jvp: (node, [t]) => mulByConst(t!, node.attrs.constant),
  compute: (node, [x]) => backend().scalar("mul", x, node.attrs.constant),
  gradient: (node, g) => [mulByConst(g, node.attrs.constant)],
});

/** x / c for a constant c. */
export const divByConstOp: Op = defineOp<ConstantAttrs>({
  name: "divByConst",
  type: sameType,
  sameAs: SAME,
  jvp: (node, [t]) => divByConst(t!, node.attrs.constant),
  compute: (node, [x]) => backend().scalar("div", x, node.attrs.constant),
  gradient: (node, g) => [divByConst(g, node.attrs.constant)],
});

/** x ** c for a constant c. */
export const powOp: Op = defineOp<ConstantAttrs>({
  name: "pow",
  type: sameType,
  sameAs: SAME,
  compute: (node, [x]) => backend().scalar("pow", x, node.attrs.constant),
  gradient: (node, g) => {
    const c = node.attrs.constant;
    const x = node.inputs[0];
    if (c === 0) return [null]; // x^0 = 1: constant
    return [mul(g, mulByConst(c === 1 ? onesLike(x) : pow(x, c - 1), c))];
  },
});

/** e^x. */
export const expOp: Op = defineOp({
  name: "exp",
  type: sameType,
  sameAs: SAME,
  jvp: (node, [t]) => mul(t!, node),
  compute: (_node, [x]) => backend().unary("exp", x),
  gradient: (node, g) => [mul(g, node)], // d/dx e^x = e^x: reuse the node itself
});

/** Natural logarithm. */
export const logOp: Op = defineOp({
  name: "log",
  type: sameType,
  sameAs: SAME,
  jvp: (node, [t]) => div(t!, node.inputs[0]),
  compute: (_node, [x]) => backend().unary("log", x),
  gradient: (node, g) => [div(g, node.inputs[0])],
});

/** Square root. */
export const sqrtOp: Op = defineOp({
  name: "sqrt",
  type: sameType,
  sameAs: SAME,
  jvp: (node, [t]) => div(mulByConst(t!, 0.5), node),
  compute: (_node, [x]) => backend().unary("sqrt", x),
  gradient: (node, g) => [div(mulByConst(g, 0.5), node)],
});

/** max(x, 0). */
export const reluOp: Op = defineOp({
  name: "relu",
  type: sameType,
  sameAs: SAME,
  jvp: (node, [t]) => mul(t!, step(node.inputs[0])),
  compute: (_node, [x]) => backend().unary("relu", x),
  gradient: (node, g) => [mul(g, step(node.inputs[0]))],
});

/** 1 where x > 0, else 0: relu's derivative; piecewise constant, so its own gradient is zero. */
export const stepOp: Op = defineOp({
  name: "step",
  type: sameType,
  sameAs: SAME,
  compute: (_node, [x]) => backend().unary("step", x),
  gradient: () => [null],
});

/** 1 / (1 + e^-x), computed without overflow. */
export const sigmoidOp: Op = defineOp({
  name: "sigmoid",
  type: sameType,
  sameAs: SAME,
  jvp: (node, [t]) => mul(t!, mul(node, addByConst(neg(node), 1))),
  compute: (_node, [x]) => backend().unary("sigmoid", x),
  // s' = s (1 - s)
  gradient: (node, g) => [mul(g, mul(node, addByConst(neg(node), 1)))],
});

/** Hyperbolic tangent. */
export const tanhOp: Op = defineOp({
  name: "tanh",
  type: sameType,
  sameAs: SAME,
  jvp: (node, [t]) => mul(t!, addByConst(neg(mul(node, node)), 1)),
  compute: (_node, [x]) => backend().unary("tanh", x),
  // tanh' = 1 - tanh^2
  gradient: (node, g) => [mul(g, addByConst(neg(mul(node, node)), 1))],
});

/** |x|; its gradient is sign(x) g, 0 at 0 (as PyTorch and JAX). */
export const absOp: Op = defineOp({
  name: "abs",
  type: sameType,
  sameAs: SAME,
  compute: (_node, [x]) => backend().unary("abs", x),
  // sign(x) = step(x) - step(-x): two nodes of an existing op, 0 at x = 0.
  gradient: (node, g) => {
    const x = node.inputs[0];
    return [mul(g, sub(step(x), step(neg(x))))];
  },
});

// NOTE: at ties minimum and maximum send half of g to each input (PyTorch and JAX do the same),
// so the gradient is the average of the one-sided ones; the weights are written with greater.

/** The weight of input a in maximum(a, b): 1 where a > b, 1/2 at ties, 0 where a < b. */
function maxWeight(a: Node, b: Node): Node {
  return mulByConst(sub(addByConst(greater(a, b), 1), greater(b, a)), 0.5);
}

/** Element-wise minimum of a and b, broadcasting. */
export const minimumOp: Op = defineOp({
  name: "minimum",
  type: broadcastType,
  sameAs: BROADCAST,
  compute: (_node, [a, b]) => backend().binary("minimum", a, b),
  gradient: (node, g) => {
    const [a, b] = node.inputs;
    return [sumLike(mul(g, maxWeight(b, a)), a), sumLike(mul(g, maxWeight(a, b)), b)];
  },
});

/** Element-wise maximum of a and b, broadcasting. */
export const maximumOp: Op = defineOp({
  name: "maximum",
  type: broadcastType,
  sameAs: BROADCAST,
  compute: (_node, [a, b]) => backend().binary("maximum", a, b),
  gradient: (node, g) => {
    const [a, b] = node.inputs;
    return [sumLike(mul(g, maxWeight(a, b)), a), sumLike(mul(g, maxWeight(b, a)), b)];
  },
});

/** 1 where a > b, else 0 (a and b's promoted dtype), broadcasting; piecewise constant. */
export const greaterOp: Op = defineOp({
  name: "greater",
  type: broadcastType,
  sameAs: BROADCAST,
  compute: (_node, [a, b]) => backend().binary("greater", a, b),
  gradient: () => [null, null],
});

/** cond != 0 ? a : b, the three broadcast together; cond gets no gradient. */
export const whereOp: Op = defineOp({
  name: "where",
  type: ([cond, a, b]) => ({
    shape: broadcastDims(cond.shape, broadcastDims(a.shape, b.shape)),
    dtype: promoteTypes(a.dtype, b.dtype),
  }),
  compute: (_node, [cond, a, b]) => backend().where(cond, a, b),
  gradient: (node, g) => {
    const [cond, a, b] = node.inputs;
    const zero = zerosLike(g);
    return [null, sumLike(where(cond, g, zero), a), sumLike(where(cond, zero, g), b)];
  },
});

/** Zeros with x's shape and dtype. */
export const zerosLikeOp: Op = defineOp({
  name: "zerosLike",
  type: sameType,
  sameAs: SAME,
  compute: (_node, [x]) => full(x.shape, 0, x.dtype),
  gradient: () => [null],
});

/** Ones with x's shape and dtype. */
export const onesLikeOp: Op = defineOp({
  name: "onesLike",
  type: sameType,
  sameAs: SAME,
  compute: (_node, [x]) => full(x.shape, 1, x.dtype),
  gradient: () => [null],
});

/** |x| element-wise. Example: `sum(abs(w))` is the L1 norm. */
export const abs = (x: Node): Node => makeNode(absOp, [x], {}, `abs(${label(x)})`);
/** Element-wise minimum with broadcasting. Example: `minimum(x, y)`. */
export const minimum = (a: Node, b: Node): Node =>
  makeNode(minimumOp, [a, b], {}, `minimum(${label(a)},${label(b)})`);
/** Element-wise maximum with broadcasting. Example: `maximum(x, zerosLike(x))` is relu. */
export const maximum = (a: Node, b: Node): Node =>
  makeNode(maximumOp, [a, b], {}, `maximum(${label(a)},${label(b)})`);
/** 1 where a > b, else 0, with broadcasting: a condition for {@link where}. */
export const greater = (a: Node, b: Node): Node =>
  makeNode(greaterOp, [a, b], {}, `(${label(a)}>${label(b)})`);
/** cond != 0 ? a : b element-wise, broadcasting. Example: `where(greater(x, y), x, y)`. */
export const where = (cond: Node, a: Node, b: Node): Node =>
  makeNode(whereOp, [cond, a, b], {}, `where(${label(cond)},${label(a)},${label(b)})`);

/** a + b with NumPy broadcasting. Example: `add(x, y)` or `x.add(y)`. */
export const add = (a: Node, b: Node): Node =>
  makeNode(addOp, [a, b], {}, `(${label(a)}+${label(b)})`);
/** a - b with NumPy broadcasting. */
export const sub = (a: Node, b: Node): Node =>
  makeNode(subOp, [a, b], {}, `(${label(a)}-${label(b)})`);
/** a * b with NumPy broadcasting. */
export const mul = (a: Node, b: Node): Node =>
  makeNode(mulOp, [a, b], {}, `(${label(a)}*${label(b)})`);
/** a / b with NumPy broadcasting. */
export const div = (a: Node, b: Node): Node =>
  makeNode(divOp, [a, b], {}, `(${label(a)}/${label(b)})`);
/** -x. */
export const neg = (x: Node): Node => makeNode(negOp, [x], {}, `(-${label(x)})`);
/** x + c. Example: `addByConst(x, 1)` is `x.add(1)`. */
export const addByConst = (x: Node, c: number): Node =>
  makeNode(addByConstOp, [x], { constant: checkConstant("addByConst", c) }, `(${label(x)}+${c})`);
/** x * c. */
export const mulByConst = (x: Node, c: number): Node =>
  makeNode(mulByConstOp, [x], { constant: checkConstant("mulByConst", c) }, `(${label(x)}*${c})`);
/** x / c. */
export const divByConst = (x: Node, c: number): Node =>
  makeNode(divByConstOp, [x], { constant: checkConstant("divByConst", c) }, `(${label(x)}/${c})`);
/** x ** c for a constant c. Example: `pow(x, 2)`. */
export const pow = (x: Node, c: number): Node =>
  makeNode(powOp, [x], { constant: checkConstant("pow", c) }, `(${label(x)}^${c})`);
/** e^x element-wise. */
export const exp = (x: Node): Node => makeNode(expOp, [x], {}, `exp(${label(x)})`);
/** Natural log element-wise. */
export const log = (x: Node): Node => makeNode(logOp, [x], {}, `log(${label(x)})`);
/** Square root element-wise. */
export const sqrt = (x: Node): Node => makeNode(sqrtOp, [x], {}, `sqrt(${label(x)})`);
/** max(x, 0) element-wise. */
export const relu = (x: Node): Node => makeNode(reluOp, [x], {}, `relu(${label(x)})`);
/** 1 where x > 0 else 0 (relu's derivative). */
export const step = (x: Node): Node => makeNode(stepOp, [x], {}, `step(${label(x)})`);
/** Logistic sigmoid element-wise. */
export const sigmoid = (x: Node): Node => makeNode(sigmoidOp, [x], {}, `sigmoid(${label(x)})`);
/** tanh element-wise. */
export const tanh = (x: Node): Node => makeNode(tanhOp, [x], {}, `tanh(${label(x)})`);
/** Zeros shaped like x's value. */
export const zerosLike = (x: Node): Node =>
  makeNode(zerosLikeOp, [x], {}, `zerosLike(${label(x)})`);
/** Ones shaped like x's value. */
export const onesLike = (x: Node): Node => makeNode(onesLikeOp, [x], {}, `onesLike(${label(x)})`);
