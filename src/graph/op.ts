/** Op: one kind of operation, and the registry that lets workers rebuild graphs by op name. */
import type { Tensor } from "../tensor/tensor.js";
import type { Node } from "./node.js";
import type { NodeType } from "./types.js";

/** Static parameters of a node: plain, structured-cloneable data. */
export type Attrs = Record<string, unknown>;

/** One kind of operation: its type rule, how to compute a node's value, and its gradient rule. */
export interface Op {
  readonly name: string;
  /**
   * The output's type (shape with null where unknown, dtype) from the inputs' types and the
   * attrs, run when a node is built; throws when known input types are incompatible.
   */
  type(inputTypes: readonly NodeType[], attrs: Attrs): NodeType;
  /** The node's value from its inputs' values; inputs are never modified. */
  compute(node: Node, inputValues: Tensor[]): Tensor;
  /**
   * One gradient node per input, in input order, given the gradient of the output; null for an
   * input that gets no gradient (a shape reference, a constant): nothing is built for it.
   */
  gradient(node: Node, outputGrad: Node): (Node | null)[];
  /**
   * Structural facts for graph rewrites, true whatever the input shapes (simplify() reads them):
   * the value has the shape of input `shape` (or the broadcast of inputs 0 and 1, which is input
   * 0's shape when both inputs have one shape), and the dtype of input `dtype` (or the promotion of
   * every input's). Absent: nothing is claimed, which is always sound.
   */
  readonly sameAs?: { shape?: number | "broadcast"; dtype?: number | "promote" };
}

const registry = new Map<string, Op>();

/** Registers an op under its unique name (so plans can be rebuilt in workers) and returns it. */
export function defineOp(op: Op): Op {
  if (registry.has(op.name)) throw new Error(`op "${op.name}" is already defined`);
  registry.set(op.name, op);
  return op;
}

/** The registered op called `name`; throws when there is none. */
export function opByName(name: string): Op {
  const op = registry.get(name);
  if (!op) throw new Error(`unknown op "${name}"`);
  return op;
}

/** Names of every registered op. */
export function registeredOps(): string[] {
  return [...registry.keys()];
}
