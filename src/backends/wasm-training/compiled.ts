/**
 * A training plan compiled for one shard size on the wasm backend: every node's output gets a
 * buffer in the kernels' memory, planned once, and a step is a fixed list of calls: the WASM
 * kernels called with those addresses (matmul, the bias add, relu and its mask, products, the
 * bias gradient's column sums, convolutions and max-pooling with their adjoints: image.ts),
 * the loss and its gradient in one fused pass, no-op reshapes and
 * sums as aliases, and any other op through its own compute, copied into its buffer. No
 * Evaluator, no Tensor or array allocated per step. Every call is the one the wasm backend makes
 * for that node (the same kernel, or arithmetic that is bitwise the same), so a compiled step
 * gives the interpreted step's bits; the tests check that.
 */
import type { Node } from "../../graph/node.js";
import { isPlaceholder } from "../../graph/node.js";
import { topoSort } from "../../graph/topo.js";
import { concreteTypes } from "../../graph/concrete.js";
import { computeNode } from "../../runtime/evaluator.js";
import { productDims, sameShape, sizeOf } from "../../tensor/shape.js";
import { releaseArray, Tensor, type TypedArray } from "../../tensor/tensor.js";
import {
  BINARY_CODES,
  channelBlocks,
  isTrailingBlock,
  leadingRows,
  productStack,
  UNARY_CODES,
  type WasmBackend,
} from "../wasm.js";
import { type KernelExports } from "../wasm-module.js";
import type { BuiltinOpName } from "../../graph/op-names.js";
import type { ShardProgram, TrainingKernels } from "../training.js";
import {
  hold,
  held,
  planned,
  productCall,
  productOut,
  type Like,
  type ProductDims,
  type Step,
} from "./held.js";
import { imageStep, type ImageContext } from "./image.js";
import { wasmRowGather } from "./gather.js";

/** One shard's compiled program: `run()` returns the plan's outputs (valid until the next run). */
export class CompiledShard implements ShardProgram {
  private constructor(
    private readonly steps: (() => void)[],
    /** What each step runs: its op, "+grad" when fused, "(interpreted)" through its compute. */
    readonly labels: readonly string[],
    private readonly outputs: Tensor[],
    // NOTE: held so that they live as long as the program: the arena frees the block of an
    // array that is garbage collected, and the steps keep only addresses and views.
    readonly buffers: readonly TypedArray[],
    private readonly clock: { step: number },
  ) {}

  /** Says that the constants (the parameters) changed: weights packed once per step repack. */
  newStep(): void {
    this.clock.step++;
  }

  /**
   * Compiles `outputs` over `feeds` (placeholder -> tensor; the tensors it is later run on, bound
   * by identity: refill their data between runs) on `wasm`; undefined when a feed or an output
   * is not in its memory (the caller then runs the Evaluator).
   */
  static compile(
    outputs: readonly Node[],
    feeds: ReadonlyMap<Node, Tensor>,
    wasm: WasmBackend,
    constants: ReadonlySet<Node> = new Set(),
  ): CompiledShard | undefined {
    const arena = wasm.arena;
    if (arena === undefined) return undefined;
    held.length = 0;
    const clock = { step: 0 };
    const order = topoSort(outputs);
    // Every node's shape and dtype at this shard size: from the ops' type rules where they give
    // them all (nothing runs: the interpreted pass it replaces took 2.8 of the first step's 4
    // ms), else from one interpreted pass.
    const probe = typesAt(order, feeds) ?? interpretedPass(order, feeds);
    if (probe === undefined) return undefined;
    const values = new Map<Node, Tensor>();
    const steps: (() => void)[] = [];
    const labels: string[] = [];
    const k = wasm.kernels;
    const at = (data: TypedArray) => arena.addressOf(data);
    const done = new Set<Node>(); // filled by a fused step of an earlier node
    // Steps an earlier node's case builds for a later node (conv2d's filter gradient).
    const deferred = new Map<Node, (inputs: Tensor[]) => Step | undefined>();
    const image: ImageContext = { k, at, order, values, probe, deferred, swapped: new Map() };
    for (const node of order) {
      const fed = feeds.get(node);
      if (fed !== undefined) {
        if (at(fed.data) < 0) return undefined;
        values.set(node, fed);
        continue;
      }
      if (done.has(node)) continue;
      const like = probe.get(node)!;
      // A node of no inputs (a constant): its value never changes, so it is computed once, here.
      if (node.inputs.length === 0) {
        const { out } = planned(like);
        const value = like instanceof Tensor ? like : computeNode(node, []);
        out.data.set(value.data);
        if (value !== like) releaseArray(value.data);
        values.set(node, out);
        continue;
      }
      const inputs = node.inputs.map((i) => values.get(i)!);
      const name = node.op.name;
      // A custom op is in no table: it runs through its compute.
      const how = (CASES as Partial<Record<string, Case>>)[name] ?? "compute";
      // sumLike / reshapeLike to an equal shape return their input: an alias.
      if ((how === "alias" || how === "aliasOrSum") && sameShape(inputs[0].shape, like.shape)) {
        values.set(node, inputs[0]);
        continue;
      }
      // A reshape keeps the row-major order: a view of its input's buffer, nothing to run.
      if (how === "alias" && inputs[0].size === like.size && inputs[0].dtype === like.dtype) {
        values.set(node, new Tensor(inputs[0].data, like.shape));
        continue;
      }
      const later = deferred.get(node);
      const fast =
        later !== undefined
          ? later(inputs)
          : how === "matmul"
            ? matmulStep(
                k,
                node,
                inputs,
                like,
                at,
                constants.has(node.inputs[1]) ? clock : undefined,
              )
            : how === "crossEntropy"
              ? crossEntropyStep(k, at, node, inputs, like, order, values, done, probe)
              : how === "image"
                ? imageStep(image, node, inputs, like)
                : how === "elementwise" || how === "aliasOrSum"
                  ? elementwiseStep(k, wasm.minElements, node, inputs, like, at)
                  : undefined;
      if (fast !== undefined) {
        steps.push(fast.run);
        labels.push(fast.label ?? name);
        values.set(node, fast.out);
        continue;
      }
      // Any other node: its own compute, copied into a buffer of its own.
      const out = new Tensor(hold(like.size, like.dtype), like.shape);
      labels.push(`${name} (interpreted)`);
      steps.push(() => {
        const result = computeNode(node, inputs);
        out.data.set(result.data);
        if (!inputs.some((i) => i.data === result.data)) releaseArray(result.data);
      });
      values.set(node, out);
    }
    // The probe's own arrays back to the pool (never a feed's, nor one twice).
    const kept = new Set([...feeds.values()].map((t) => t.data));
    for (const t of probe.values()) {
      if (!(t instanceof Tensor) || kept.has(t.data)) continue;
      kept.add(t.data);
      releaseArray(t.data);
    }
    return new CompiledShard(
      steps,
      labels,
      outputs.map((o) => values.get(o)!),
      held.splice(0),
      clock,
    );
  }

  /** {@link run}, adding each step's seconds to `seconds[label]` (bench:profile). */
  runTimed(seconds: Record<string, number>): Tensor[] {
    for (let i = 0; i < this.steps.length; i++) {
      const t0 = performance.now();
      this.steps[i]();
      const label = this.labels[i];
      seconds[label] = (seconds[label] ?? 0) + (performance.now() - t0) / 1000;
    }
    return this.outputs;
  }

  /** Gives its buffers back to the pool, where the next program of these sizes takes them. */
  dispose(): void {
    for (const data of this.buffers) releaseArray(data);
  }

  /** Runs every step in order; the outputs' buffers are overwritten by the next run. */
  run(): Tensor[] {
    const steps = this.steps;
    for (let i = 0; i < steps.length; i++) steps[i]();
    return this.outputs;
  }
}

/**
 * How a compiled step runs each built-in op: matmul and the fused cross-entropy by WASM kernels
 * of their own; the image ops by address (image.ts: conv2d and its filter gradient around one
 * computation of x's patches); the element-wise cases (add and mul, relu and step, per row or
 * per channel, and the bias gradients' sums) by the backend's kernels where the shapes fit;
 * reshapes as aliases; anything else, and
 * any case whose shapes do not fit, through the op's compute. Every op has a row: a new op
 * without one does not compile.
 */
type Case =
  "matmul" | "crossEntropy" | "image" | "elementwise" | "alias" | "aliasOrSum" | "compute";

const CASES: Record<BuiltinOpName, Case> = {
  matmul: "matmul",
  softmaxCrossEntropy: "crossEntropy",
  // Computed by its loss's fused pass when the plan has both (crossEntropyStep).
  softmaxCrossEntropyGrad: "compute",
  add: "elementwise",
  mul: "elementwise",
  relu: "elementwise",
  step: "elementwise",
  sumLike: "aliasOrSum",
  reshapeLike: "alias",
  sub: "compute",
  div: "compute",
  neg: "compute",
  addByConst: "compute",
  mulByConst: "compute",
  divByConst: "compute",
  pow: "compute",
  exp: "compute",
  log: "compute",
  sqrt: "compute",
  sigmoid: "compute",
  tanh: "compute",
  abs: "compute",
  minimum: "compute",
  maximum: "compute",
  greater: "compute",
  where: "compute",
  zerosLike: "compute",
  onesLike: "compute",
  sum: "compute",
  mean: "compute",
  max: "compute",
  logsumexp: "compute",
  unreduce: "compute",
  maxMask: "compute",
  argmax: "compute",
  logSoftmax: "compute",
  softmax: "compute",
  layerNorm: "compute",
  layerNormGrad: "compute",
  // With its filter gradient in the plan: x's patches computed once for both (image.ts).
  conv2d: "image",
  conv2dInputGrad: "image",
  conv2dFilterGrad: "image",
  maxPool2d: "image",
  maxPoolSelect: "image",
  maxPoolGrad: "image",
  broadcastTo: "compute",
  reshape: "alias",
  expandDims: "alias",
  transpose: "compute",
  constant: "compute",
  stopGradient: "compute",
  slice: "compute",
  unslice: "compute",
  concat: "compute",
  concatPart: "compute",
  placeholder: "compute", // fed, never computed
};

/**
 * Every node's type at the feeds' shapes by the ops' type rules (graph/concrete.ts; the feeds
 * themselves for the placeholders); undefined where a rule leaves a dim or dtype unknown or
 * rejects the inputs (the interpreted pass then runs, and reports any error as the Evaluator does).
 */
function typesAt(
  order: readonly Node[],
  feeds: ReadonlyMap<Node, Tensor>,
): Map<Node, Like> | undefined {
  const types = concreteTypes(order, (node) => feeds.get(node));
  if (types === undefined) return undefined;
  const likes = new Map<Node, Like>();
  for (const [node, t] of types) {
    const fed = feeds.get(node);
    likes.set(node, fed ?? { ...t, size: sizeOf(t.shape), rank: t.shape.length });
  }
  return likes;
}

/** Every node's value at the feeds, computed once; undefined when a placeholder is not fed. */
function interpretedPass(
  order: readonly Node[],
  feeds: ReadonlyMap<Node, Tensor>,
): Map<Node, Tensor> | undefined {
  const probe = new Map<Node, Tensor>();
  for (const node of order) {
    const fed = feeds.get(node);
    if (fed !== undefined) probe.set(node, fed);
    else if (isPlaceholder(node)) return undefined;
    else
      probe.set(
        node,
        computeNode(
          node,
          node.inputs.map((i) => probe.get(i)!),
        ),
      );
  }
  return probe;
}

/** matmul as the wasm backend runs it: the kernel into C's padded tile grid, then compacted. */
function matmulStep(
  k: KernelExports,
  node: Node,
  [a, b]: Tensor[],
  like: Like,
  at: (data: TypedArray) => number,
  clock?: { step: number },
): Step | undefined {
  if (a.dtype !== b.dtype || like.size === 0) return undefined;
  const transA = node.attrs.transA === true;
  const transB = node.attrs.transB === true;
  const [m, kk, n] = productDims(a.shape, b.shape, transA, transB);
  let dims: ProductDims = { m, n, k: kk, transA, transB };
  if (a.rank > 2 && b.rank === 2 && !transA) {
    // A stack times one matrix: one product of the stack's rows, as the backend reshapes it.
    dims = { ...dims, m: a.size / kk };
  } else if (a.rank > 2 || b.rank > 2) {
    // Stacks that pair up, or one matrix broadcast: the batched kernel, as the backend calls it.
    const stack = productStack(a.shape, b.shape);
    if (stack === undefined) return undefined;
    dims = { ...dims, count: stack.count, stackA: stack.stackA, stackB: stack.stackB };
  }
  const { data, out } = productOut(k, dims, like.shape, like.dtype);
  const run = productCall(k, at, like.dtype, dims, [at(a.data), at(b.data), at(data)], clock);
  return run && { out, run };
}

/**
 * The bias add (x + row), relu and its step mask, a same-shape product, and the bias gradient
 * (sumLike of (n, k) to (k,)) as the wasm backend runs them: the same kernels; below its
 * element threshold it runs the js loops, which give the same bits for add, mul, relu and step
 * (one IEEE operation per element) but not for a column sum, which then stays interpreted.
 */
function elementwiseStep(
  k: KernelExports,
  minElements: number,
  node: Node,
  inputs: Tensor[],
  like: Like,
  at: (data: TypedArray) => number,
): Step | undefined {
  if (inputs.some((t) => t.dtype !== like.dtype || at(t.data) < 0)) return undefined;
  const call = elementwiseCall(k, minElements, node, inputs, like, at);
  if (call === undefined) return undefined;
  const { out } = planned(like);
  const po = at(out.data);
  return po < 0 ? undefined : { out, run: call(po) };
}

/** The kernel call of {@link elementwiseStep} given its output's address, or undefined. */
function elementwiseCall(
  k: KernelExports,
  minElements: number,
  node: Node,
  [x, y]: Tensor[],
  like: Like,
  at: (data: TypedArray) => number,
): ((po: number) => () => void) | undefined {
  const name = node.op.name;
  const f32 = like.dtype === "float32";
  const [px, py] = [at(x.data), y ? at(y.data) : 0];
  const size = like.size;
  const binary = name === "add" || name === "mul" ? BINARY_CODES[name] : null;
  if (binary !== null && sameShape(x.shape, like.shape)) {
    const op = binary;
    if (sameShape(y.shape, like.shape)) {
      const kernel = f32 ? k.binaryF32 : k.binaryF64;
      return (po) => () => kernel(op, px, py, po, size);
    }
    // A row of x's trailing dims (a bias, a position per token): one IEEE operation per element.
    if (isTrailingBlock(y.shape, like.shape) && size > y.size) {
      const [kernel, cols] = [f32 ? k.rowBinaryF32 : k.rowBinaryF64, y.size];
      return (po) => () => kernel(op, px, py, po, size / cols, cols);
    }
    // A per-channel value over images (a convolution's bias [F, 1, 1]): one IEEE operation per
    // element, the js loops' bits too, so at any size.
    const blocks = y.rank !== 1 ? channelBlocks(x.shape, y.shape) : undefined;
    if (blocks) {
      const [outer, channels, inner] = blocks;
      const kernel = f32 ? k.channelBinaryF32 : k.channelBinaryF64;
      return (po) => () => kernel(op, px, py, po, outer, channels, inner);
    }
  }
  const unary = name === "relu" || name === "step" ? UNARY_CODES[name] : null;
  if (unary !== null && y === undefined) {
    const op = unary;
    const kernel = f32 ? k.unaryF32 : k.unaryF64;
    return (po) => () => kernel(op, px, po, size);
  }
  const axis = node.attrs.axis;
  const plain = axis === undefined || axis === 0;
  // A sum over leading rows (a bias's gradient, a position's) as the backend's sumTo runs it.
  const rows = name === "sumLike" && plain ? leadingRows(x.shape, like.shape) : 0;
  if (rows > 0 && x.size >= minElements) {
    const kernel = f32 ? k.columnSumF32 : k.columnSumF64;
    return (po) => () => kernel(px, po, rows, x.size / rows);
  }
  // The bias gradient of a convolution ([N, F, H, W] to [F, 1, 1]) as the backend's sumTo runs it.
  const blocks = name === "sumLike" && plain ? channelBlocks(x.shape, like.shape) : undefined;
  if (blocks && x.size >= minElements && leadingRows(x.shape, like.shape) === 0) {
    const [outer, channels, inner] = blocks;
    const kernel = f32 ? k.channelSumF32 : k.channelSumF64;
    return (po) => () => kernel(px, po, outer, channels, inner);
  }
  return undefined;
}

/**
 * softmaxCrossEntropy(z, t) over z's last axis, and its gradient node on the same inputs when
 * the plan has one, in one WASM pass (asm/kernels.ts crossEntropyOf): each row's max, sum of
 * exponentials and log-sum-exp once, then the loss and the gradient; the wasm backend's own
 * kernel for these ops is the same call, so the bits are the Evaluator's.
 */
function crossEntropyStep(
  k: KernelExports,
  at: (data: TypedArray) => number,
  node: Node,
  [z, t]: Tensor[],
  like: Like,
  order: readonly Node[],
  values: Map<Node, Tensor>,
  done: Set<Node>,
  probe: ReadonlyMap<Node, Like>,
): Step | undefined {
  const axis = node.attrs.axis ?? -1;
  if (z.rank !== 2 || (axis !== -1 && axis !== 1) || !sameShape(z.shape, t.shape)) return undefined;
  if (z.dtype !== t.dtype || at(z.data) < 0 || at(t.data) < 0) return undefined;
  // Its gradient node, where the plan has one not yet compiled on its own.
  const grad = order.find(
    (c) =>
      !values.has(c) &&
      c.op.name === "softmaxCrossEntropyGrad" &&
      c.inputs[0] === node.inputs[0] &&
      c.inputs[1] === node.inputs[1] &&
      (c.attrs.axis ?? -1) === axis &&
      c.attrs.reduction === node.attrs.reduction,
  );
  const loss = planned(like).out;
  const g = grad ? planned(probe.get(grad)!).out : undefined;
  if (grad && g) {
    values.set(grad, g);
    done.add(grad);
  }
  const [rows, n] = z.shape;
  const width = z.data.BYTES_PER_ELEMENT;
  const [px, pt, pl, pg] = [at(z.data), at(t.data), at(loss.data), g ? at(g.data) : 0];
  // reduction "mean": each stored value divided by the row count, as the ops' compute divides.
  const divisor = node.attrs.reduction === "mean" ? rows : 1;
  const run = () => k.crossEntropyOf(width, px, pt, pl, pg, rows, n, divisor);
  return { out: loss, run, label: grad ? `${node.op.name}+grad` : undefined };
}

/** The wasm backend's training kernels: shards compiled over `wasm`'s memory. */
export function wasmTrainingKernels(wasm: WasmBackend): TrainingKernels {
  return {
    compileShard: (outputs, feeds, constants) =>
      CompiledShard.compile(outputs, feeds, wasm, constants),
    rowGather: (column, rowSize) => wasmRowGather(wasm, column, rowSize),
  };
}
