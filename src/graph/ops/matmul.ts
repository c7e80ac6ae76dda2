/** 2-D matrix product with optional transposes. */
import { backend } from "../../tensor/active.js";
import { fmt } from "../../tensor/shape.js";
import { checkArity, checkOptions, label, makeNode, type Node } from "../node.js";
import { defineOp, type Op } from "../op.js";
import { add } from "./elementwise.js";
import { fmtType, promoteTypes } from "../types.js";

/** Options of {@link matmul}. */
export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

/** op(a) @ op(b), op transposing when transA/transB are set. */
export const matmulOp: Op = defineOp<Required<MatmulOptions>>({
  name: "matmul",
  sameAs: { dtype: "promote" },
  type: ([a, b], attrs) => {
    if ((a.shape && a.shape.length !== 2) || (b.shape && b.shape.length !== 2)) {
      throw new Error(`expects 2-D inputs, got ${fmtType(a.shape)} @ ${fmtType(b.shape)}`);
    }
    const [m, k] =
      a.shape === null ? [null, null] : attrs.transA ? [a.shape[1], a.shape[0]] : a.shape;
    const [k2, n] =
      b.shape === null ? [null, null] : attrs.transB ? [b.shape[1], b.shape[0]] : b.shape;
    if (k !== null && k2 !== null && k !== k2) {
      throw new Error(`inner dimensions differ: ${fmtType(a.shape)} @ ${fmtType(b.shape)}`);
    }
    return { shape: [m, n], dtype: promoteTypes(a.dtype, b.dtype) };
  },
  // d(op(A) op(B)) = op(dA) op(B) + op(A) op(dB), with the same transposes.
  jvp: (node, [ta, tb]) => {
    const [a, b] = node.inputs;
    const options = { transA: node.attrs.transA, transB: node.attrs.transB };
    const da = ta && matmul(ta, b, options);
    const db = tb && matmul(a, tb, options);
    return da && db ? add(da, db) : (da ?? db);
  },
  compute: (node, [a, b]) => {
    if (a.rank !== 2 || b.rank !== 2) {
      throw new Error(`expects 2-D inputs, got ${fmt(a.shape)} @ ${fmt(b.shape)}`);
    }
    return backend().matmul(a, b, node.attrs.transA, node.attrs.transB);
  },
  // C = op(A) op(B): dA and dB written for each transpose combination so that no explicit
  // transpose node is needed.
  gradient: (node, g) => {
    const [a, b] = node.inputs;
    const tA = node.attrs.transA;
    const tB = node.attrs.transB;
    if (!tA && !tB) return [matmul(g, b, { transB: true }), matmul(a, g, { transA: true })];
    if (!tA && tB) return [matmul(g, b), matmul(g, a, { transA: true })];
    if (tA && !tB) return [matmul(b, g, { transB: true }), matmul(a, g)];
    return [
      matmul(b, g, { transA: true, transB: true }),
      matmul(g, a, { transA: true, transB: true }),
    ];
  },
});

/** op(a) @ op(b) for 2-D values. Example: `matmul(X, W)`, `matmul(g, W, { transB: true })`. */
export function matmul(a: Node, b: Node, options?: MatmulOptions): Node {
  const example = "matmul(a, b, { transA: true, transB: false })";
  checkArity("matmul(a, b, options)", arguments.length, 3, example);
  const checked = checkOptions("matmul(a, b, options)", options, ["transA", "transB"], example);
  const { transA = false, transB = false } = checked;
  if (typeof transA !== "boolean" || typeof transB !== "boolean") {
    throw new TypeError(`matmul: transA and transB must be booleans`);
  }
  const name = `(${label(a)}${transA ? "ᵀ" : ""}@${label(b)}${transB ? "ᵀ" : ""})`;
  return makeNode(matmulOp, [a, b], { transA, transB }, name);
}
