/**
 * Concrete types: every node's shape and dtype at given input shapes, by the ops' type rules
 * (nothing runs). The compiled step plans its buffers with them, and fit() weighs a step's work.
 */
import { isPlaceholder, type Node } from "./node.js";
import type { NodeType } from "./types.js";
import type { DType } from "../tensor/tensor.js";

/** A type with every dim and the dtype known: a value's, or a node's at given input shapes. */
export interface ConcreteType {
  readonly shape: readonly number[];
  readonly dtype: DType;
}

/**
 * Every node of `order` (topological) typed by its op's type rule from its inputs' types, the
 * placeholders' taken from `given` (any other node `given` types is taken as it is); undefined
 * where a placeholder is not given, or a rule leaves a dim or the dtype unknown or rejects its
 * inputs. Nothing runs: the shapes a step will have, at the cost of the rules alone.
 */
export function concreteTypes(
  order: readonly Node[],
  given: (node: Node) => ConcreteType | undefined,
): Map<Node, ConcreteType> | undefined {
  const types = new Map<Node, ConcreteType>();
  for (const node of order) {
    const known = given(node);
    if (known !== undefined) {
      types.set(node, known);
      continue;
    }
    if (isPlaceholder(node)) return undefined;
    let type: NodeType;
    try {
      type = node.op.type(
        node.inputs.map((i) => types.get(i)!),
        node.attrs,
      );
    } catch {
      return undefined;
    }
    const { shape, dtype } = type;
    if (shape === null || dtype === null || shape.some((d) => d === null)) return undefined;
    types.set(node, { shape: shape as number[], dtype });
  }
  return types;
}
