/** Matrix products with optional transposes: 2-D, or batched over leading axes as NumPy's matmul. */
import { backend } from "../../tensor/active.js";
import { checkArity, checkOptions, label, makeNode, type Node } from "../node.js";
import { declareOp, type Op } from "../op.js";
import { productDims } from "../../tensor/shape.js";
import { add } from "./elementwise.js";
import { reshape, sumLike } from "./shape.js";
import { broadcastDims, fmtType, promoteTypes, type Dim } from "../types.js";

/** Options of {@link matmul}. */
export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

/** op(a) @ op(b), op transposing when transA/transB are set. */
export const matmulOp: Op = declareOp<Required<MatmulOptions>>({
  name: "matmul",
  sameAs: { dtype: "promote" },
  type: ([a, b], attrs) => {
    const ranks = [a.shape, b.shape].map((s) => s?.length);
    if (ranks.some((r) => r !== undefined && r < 2)) {
      throw new Error(
        `expects inputs of rank 2 or more, got ${fmtType(a.shape)} @ ${fmtType(b.shape)}`,
      );
    }
    const dtype = promoteTypes(a.dtype, b.dtype);
    // A rank not known: the output's neither (2-D or batched).
    if (a.shape === null || b.shape === null) return { shape: null, dtype };
    const [m, , n] = productDims(a.shape, b.shape, attrs.transA, attrs.transB);
    let batch: readonly Dim[] | null;
    try {
      batch = broadcastDims(a.shape.slice(0, -2), b.shape.slice(0, -2));
    } catch {
      throw new Error(
        `batch dimensions do not broadcast: ${fmtType(a.shape)} @ ${fmtType(b.shape)}`,
      );
    }
    return { shape: batch === null ? null : [...batch, m, n], dtype };
  },
  // d(op(A) op(B)) = op(dA) op(B) + op(A) op(dB), with the same transposes.
  jvp: (node, [ta, tb]) => {
    const [a, b] = node.inputs;
    const options = { transA: node.attrs.transA, transB: node.attrs.transB };
    const da = ta && matmul(ta, b, options);
    const db = tb && matmul(a, tb, options);
    return da && db ? add(da, db) : (da ?? db);
  },
  compute: (node, [a, b]) => backend().matmul(a, b, node.attrs.transA, node.attrs.transB),
  // C = op(A) op(B): dA and dB written for each transpose combination so that no explicit
  // transpose node is needed.
  gradient: (node, g) => {
    const [a, b] = node.inputs;
    const tA = node.attrs.transA;
    const tB = node.attrs.transB;
    const grads =
      !tA && !tB
        ? [matmul(g, b, { transB: true }), matmul(a, g, { transA: true })]
        : !tA && tB
          ? [matmul(g, b), matmul(g, a, { transA: true })]
          : tA && !tB
            ? [matmul(b, g, { transB: true }), matmul(a, g)]
            : [
                matmul(b, g, { transA: true, transB: true }),
                matmul(g, a, { transA: true, transB: true }),
              ];
    // Batched: an input's broadcast batch axes are summed back (none for 2-D @ 2-D, where the
    // graph stays as it was).
    if (a.shape?.length === 2 && b.shape?.length === 2) return grads;
    const stacked = stackedWeightGrad(a, b, g, tA, tB);
    if (stacked) return [sumLike(grads[0], a), stacked];
    return grads.map((d, i) => sumLike(d, node.inputs[i]));
  },
});

/**
 * b's gradient when a stack [..., m, k] multiplies one matrix b (a layer applied to every token):
 * one product over all the stack's rows, [k, rows] @ [rows, n], where the batched rule's product
 * per matrix (an inner dim of 28, the tokens, on the course's transformer) wrote a [batch, k, n]
 * stack to sum afterwards. Undefined where a dim it needs is not known.
 */
function stackedWeightGrad(a: Node, b: Node, g: Node, tA: boolean, tB: boolean): Node | undefined {
  const [as, bs] = [a.shape, b.shape];
  if (tA || as === null || as.length < 3 || bs?.length !== 2) return undefined;
  const k = as[as.length - 1];
  const n = tB ? bs[0] : bs[1];
  if (k === null || n === null) return undefined;
  const [rowsA, rowsG] = [reshape(a, [-1, k]), reshape(g, [-1, n])];
  return tB ? matmul(rowsG, rowsA, { transA: true }) : matmul(rowsA, rowsG, { transA: true });
}

/**
 * op(a) @ op(b): the last two axes multiply, leading (batch) axes broadcast, as NumPy's matmul;
 * op swaps an input's last two axes. Example: `matmul(X, W)`, `matmul(Q, K, { transB: true })`.
 */
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
