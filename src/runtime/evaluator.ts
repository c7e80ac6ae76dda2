/** Evaluator: runs a graph in topological order from a feed map. */
import { checkFeed, checkNodeList, isPlaceholder, label, type Node } from "../graph/node.js";
import { topoSort } from "../graph/topo.js";
import { fmtType, shapeFits } from "../graph/types.js";
import { typeName } from "../tensor/options.js";
import {
  inBackendMemory,
  placeInBackend,
  poolingEnabled,
  releaseArray,
  Tensor,
  type TypedArray,
} from "../tensor/tensor.js";

// NOTE: run() is the per-step hot path of training (tens of nodes, thousands of steps): all the
// bookkeeping is planned once here, into flat arrays, so a run does one Map lookup per feed (not
// per node), allocates one argument array per computed node and nothing else but the results.
//
// NOTE: buffer ownership. A value an op computes either has fresh data (from allocate(), owned by
// this run) or the very `data` object of one of its inputs (Tensor.reshapeView, sumLike of an
// equal shape, an op returning its input): the Op contract allows nothing else, so aliasing is
// seen by object identity (a `.buffer` comparison costs ~16 ns per access, several µs per run).
// Each slot therefore has a root, the slot whose value first held its data, and each root counts
// the slots still alive on it. When the last one dies, a computed root's data goes back to the
// buffer pool; a fed root's never does (feeds belong to the caller and may be views of shared memory), nor an output's
// (handed to the caller, who may give it back with recycle()).
//
// NOTE: outputs and the wasm arena. An array in the arena goes back to it only when released to
// the pool or when a FinalizationRegistry callback runs, and those never run inside a synchronous
// loop: a user's `for (...) ev.run(feeds)` grew the arena by its outputs every run (70 -> 482 MB in
// 500 runs, out of memory near 4,000). So run() copies each output that lives in a backend's
// memory into a plain array (the garbage collector frees those under pressure, loop or not) and
// gives the arena block back to the pool at once; training shards, which give their outputs back
// themselves, call runInPlace() and skip the copy.

/** Computes the values of a fixed list of nodes; build once, run many times. */
export class Evaluator {
  readonly evalNodes: readonly Node[];
  /** Every node the outputs need, inputs first. */
  readonly topoOrder: readonly Node[];
  /** The variables the outputs depend on. */
  readonly placeholders: readonly Node[];
  private readonly slotOf: Map<Node, number>;
  private readonly placeholderSlots: Int32Array;
  /** Placeholders with a declared shape or dtype, by slot: each feed is checked against it. */
  private readonly declaredFeeds: [number, Node][];
  /** Input slots of step s: inputSlots[inputStart[s] .. inputStart[s + 1]). */
  private readonly inputStart: Int32Array;
  private readonly inputSlots: Int32Array;
  /** Slots whose last use is step s (freed after it): releaseSlots[releaseStart[s] ..). */
  private readonly releaseStart: Int32Array;
  private readonly releaseSlots: Int32Array;
  private readonly outputSlots: Int32Array;
  /** Slot values during a run; every slot is empty again when run() returns or throws. */
  private readonly values: (Tensor | undefined)[];
  /** Per slot during a run: the slot whose value first held this value's data. */
  private readonly rootOf: Int32Array;
  /** Per root slot during a run: how many slots holding its data are still alive. */
  private readonly aliveOn: Int32Array;
  /** Per root slot during a run: its data when the run computed it (and may pool it), else unset. */
  private readonly ownedData: (TypedArray | undefined)[];
  /** Data of outputs this evaluator computed and has not had back through recycle(). */
  private readonly ownedOutputs = new WeakSet<TypedArray>();
  /** True inside run(): its slots are in use, so a nested run() is refused. */
  private running = false;

  /** Plans the run of `evalNodes`. Example: `new Evaluator([y]).run(new Map([[x, tensor(2)]]))`. */
  constructor(evalNodes: readonly Node[]) {
    checkNodeList("new Evaluator(nodes)", "nodes", evalNodes, "new Evaluator([y, dx])");
    this.evalNodes = [...evalNodes];
    const order = topoSort(evalNodes);
    this.topoOrder = order;
    const n = order.length;
    this.slotOf = new Map();
    order.forEach((node, i) => this.slotOf.set(node, i));
    this.placeholders = order.filter(isPlaceholder);
    this.placeholderSlots = Int32Array.from(this.placeholders, (p) => this.slotOf.get(p)!);
    this.outputSlots = Int32Array.from(evalNodes, (node) => this.slotOf.get(node)!);
    this.declaredFeeds = this.placeholders
      .filter((p) => p.shape !== null || p.dtype !== null)
      .map((p) => [this.slotOf.get(p)!, p]);

    this.inputStart = new Int32Array(n + 1);
    for (let s = 0; s < n; s++)
      this.inputStart[s + 1] = this.inputStart[s] + order[s].inputs.length;
    this.inputSlots = new Int32Array(this.inputStart[n]);
    const lastUse = new Int32Array(n).fill(-1);
    for (let s = 0; s < n; s++) {
      order[s].inputs.forEach((input, k) => {
        const slot = this.slotOf.get(input)!;
        this.inputSlots[this.inputStart[s] + k] = slot;
        lastUse[slot] = s;
      });
    }
    for (const s of this.outputSlots) lastUse[s] = -1; // outputs live until the end
    this.releaseStart = new Int32Array(n + 1);
    for (const step of lastUse) if (step >= 0) this.releaseStart[step + 1]++;
    for (let s = 0; s < n; s++) this.releaseStart[s + 1] += this.releaseStart[s];
    this.releaseSlots = new Int32Array(this.releaseStart[n]);
    const filled = this.releaseStart.slice(0, n);
    lastUse.forEach((step, slot) => {
      if (step >= 0) this.releaseSlots[filled[step]++] = slot;
    });
    this.values = new Array<Tensor | undefined>(n).fill(undefined);
    this.rootOf = new Int32Array(n);
    this.aliveOn = new Int32Array(n);
    this.ownedData = new Array<TypedArray | undefined>(n).fill(undefined);
  }

  /**
   * Values of evalNodes, in order, given values for the variables: a Map from variables (or any
   * node) to tensors, or a plain object keyed by variable name (`{ x: tensor([1, 2]) }`, as the
   * Python exercise's `input_values`). Feeds are never modified. Intermediates' buffers go back
   * to the pool after their last use; outputs stay the caller's (no later run writes them) until
   * given back with {@link recycle}.
   */
  run(feeds: ReadonlyMap<Node, Tensor> | Readonly<Record<string, Tensor>>): Tensor[] {
    return this.runChecked(feeds, true);
  }

  /**
   * run() without copying outputs out of the backend's memory: they stay there until given back
   * with {@link recycle} (or collected). For a loop that recycles every result, as a training
   * shard does. Example: `const out = ev.runInPlace(feeds); use(out); ev.recycle(out)`.
   */
  runInPlace(feeds: ReadonlyMap<Node, Tensor> | Readonly<Record<string, Tensor>>): Tensor[] {
    return this.runChecked(feeds, false);
  }

  /** run() and runInPlace(): one run at a time, every slot empty again afterwards. */
  private runChecked(
    feeds: ReadonlyMap<Node, Tensor> | Readonly<Record<string, Tensor>>,
    copyOut: boolean,
  ): Tensor[] {
    if (this.running) {
      throw new Error(
        "Evaluator.run: this evaluator is already running (called again from an op's compute?); use another Evaluator there",
      );
    }
    this.running = true;
    try {
      this.placeFeeds(feedMap("Evaluator.run", this.placeholders, feeds));
      return placeInBackend(() => this.compute(copyOut));
    } catch (error) {
      // Values of a failed run are left to the garbage collector, not pooled.
      this.values.fill(undefined);
      this.ownedData.fill(undefined);
      throw error;
    } finally {
      this.running = false;
    }
  }

  /**
   * Gives the buffers of outputs of this evaluator's runs back to the pool, once the caller is
   * done with them (they must not be read again). Feeds returned as outputs, outputs already
   * recycled, and tensors this evaluator did not compute are skipped, so passing a run's whole
   * result is always safe. Example: `const [loss, g] = ev.run(feeds); use(g); ev.recycle([loss, g])`.
   */
  recycle(outputs: readonly Tensor[]): void {
    for (let i = 0; i < outputs.length; i++) {
      const data = outputs[i].data;
      if (this.ownedOutputs.delete(data)) releaseArray(data);
    }
  }

  /** Puts each feed the outputs need into its slot; rejects missing and non-Tensor feeds. */
  private placeFeeds(feeds: ReadonlyMap<Node, Tensor>): void {
    const values = this.values;
    let notTensor: Node | undefined;
    // Any node may be fed (its value then replaces its computation), not only a variable.
    for (const [node, value] of feeds) {
      const slot = this.slotOf.get(node);
      if (slot === undefined || value === undefined) continue;
      if (!(value instanceof Tensor)) notTensor ??= node;
      else if (!isPlaceholder(node)) checkFeed(node, value);
      values[slot] = value;
    }
    const missing: Node[] = [];
    for (let i = 0; i < this.placeholderSlots.length; i++) {
      if (values[this.placeholderSlots[i]] === undefined) missing.push(this.placeholders[i]);
    }
    if (missing.length > 0) {
      const names = missing.map((p) => `"${p.name}"`).join(", ");
      throw new Error(
        `Evaluator.run: missing feed for variable${missing.length > 1 ? "s" : ""} ${names}`,
      );
    }
    if (notTensor !== undefined) {
      throw new TypeError(`Evaluator.run: the feed for "${notTensor.name}" is not a Tensor`);
    }
    for (const [slot, node] of this.declaredFeeds) checkFeed(node, values[slot]!);
  }

  /** The topological sweep over slots already holding the feeds. */
  private compute(copyOut: boolean): Tensor[] {
    const { values, topoOrder, inputStart, inputSlots, releaseStart, releaseSlots } = this;
    const { rootOf, aliveOn, ownedData } = this;
    // With the pool off nothing is released, so the ownership bookkeeping is skipped.
    const pooling = poolingEnabled();
    const n = topoOrder.length;
    for (let step = 0; step < n; step++) {
      let root = step;
      // A slot is written only at its own step, so a value already there is a feed.
      if (values[step] === undefined) {
        const start = inputStart[step];
        const count = inputStart[step + 1] - start;
        const inputs = new Array<Tensor>(count);
        for (let k = 0; k < count; k++) inputs[k] = values[inputSlots[start + k]]!;
        const value = computeNode(topoOrder[step], inputs);
        values[step] = value;
        if (pooling) {
          const data = value.data;
          for (let k = 0; k < count; k++) {
            if (inputs[k].data === data) {
              root = rootOf[inputSlots[start + k]];
              break;
            }
          }
          if (root === step) ownedData[step] = data;
        }
      }
      rootOf[step] = root;
      if (root === step) aliveOn[step] = 1;
      else aliveOn[root]++;
      for (let r = releaseStart[step]; r < releaseStart[step + 1]; r++) {
        const slot = releaseSlots[r];
        values[slot] = undefined;
        const dying = rootOf[slot];
        if (--aliveOn[dying] === 0) {
          const data = ownedData[dying];
          if (data !== undefined) {
            ownedData[dying] = undefined;
            releaseArray(data);
          }
        }
      }
    }
    const { outputSlots } = this;
    const out = new Array<Tensor>(outputSlots.length);
    /** Arena arrays copied out this run (outputs may alias one another): original -> copy. */
    let copies: Map<TypedArray, TypedArray> | undefined;
    for (let i = 0; i < out.length; i++) {
      const slot = outputSlots[i];
      let value = values[slot]!;
      const root = rootOf[slot];
      const data = ownedData[root];
      if (data !== undefined && copyOut && inBackendMemory(data)) {
        copies ??= new Map();
        copies.set(data, data.slice());
        ownedData[root] = undefined;
        releaseArray(data);
      } else if (data !== undefined) {
        this.ownedOutputs.add(data);
        ownedData[root] = undefined;
      }
      const copy = copies?.get(value.data);
      if (copy !== undefined) {
        // The same output listed twice comes back as one tensor, as without the copy.
        const earlier = out.findIndex((_, k) => k < i && values[outputSlots[k]] === value);
        value = earlier >= 0 ? out[earlier] : new Tensor(copy, value.shape);
      }
      out[i] = value;
    }
    for (let i = 0; i < out.length; i++) values[outputSlots[i]] = undefined;
    return out;
  }
}

/**
 * Feeds as a Map, the one rule of every call that takes them (Evaluator.run, checkGradients,
 * traceHtml): a Map from nodes to tensors, or a plain object keyed by the names of `placeholders`
 * (an unknown or ambiguous name throws, naming the call). Example: `feedMap("run", [x], { x: t })`.
 */
export function feedMap(
  call: string,
  placeholders: readonly Node[],
  feeds: unknown,
): ReadonlyMap<Node, Tensor> {
  if (feeds instanceof Map) return feeds as ReadonlyMap<Node, Tensor>;
  if (typeof feeds !== "object" || feeds === null || Array.isArray(feeds)) {
    throw new TypeError(
      `${call}: feeds must be a Map from variables to tensors or an object keyed by variable name, got ${typeName(feeds)}`,
    );
  }
  const byName = new Map<string, Node[]>();
  for (const p of placeholders) byName.set(p.name, [...(byName.get(p.name) ?? []), p]);
  const out = new Map<Node, Tensor>();
  for (const [name, value] of Object.entries(feeds as Record<string, Tensor>)) {
    const nodes = byName.get(name);
    if (nodes === undefined) {
      const known = [...byName.keys()].map((n) => `"${n}"`).join(", ");
      throw new Error(`${call}: no variable named "${name}" in this graph (it has ${known})`);
    }
    if (nodes.length > 1) {
      throw new Error(
        `${call}: ${nodes.length} variables are named "${name}": feed them with a Map`,
      );
    }
    out.set(nodes[0], value);
  }
  return out;
}

/**
 * node.op.compute with errors prefixed by the op and its inputs, as build-time type errors are:
 * `matmul(X, W): inner dimensions differ: [2,3] @ [4,5]` (the op's message gives the shapes).
 */
export function computeNode(node: Node, inputs: Tensor[]): Tensor {
  let value: unknown;
  try {
    value = node.op.compute(node, inputs);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`${node.op.name}(${node.inputs.map(label).join(", ")}): ${message}`, {
      cause: error,
    });
  }
  // The type rule promised this node's known shape and dtype: a compute that breaks the promise
  // (a custom op's, typically) is named here, not three nodes later.
  if (!(value instanceof Tensor) || !fitsType(value, node)) {
    const got =
      value instanceof Tensor ? `${value.dtype} [${value.shape.join(",")}]` : typeName(value);
    throw new Error(
      `${node.op.name}(${node.inputs.map(label).join(", ")}): compute returned ${got}, its type rule says ${node.dtype ?? "any dtype"} ${fmtType(node.shape)}`,
    );
  }
  return value;
}

/** Whether `value` has `node`'s known dtype and fits its known shape. */
function fitsType(value: Tensor, node: Node): boolean {
  const { shape, dtype } = node.type;
  return (dtype === null || dtype === value.dtype) && shapeFits(value.shape, shape);
}
