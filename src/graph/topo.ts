/** Iterative topological sort: graphs of 100,000 nodes must not overflow the stack. */
import type { Node } from "./node.js";

/** Every node the `outputs` depend on, inputs before users, each once. */
export function topoSort(outputs: readonly Node[]): Node[] {
  const order: Node[] = [];
  const state = new Map<Node, 1 | 2>(); // 1: on the stack, 2: emitted
  const stack: { node: Node; next: number }[] = [];
  for (const root of outputs) {
    if (state.has(root)) continue;
    state.set(root, 1);
    stack.push({ node: root, next: 0 });
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      if (top.next < top.node.inputs.length) {
        const input = top.node.inputs[top.next++];
        if (!state.has(input)) {
          state.set(input, 1);
          stack.push({ node: input, next: 0 });
        }
      } else {
        stack.pop();
        state.set(top.node, 2);
        order.push(top.node);
      }
    }
  }
  return order;
}
