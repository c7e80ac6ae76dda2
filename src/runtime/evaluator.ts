/** Evaluator: runs a graph in topological order from a feed map. */
import { isPlaceholder, type Node } from "../graph/node.js";
import { topoSort } from "../graph/topo.js";
import { Tensor } from "../tensor/tensor.js";

/** Computes the values of a fixed list of nodes; build once, run many times. */
export class Evaluator {
  readonly evalNodes: readonly Node[];
  /** Every node the outputs need, inputs first. */
  readonly topoOrder: readonly Node[];
  /** The variables the outputs depend on. */
  readonly placeholders: readonly Node[];
  private readonly inputSlots: number[][];
  /** Per step, the slots whose last use that step is (freed after it). */
  private readonly releaseAfter: number[][];
  private readonly outputSlots: number[];

  /** Plans the run of `evalNodes`. Example: `new Evaluator([y]).run(new Map([[x, tensor(2)]]))`. */
  constructor(evalNodes: readonly Node[]) {
    this.evalNodes = [...evalNodes];
    this.topoOrder = topoSort(evalNodes);
    const slot = new Map<Node, number>();
    this.topoOrder.forEach((node, i) => slot.set(node, i));
    this.placeholders = this.topoOrder.filter(isPlaceholder);
    this.inputSlots = this.topoOrder.map((node) => node.inputs.map((input) => slot.get(input)!));
    this.outputSlots = evalNodes.map((node) => slot.get(node)!);
    const lastUse = new Array<number>(this.topoOrder.length).fill(-1);
    this.inputSlots.forEach((inputs, step) => inputs.forEach((s) => (lastUse[s] = step)));
    for (const s of this.outputSlots) lastUse[s] = Infinity;
    this.releaseAfter = this.topoOrder.map(() => []);
    lastUse.forEach((step, s) => {
      if (Number.isFinite(step) && step >= 0) this.releaseAfter[step].push(s);
    });
  }

  /** Values of evalNodes, in order, given values for the variables; feeds are never modified. */
  run(feeds: ReadonlyMap<Node, Tensor>): Tensor[] {
    const missing = this.placeholders.filter((p) => !feeds.has(p));
    if (missing.length > 0) {
      const names = missing.map((p) => `"${p.name}"`).join(", ");
      throw new Error(
        `Evaluator.run: missing feed for variable${missing.length > 1 ? "s" : ""} ${names}`,
      );
    }
    const values = new Array<Tensor | undefined>(this.topoOrder.length);
    for (let step = 0; step < this.topoOrder.length; step++) {
      const node = this.topoOrder[step];
      const fed = feeds.get(node);
      if (fed !== undefined) {
        if (!(fed instanceof Tensor)) {
          throw new TypeError(`Evaluator.run: the feed for "${node.name}" is not a Tensor`);
        }
        values[step] = fed;
      } else {
        const inputs = this.inputSlots[step].map((s) => values[s]!);
        values[step] = computeNode(node, inputs);
      }
      for (const s of this.releaseAfter[step]) values[s] = undefined;
    }
    return this.outputSlots.map((s) => values[s]!);
  }
}

/** node.op.compute with errors prefixed by the op and node: `matmul((X@W)): ...`. */
export function computeNode(node: Node, inputs: Tensor[]): Tensor {
  try {
    return node.op.compute(node, inputs);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // Messages that already show shapes stay as they are; others get the input shapes appended.
    const shapes = inputs.map((t) => `[${t.shape.join(",")}]`).join(", ");
    const detail =
      message.includes("[") || inputs.length === 0 ? message : `${message} (inputs ${shapes})`;
    throw new Error(`${node.op.name}(${node.name}): ${detail}`, { cause: error });
  }
}
