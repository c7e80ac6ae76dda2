/** Forward mode: tangents pushed through the graph in topological order, as ordinary nodes. */
import { checkNodeList, checkOptions, label, Node } from "../graph/node.js";
import { typeName } from "../tensor/options.js";
import { add, mul, zerosLike } from "../graph/ops/elementwise.js";
import { sum } from "../graph/ops/reduce.js";
import { topoSort } from "../graph/topo.js";
import { checkLike, gradients, pullbackOf, vjp } from "./gradients.js";
import { constant, reshape } from "../graph/ops/shape.js";
import { fmtType, knownSize, promoteTypes } from "../graph/types.js";
import { allocate } from "../tensor/tensor.js";

/**
 * Jacobian-vector products: the tangent of each of `outputs` when `inputs` move along
 * `tangents` (one per input, of its shape), every other leaf held still. Tangents propagate
 * from the inputs in topological order through each op's forward rule (`Op.jvp`); an op without
 * one gets it from its gradient rule by the transpose trick (see {@link transposedJvp}). One
 * tangent node per output, zerosLike where the output does not depend on the inputs. Tangent
 * nodes are ordinary nodes: one Evaluator computes primal and tangent together, and they can be
 * differentiated again. Example: `const [dy] = jvp([x.mul(x)], [x], [v])` evaluates to 2 x v.
 */
export function jvp(
  outputs: readonly Node[],
  inputs: readonly Node[],
  tangents: readonly Node[],
): Node[] {
  const call = "jvp(outputs, inputs, tangents)";
  checkNodeList(call, "outputs", outputs, "jvp([y], [x], [v])");
  checkNodeList(call, "inputs", inputs, "jvp([y], [x], [v])");
  checkNodeList(call, "tangents", tangents, "jvp([y], [x], [v])");
  if (tangents.length !== inputs.length) {
    throw new Error(`${call}: ${inputs.length} inputs but ${tangents.length} tangents`);
  }
  const tangentOf = new Map<Node, Node | null>();
  inputs.forEach((input, i) => tangentOf.set(input, tangents[i]));
  for (const node of topoSort(outputs)) {
    if (tangentOf.has(node)) continue;
    const inputTangents = node.inputs.map((input) => tangentOf.get(input) ?? null);
    // Nothing moves below this node: it builds nothing (null, as in the reverse sweep).
    if (inputTangents.every((t) => t === null)) {
      tangentOf.set(node, null);
      continue;
    }
    tangentOf.set(node, tangentOfNode(node, inputTangents));
  }
  return outputs.map((output) => tangentOf.get(output) ?? zerosLike(output));
}

/** The forward rule's tangent of `node`, checked; its errors name the node. */
function tangentOfNode(node: Node, inputTangents: readonly (Node | null)[]): Node | null {
  const rule = node.op.jvp;
  if (!rule) return transposedJvp(node, inputTangents);
  const where = `while pushing tangents through ${node.op.name}(${node.inputs.map(label).join(", ")})`;
  let tangent: unknown;
  try {
    tangent = rule(node, inputTangents);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`${where}: ${message}`, { cause: error });
  }
  if (tangent === null) return null;
  if (!(tangent instanceof Node)) {
    throw new TypeError(
      `${where}: the forward rule must return a Node or null, got ${typeName(tangent)}`,
    );
  }
  checkLike(where, "tangent (of the output)", tangent, node);
  return tangent;
}

/**
 * The forward rule of an op that declares none, from its gradient rule: the rule's input
 * gradients are linear in the output gradient u, so J v = d/du sum_i <gradient_i(u), v_i>. It
 * costs the gradient rule's nodes plus one reverse pass over them (about three times an explicit
 * rule); u is a dummy (zeros of the output's type): by linearity its value never matters.
 */
export function transposedJvp(node: Node, inputTangents: readonly (Node | null)[]): Node | null {
  const u = zerosLike(node);
  const grads = pullbackOf(node, u);
  let pairing: Node | null = null;
  grads.forEach((grad, i) => {
    const tangent = inputTangents[i];
    if (grad === null || tangent === null) return;
    const term = sum(mul(grad, tangent));
    pairing = pairing === null ? term : add(pairing, term);
  });
  if (pairing === null) return null;
  return gradients(pairing, [u])[0];
}

/**
 * Hessian-vector products of a 0-d `output`: forward over reverse, jvp of gradients(). One per
 * input, of its shape. Example: `hvp(sum(x.mul(x).mul(x)), [x], [v])` evaluates to 6 x v.
 */
export function hvp(output: Node, inputs: readonly Node[], vectors: readonly Node[]): Node[] {
  if (!(output instanceof Node)) {
    throw new TypeError(
      `hvp(output, inputs, vectors): output must be a Node, got ${typeName(output)}`,
    );
  }
  return jvp(gradients(output, inputs), inputs, vectors);
}

/**
 * The full Jacobian of `output` with respect to `input`, both of fully known shapes, as a node of
 * shape [...output.shape, ...input.shape]: one forward pass per input element ("fwd": tangent
 * e_j gives column j) or one reverse pass per output element ("rev", the default: cotangent e_i
 * gives row i). Forward mode costs n passes, reverse m: the cheaper depends on which is smaller.
 * Example: `jacobian(tanh(matmul(W, x)), x, { mode: "fwd" })`.
 */
export function jacobian(output: Node, input: Node, options: { mode?: "fwd" | "rev" } = {}): Node {
  const example = 'jacobian(y, x, { mode: "fwd" })';
  const { mode = "rev" } = checkOptions(
    "jacobian(output, input, options)",
    options,
    ["mode"],
    example,
  );
  if (mode !== "fwd" && mode !== "rev") {
    throw new RangeError(
      `jacobian: mode must be "fwd" or "rev", got ${JSON.stringify(mode)}, as in ${example}`,
    );
  }
  const m = knownSize(output.shape);
  const n = knownSize(input.shape);
  if (m === null || n === null || m === 0 || n === 0) {
    const which =
      m === null || m === 0
        ? `output ${output.name} ${fmtType(output.shape)}`
        : `input ${input.name} ${fmtType(input.shape)}`;
    throw new Error(
      `jacobian: needs known, non-empty shapes; ${which} (declare them with variable(name, { shape }))`,
    );
  }
  const dtype = promoteTypes(output.dtype, input.dtype) ?? "float64";
  const basis = (k: number, shape: readonly number[]) => {
    const t = allocate([...shape], dtype);
    t.data[k] = 1;
    return constant(t);
  };
  const terms: Node[] = [];
  if (mode === "fwd") {
    for (let j = 0; j < n; j++) {
      const [column] = jvp([output], [input], [basis(j, input.shape as number[])]);
      terms.push(mul(reshape(column, [m, 1]), basis(j, [1, n])));
    }
  } else {
    for (let i = 0; i < m; i++) {
      const [row] = vjp(output, [input], basis(i, output.shape as number[]));
      terms.push(mul(basis(i, [m, 1]), reshape(row, [1, n])));
    }
  }
  const full = terms.reduce((a, b) => add(a, b));
  return reshape(full, [...(output.shape as number[]), ...(input.shape as number[])]);
}
