/** Element-wise ops: arithmetic with NumPy broadcasting, constants, and unary functions. */
import { backend } from "../../tensor/active.js";
import type { BinaryKind, ScalarKind, UnaryKind } from "../../tensor/backend.js";
import { full } from "../../tensor/tensor.js";
import { label, makeNode, type Node } from "../node.js";
import { typeName } from "../../tensor/options.js";
import type { BuiltinOpName } from "../op-names.js";
import { declareOp, setZeroGradient, type NodeOf, type Op, type OpSpec } from "../op.js";
import { broadcastDims, promoteTypes } from "../types.js";
import { broadcastTo, sumLike } from "./shape.js";

/** The attrs of the ops with a scalar constant. */
interface ConstantAttrs {
  constant: number;
}

/** Facts of element-wise ops: a unary one keeps its input's shape and dtype. */
const SAME = { shape: 0, dtype: 0 } as const;
const BROADCAST = { shape: "broadcast", dtype: "promote" } as const;

function checkConstant(builder: string, c: unknown): number {
  if (typeof c !== "number") {
    throw new TypeError(`${builder}: the constant must be a number, got ${typeName(c)}`);
  }
  return c;
}

/** Multiplies a tangent or an output gradient by an element-wise op's derivative at its input. */
type Scale<A> = (node: NodeOf<A>, t: Node) => Node;

// NOTE: an element-wise op of one input has a diagonal Jacobian, so J^T = J: one linear map
// `scale(node, t)`, t times f'(x), is both its gradient rule (t = the output gradient) and its
// forward rule (t = the input's tangent), as PyTorch derives such forward rules from the backward
// formula (`auto_element_wise`). null: piecewise constant, no gradient.

/** An op of one input with x's shape and dtype, computed by `compute`; its rules from `scale`. */
function diagonalOp<A extends object>(
  name: BuiltinOpName,
  compute: OpSpec<A>["compute"],
  scale: Scale<A> | null,
): Op {
  return declareOp<A>({
    name,
    sameAs: SAME,
    compute,
    gradient: (node, g) => [scale && scale(node, g)],
    jvp: (node, [t]) => scale && scale(node, t!),
  });
}

/** A unary op run by the unary kernel of its name. */
function unaryOp(name: UnaryKind, scale: Scale<object> | null): Op {
  return diagonalOp(name, (_node, [x]) => backend().unary(name, x), scale);
}

/** x (kind) c for the constant in attrs, run by the scalar kernel. */
function scalarOp(name: BuiltinOpName, kind: ScalarKind, scale: Scale<ConstantAttrs>): Op {
  return diagonalOp<ConstantAttrs>(
    name,
    (node, [x]) => backend().scalar(kind, x, node.attrs.constant),
    scale,
  );
}

/** An op of two broadcast inputs run by the binary kernel of its name. */
function binaryOp(name: BinaryKind, rules: Pick<OpSpec<object>, "gradient" | "jvp">): Op {
  return declareOp({
    name,
    sameAs: BROADCAST,
    compute: (_node, [a, b]) => backend().binary(name, a, b),
    ...rules,
  });
}

/** a + b, broadcasting. */
export const addOp = binaryOp("add", {
  jvp: (node, [ta, tb]) => (ta && tb ? add(ta, tb) : broadcastTo(ta ?? tb!, node)),
  gradient: (node, g) => [sumLike(g, node.inputs[0]), sumLike(g, node.inputs[1])],
});

/** a - b, broadcasting. */
export const subOp = binaryOp("sub", {
  jvp: (node, [ta, tb]) =>
    ta && tb ? sub(ta, tb) : ta ? broadcastTo(ta, node) : broadcastTo(neg(tb!), node),
  gradient: (node, g) => [sumLike(g, node.inputs[0]), sumLike(neg(g), node.inputs[1])],
});

/** a * b, broadcasting. */
export const mulOp = binaryOp("mul", {
  jvp: (node, [ta, tb]) => {
    const [a, b] = node.inputs;
    const da = ta && mul(ta, b);
    const db = tb && mul(a, tb);
    return da && db ? add(da, db) : broadcastTo((da ?? db)!, node);
  },
  gradient: (node, g) => {
    const [a, b] = node.inputs;
    return [sumLike(mul(g, b), a), sumLike(mul(g, a), b)];
  },
});

/** a / b, broadcasting. */
export const divOp = binaryOp("div", {
  // d(a/b) = (da - (a/b) db) / b
  jvp: (node, [ta, tb]) => {
    const b = node.inputs[1];
    const numerator = ta && tb ? sub(ta, mul(node, tb)) : ta ? ta : neg(mul(node, tb!));
    return broadcastTo(div(numerator, b), node);
  },
  // d(a/b)/db = -a/b^2 = -(a/b)/b: reuse the node itself.
  gradient: (node, g) => {
    const [a, b] = node.inputs;
    return [sumLike(div(g, b), a), sumLike(neg(mul(g, div(node, b))), b)];
  },
});

/** -x. */
export const negOp = unaryOp("neg", (_node, t) => neg(t));
/** x + c for a constant c. */
export const addByConstOp = scalarOp("addByConst", "add", (_node, t) => t);
/** x * c for a constant c. */
export const mulByConstOp = scalarOp("mulByConst", "mul", (node, t) =>
  mulByConst(t, node.attrs.constant),
);
/** x / c for a constant c. */
export const divByConstOp = scalarOp("divByConst", "div", (node, t) =>
  divByConst(t, node.attrs.constant),
);

/** x ** c for a constant c: t * c x^(c-1). */
export const powOp = declareOp<ConstantAttrs>({
  name: "pow",
  sameAs: SAME,
  compute: (node, [x]) => backend().scalar("pow", x, node.attrs.constant),
  gradient: (node, g) => {
    const c = node.attrs.constant;
    const x = node.inputs[0];
    if (c === 0) return [null]; // x^0 = 1: constant
    return [mul(g, mulByConst(c === 1 ? onesLike(x) : pow(x, c - 1), c))];
  },
});

/** e^x; its derivative is the node itself. */
export const expOp = unaryOp("exp", (node, t) => mul(t, node));
/** Natural logarithm. */
export const logOp = unaryOp("log", (node, t) => div(t, node.inputs[0]));
/** Square root: t / (2 sqrt(x)). */
export const sqrtOp = unaryOp("sqrt", (node, t) => div(mulByConst(t, 0.5), node));
/** max(x, 0). */
export const reluOp = unaryOp("relu", (node, t) => mul(t, step(node.inputs[0])));
/** 1 where x > 0, else 0: relu's derivative; piecewise constant, so its own gradient is zero. */
export const stepOp = unaryOp("step", null);
/** 1 / (1 + e^-x), computed without overflow; s' = s (1 - s). */
export const sigmoidOp = unaryOp("sigmoid", (node, t) =>
  mul(t, mul(node, addByConst(neg(node), 1))),
);
/** Hyperbolic tangent; tanh' = 1 - tanh^2. */
export const tanhOp = unaryOp("tanh", (node, t) => mul(t, addByConst(neg(mul(node, node)), 1)));
/** |x|; its derivative sign(x) = step(x) - step(-x), 0 at 0 (as PyTorch and JAX). */
export const absOp = unaryOp("abs", (node, t) => {
  const x = node.inputs[0];
  return mul(t, sub(step(x), step(neg(x))));
});

// NOTE: at ties minimum and maximum send half of g to each input (PyTorch and JAX do the same),
// so the gradient is the average of the one-sided ones; the weights are written with greater.

/** The weight of input a in maximum(a, b): 1 where a > b, 1/2 at ties, 0 where a < b. */
function maxWeight(a: Node, b: Node): Node {
  return mulByConst(sub(addByConst(greater(a, b), 1), greater(b, a)), 0.5);
}

/** Element-wise minimum of a and b, broadcasting. */
export const minimumOp = binaryOp("minimum", {
  gradient: (node, g) => {
    const [a, b] = node.inputs;
    return [sumLike(mul(g, maxWeight(b, a)), a), sumLike(mul(g, maxWeight(a, b)), b)];
  },
});

/** Element-wise maximum of a and b, broadcasting. */
export const maximumOp = binaryOp("maximum", {
  gradient: (node, g) => {
    const [a, b] = node.inputs;
    return [sumLike(mul(g, maxWeight(a, b)), a), sumLike(mul(g, maxWeight(b, a)), b)];
  },
});

/** 1 where a > b, else 0 (a and b's promoted dtype), broadcasting; piecewise constant. */
export const greaterOp = binaryOp("greater", { gradient: () => [null, null] });

/** cond != 0 ? a : b, the three broadcast together; cond gets no gradient. */
export const whereOp: Op = declareOp({
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
export const zerosLikeOp: Op = declareOp({
  name: "zerosLike",
  sameAs: SAME,
  compute: (_node, [x]) => full(x.shape, 0, x.dtype),
  gradient: () => [null],
});

/** Ones with x's shape and dtype. */
export const onesLikeOp: Op = declareOp({
  name: "onesLike",
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
setZeroGradient(zerosLike);
/** Ones shaped like x's value. */
export const onesLike = (x: Node): Node => makeNode(onesLikeOp, [x], {}, `onesLike(${label(x)})`);
