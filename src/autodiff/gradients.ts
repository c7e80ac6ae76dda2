/** Reverse-mode differentiation that builds the backward graph out of ordinary nodes. */
import { checkNodeList, label, Node, peekNextId } from "../graph/node.js";
import { fmtType, shapesAgree } from "../graph/types.js";
import { typeName } from "../tensor/options.js";
import { add, onesLike, zerosLike } from "../graph/ops/elementwise.js";
import { topoSort } from "../graph/topo.js";

/**
 * Gradient nodes of `output` with respect to each of `nodes`, seeded with onesLike(output).
 * The result nodes are ordinary graph nodes, so gradients of gradients work.
 * Example: `const [dx] = gradients(x.mul(x), [x])` evaluates to 2x.
 */
export function gradients(output: Node, nodes: readonly Node[]): Node[] {
  return sweep("gradients(output, nodes)", output, nodes, "gradients(y, [x])");
}

/** The checked, recorded reverse sweep behind gradients(), vjp() and tracedGradients(). */
function sweep(
  call: string,
  output: Node,
  nodes: readonly Node[],
  example: string,
  cotangent?: Node,
  trace?: SweepStep[],
): Node[] {
  if (!(output instanceof Node)) {
    throw new TypeError(
      `${call}: output must be a Node, got ${typeof output === "number" ? `the number ${String(output)}` : typeName(output)}`,
    );
  }
  checkNodeList(call, cotangent ? "inputs" : "nodes", nodes, example);
  const first = peekNextId();
  const result = reverseSweep(output, nodes, cotangent ?? onesLike(output), trace);
  markGradientNodes(first);
  return result;
}

/** Records that the nodes built since id `first` belong to a reverse sweep. */
function markGradientNodes(first: number): void {
  const last = gradientRanges[gradientRanges.length - 1];
  if (last !== undefined && last[1] === first) last[1] = peekNextId();
  else gradientRanges.push([first, peekNextId()]);
}

/** Id ranges of the nodes reverse sweeps built: what a listing marks as gradient nodes. */
const gradientRanges: [number, number][] = [];

/** Whether `node` was built by gradients() or vjp() (for listings and drawings). */
export function isGradientNode(node: Node): boolean {
  return gradientRanges.some(([lo, hi]) => node.id >= lo && node.id < hi);
}

/**
 * Reverse mode seeded with `cotangent` (a node of the output's shape): J^T u for each of
 * `inputs`, as ordinary nodes. `gradients(y, xs)` is `vjp(y, xs, onesLike(y))`.
 * Example: `const [ux] = vjp(matmul(x, w), [x], u)` evaluates to u w^T.
 */
export function vjp(output: Node, inputs: readonly Node[], cotangent: Node): Node[] {
  const call = "vjp(output, inputs, cotangent)";
  if (!(cotangent instanceof Node)) {
    throw new TypeError(`${call}: cotangent must be a Node, got ${typeName(cotangent)}`);
  }
  return sweep(call, output, inputs, "vjp(y, [x], u)", cotangent);
}

/** A partial adjoint: what `consumer`'s rule sent to its input `index` (null: the seed). */
export interface AdjointPart {
  node: Node;
  consumer: Node | null;
  index: number;
}

/** One step of the reverse sweep: a node's adjoint, the sum of the parts its consumers sent. */
export interface SweepStep {
  node: Node;
  adjoint: Node;
  parts: AdjointPart[];
}

/**
 * gradients() with its sweep recorded: each node's adjoint and the partial adjoints it summed,
 * in sweep order (what a learner watches; `traceHtml` shows it). Example:
 * `tracedGradients(loss, [W]).steps[0].node === loss`.
 */
export function tracedGradients(
  output: Node,
  nodes: readonly Node[],
): { gradients: Node[]; steps: SweepStep[] } {
  const steps: SweepStep[] = [];
  const call = "tracedGradients(output, nodes)";
  const result = sweep(call, output, nodes, "tracedGradients(y, [x])", undefined, steps);
  return { gradients: result, steps };
}

/** The reverse sweep from `output`, seeded with `seed`, to each of `nodes`; `trace` records it. */
function reverseSweep(
  output: Node,
  nodes: readonly Node[],
  seed: Node,
  trace?: SweepStep[],
): Node[] {
  const order = topoSort([output]);
  // Only nodes that lie on a path from a target to the output take part in the sweep.
  const targets = new Set(nodes);
  const onPath = new Set<Node>();
  for (const node of order) {
    if (targets.has(node) || node.inputs.some((input) => onPath.has(input))) onPath.add(node);
  }
  const grads = new Map<Node, AdjointPart[]>([
    [output, [{ node: seed, consumer: null, index: 0 }]],
  ]);
  const total = new Map<Node, Node>();
  for (let i = order.length - 1; i >= 0; i--) {
    const node = order[i];
    const parts = grads.get(node);
    if (!parts || !onPath.has(node)) continue;
    // Fan-in summed with add.
    const outputGrad = parts.map((part) => part.node).reduce((sum, part) => add(sum, part));
    total.set(node, outputGrad);
    trace?.push({ node, adjoint: outputGrad, parts });
    grads.delete(node);
    if (!node.inputs.some((input) => onPath.has(input))) continue;
    const inputGrads = pullbackOf(node, outputGrad);
    node.inputs.forEach((input, k) => {
      const inputGrad = inputGrads[k];
      // null: this input gets no gradient from this node, and nothing is built for it.
      if (inputGrad === null || !onPath.has(input)) return;
      const part = { node: inputGrad, consumer: node, index: k };
      const list = grads.get(input);
      if (list) list.push(part);
      else grads.set(input, [part]);
    });
  }
  return nodes.map((node) => total.get(node) ?? zerosLike(node));
}

/** What `node`'s op's rule returns, checked; its errors are wrapped in the name of the node. */
export function pullbackOf(node: Node, outputGrad: Node): (Node | null)[] {
  const where = `while differentiating ${node.op.name}(${node.inputs.map(label).join(", ")})`;
  let inputGrads: unknown;
  try {
    const op = node.op;
    inputGrads = op.pullback ? op.pullback(node, outputGrad) : op.gradient(node, outputGrad);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`${where}: ${message}`, { cause: error });
  }
  if (!Array.isArray(inputGrads) || inputGrads.length !== node.inputs.length) {
    const got = Array.isArray(inputGrads) ? `${inputGrads.length} gradients` : typeName(inputGrads);
    throw new Error(
      `${where}: the gradient rule returned ${got} for ${node.inputs.length} inputs (one Node, or null, per input)`,
    );
  }
  inputGrads.forEach((grad: unknown, k) => {
    if (grad === null) return;
    if (!(grad instanceof Node)) {
      throw new TypeError(
        `${where}: the gradient rule's result ${k} must be a Node or null, got ${typeName(grad)}`,
      );
    }
    checkLike(where, `gradient for input ${k} (${label(node.inputs[k])})`, grad, node.inputs[k]);
  });
  return inputGrads as (Node | null)[];
}

/** Throws when `made`'s known shape differs from `like`'s (a rule's result must have its input's). */
export function checkLike(where: string, what: string, made: Node, like: Node): void {
  if (!shapesAgree(made.shape, like.shape)) {
    throw new Error(
      `${where}: the ${what} has shape ${fmtType(made.shape)}, expected ${fmtType(like.shape)}`,
    );
  }
}
