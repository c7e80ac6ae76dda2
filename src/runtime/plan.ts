/**
 * Graph <-> plain-data plan: what crosses to worker threads. No functions or closures: op names,
 * attrs and input indices, rebuilt through the op registry on the other side.
 */
import { isPlaceholder, Node } from "../graph/node.js";
import { opByName, type Attrs } from "../graph/op.js";
import { topoSort } from "../graph/topo.js";
import { constantOp } from "../graph/ops/shape.js";
import type { Tensor } from "../tensor/tensor.js";

/** One node of a plan: inputs are indices of earlier plan nodes. */
export interface PlanNode {
  op: string;
  name: string;
  attrs: Attrs;
  inputs: number[];
}

/** A graph as structured-cloneable data. */
export interface Plan {
  nodes: PlanNode[];
  /** Plan indices of the named placeholders, in the order given to lowerGraph. */
  placeholders: number[];
  /** Plan indices of the outputs. */
  outputs: number[];
}

/**
 * Lowers the graph that computes `outputs` from `placeholders` to a plan; each variable in
 * `fixed` becomes a constant node holding its tensor (what every thread then has as it is).
 */
export function lowerGraph(
  outputs: readonly Node[],
  placeholders: readonly Node[],
  fixed: ReadonlyMap<Node, Tensor> = new Map(),
): Plan {
  const order = topoSort([...outputs, ...placeholders]);
  const index = new Map<Node, number>();
  order.forEach((node, i) => index.set(node, i));
  const known = new Set(placeholders);
  for (const node of order) {
    if (isPlaceholder(node) && !known.has(node) && !fixed.has(node)) {
      throw new Error(
        `lowerGraph: variable "${node.name}" is needed but not listed as a placeholder`,
      );
    }
  }
  return {
    nodes: order.map((node) => {
      const value = fixed.get(node);
      if (value !== undefined) {
        const attrs = {
          values: Array.from(value.data),
          shape: [...value.shape],
          dtype: value.dtype,
        };
        return { op: constantOp.name, name: node.name, attrs, inputs: [] };
      }
      return {
        op: node.op.name,
        name: node.name,
        attrs: node.attrs,
        inputs: node.inputs.map((input) => index.get(input)!),
      };
    }),
    placeholders: placeholders.map((p) => index.get(p)!),
    outputs: outputs.map((o) => index.get(o)!),
  };
}

/** Rebuilds nodes from a plan through the op registry. */
export function rebuildGraph(plan: Plan): { placeholders: Node[]; outputs: Node[] } {
  const nodes: Node[] = [];
  for (const spec of plan.nodes) {
    const op = opByName(spec.op);
    // Placeholders too: their attrs carry the declared type.
    nodes.push(
      new Node(
        spec.inputs.map((i) => nodes[i]),
        op,
        spec.attrs,
        spec.name,
      ),
    );
  }
  return {
    placeholders: plan.placeholders.map((i) => nodes[i]),
    outputs: plan.outputs.map((i) => nodes[i]),
  };
}
