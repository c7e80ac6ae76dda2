/**
 * Micro-shards of a training batch over shared memory: the one decomposition both the in-process
 * and the worker paths use, so their results are bitwise identical for any thread count.
 */
import "../../graph/ops/index.js"; // registers every op, so any plan can be rebuilt here
import type { Node } from "../../graph/node.js";
import { applyUpdate, stateCount, type OptimizerConfig } from "./optimizer-kernels.js";
import { sumSlots } from "./slots.js";
import { sizeOf } from "../../tensor/shape.js";
import {
  allocateArray,
  placeInBackend,
  Tensor,
  type DType,
  type TypedArray,
} from "../../tensor/tensor.js";
import { Evaluator } from "../../runtime/evaluator.js";
import { rebuildGraph, type Plan } from "../../runtime/plan.js";
import type { WasmBackend, WasmMemory } from "../../backends/wasm.js";
import { backend } from "../../tensor/active.js";
import { CompiledShard } from "./compiled.js";
import { allocateInMemory, updateKernels, type UpdateRunner } from "./update-wasm.js";

/**
 * The training graph as data: placeholders [...data, ...params] (`dataCount` per-example inputs,
 * default 2: X and Y), outputs [loss, ...grads] of the rows a shard is fed.
 */
export interface TrainPlan {
  plan: Plan;
  paramShapes: number[][];
  /** How many placeholders are per-example data, fed one gathered shard each (default 2). */
  dataCount?: number;
  /**
   * Whether the plan's loss (and so its gradients) is the sum over the shard's rows (default) or
   * their mean; means are scaled by the shard's rows, so slots always hold sums.
   */
  shardLoss?: "sum" | "mean";
  /** What a step minimises: the batch's mean (slot sums divided by its rows; default) or sum. */
  objective?: "mean" | "sum";
  /** Run shards as compiled programs on the wasm backend (default true; false: the Evaluator). */
  compiled?: boolean;
}

/** One per-example input in shared memory: n rows of `rowShape`, row-major. */
export interface SharedColumn {
  data: TypedArray;
  rowShape: number[];
  /** Elements per row. */
  rowSize: number;
}

/** Everything a shard needs, as SharedArrayBuffer-backed arrays (cloneable to workers). */
export interface SharedState {
  dtype: DType;
  /** The per-example inputs, in the plan's placeholder order (the built-in models: X, one-hot Y). */
  columns: SharedColumn[];
  /** Two parameter buffers (current and next) of P elements each; control[0] says which is current. */
  params: [TypedArray, TypedArray];
  /** Optimizer state, two buffers per state vector (current/next, same index as params). */
  state: [TypedArray, TypedArray][];
  /** shardCount gradient slots of P elements. */
  grads: TypedArray;
  /** Summed loss per shard. */
  losses: Float64Array;
  /** Row indices of the current batch (capacity: the largest batch). */
  batch: Int32Array;
  /**
   * Control words: [0] current parameter buffer, [1] batch size, [2] optimizer step t,
   * [3..] free for the step protocol.
   */
  control: Int32Array;
  shardCount: number;
  paramCount: number;
  /** Random image shifts applied to column 0 while a shard gathers its rows (augmentation). */
  augment?: ShiftAugment;
  /**
   * The shared WebAssembly memory that params, state and grads are views of, where the engine has
   * one: every thread then reduces and updates there in WASM (update-wasm.ts), else in JS.
   */
  memory?: WasmMemory;
}

/** Shift each training image by up to `maxShift` pixels, chosen from (seed, step, row) alone. */
export interface ShiftAugment {
  width: number;
  height: number;
  maxShift: number;
  seed: number;
}

/** A 32-bit hash of three integers (murmur3's finaliser over a mix): cheap and well spread. */
function hash3(a: number, b: number, c: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x632be5ab, 0xc2b2ae35) ^ c;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The (dx, dy) shift of `row` at optimizer step `step`: the same in every thread. */
export function shiftFor(augment: ShiftAugment, step: number, row: number): [number, number] {
  const span = 2 * augment.maxShift + 1;
  const h = hash3(augment.seed, step, row);
  return [(h % span) - augment.maxShift, (Math.floor(h / span) % span) - augment.maxShift];
}

/**
 * Writes the image at `data[from..]` shifted by (dx, dy) into `out[to..]`, zeros where the shift
 * uncovers pixels: per output row, the uncovered ends zeroed and the covered span copied.
 */
export function shiftImage(
  data: TypedArray,
  from: number,
  out: TypedArray,
  to: number,
  size: { width: number; height: number },
  dx: number,
  dy: number,
): void {
  const { width, height } = size;
  const x0 = Math.max(0, dx);
  const x1 = Math.min(width, width + dx);
  for (let y = 0; y < height; y++) {
    const o = to + y * width;
    const sy = y - dy;
    if (sy < 0 || sy >= height || x0 >= x1) {
      out.fill(0, o, o + width);
      continue;
    }
    const s = from + sy * width - dx;
    for (let x = 0; x < x0; x++) out[o + x] = 0;
    for (let x = x0; x < x1; x++) out[o + x] = data[s + x];
    for (let x = x1; x < width; x++) out[o + x] = 0;
  }
}

/** Control word indices. */
export const CONTROL = { current: 0, batchSize: 1, step: 2, protocol: 3 } as const;
const CONTROL_WORDS = 16;

/** Allocates shared state for a dataset, parameter shapes and optimizer. */
export function allocateShared(options: {
  dtype: DType;
  /** Per-example inputs: their data (n rows) and the shape of one row. */
  columns: { data: TypedArray; rowShape: readonly number[] }[];
  paramShapes: readonly number[][];
  optimizer: OptimizerConfig;
  shardCount: number;
  maxBatch: number;
  augment?: ShiftAugment;
  /** Place params, state and grads in a shared WebAssembly memory where possible (default true). */
  wasmUpdate?: boolean;
}): SharedState {
  const { dtype, shardCount } = options;
  const paramCount = options.paramShapes.reduce((n, s) => n + sizeOf(s), 0);
  // Data already in shared memory, of the run's dtype (the official MNIST's loader makes it so),
  // is read in place: the workers only read the columns. Anything else is copied once.
  const copyShared = (src: TypedArray): TypedArray => {
    const sameType = src instanceof Float32Array === (dtype === "float32");
    if (sameType && src.buffer instanceof SharedArrayBuffer) return src;
    const out = allocateArray(src.length, dtype, true, false);
    out.set(src);
    return out;
  };
  const states = stateCount(options.optimizer.kind);
  const sizes = [...new Array<number>(2 + 2 * states).fill(paramCount), shardCount * paramCount];
  const placed = options.wasmUpdate === false ? undefined : allocateInMemory(dtype, sizes);
  const arrays = placed?.arrays ?? sizes.map((n) => allocateArray(n, dtype, true));
  const pair = (k: number): [TypedArray, TypedArray] => [arrays[2 * k], arrays[2 * k + 1]];
  return {
    dtype,
    columns: options.columns.map((c) => ({
      data: copyShared(c.data),
      rowShape: [...c.rowShape],
      rowSize: sizeOf(c.rowShape),
    })),
    params: pair(0),
    state: Array.from({ length: states }, (_, k) => pair(k + 1)),
    grads: arrays[2 + 2 * states],
    losses: new Float64Array(new SharedArrayBuffer(8 * shardCount)),
    batch: new Int32Array(new SharedArrayBuffer(4 * Math.max(options.maxBatch, 1))),
    control: new Int32Array(new SharedArrayBuffer(4 * CONTROL_WORDS)),
    shardCount,
    paramCount,
    augment: options.augment,
    memory: placed?.memory,
  };
}

/** Rows [lo, hi) of a batch of `batchSize` that micro-shard `s` of `shardCount` covers. */
export function shardBounds(batchSize: number, shardCount: number, s: number): [number, number] {
  const base = Math.floor(batchSize / shardCount);
  const extra = batchSize % shardCount;
  const lo = s * base + Math.min(s, extra);
  return [lo, lo + base + (s < extra ? 1 : 0)];
}

/** Element range [start, end) of slice `k` of `count` over `length` elements. */
export function sliceBounds(length: number, count: number, k: number): [number, number] {
  return shardBounds(length, count, k);
}

/** Elements reduced and updated per block (64 KiB of float32 scratch: stays in cache). */
const REDUCE_BLOCK = 16384;

/** Runs micro-shards and the reduce-and-update phase over a SharedState; one per thread. */
export class ShardRunner {
  private readonly evaluator: Evaluator;
  private readonly placeholders: ReturnType<typeof rebuildGraph>["placeholders"];
  private readonly offsets: number[];
  /** Scratch of the reduction, grown once and reused every step. */
  private reduced: TypedArray;
  /** Per parameter buffer (current/next), each parameter as a Tensor view: built once. */
  private readonly paramViews: Tensor[][];
  /** Gathered rows per column by shard size (one or two sizes per batch), reused across steps. */
  private readonly gathers = new Map<number, Tensor[]>();
  /** The compiled program per shard size, over that size's gathered rows (null: not compiled). */
  private readonly programs = new Map<number, CompiledShard | null>();
  private readonly compiled: boolean;
  private readonly outputNodes: Node[];
  /** Scale of the plan's outputs into slot sums: the shard's rows for a mean loss, else 1. */
  private readonly meanLoss: boolean;
  private readonly dataCount: number;
  private readonly objective: "mean" | "sum";
  /** The feed map, refilled every shard. */
  private readonly feeds = new Map<Node, Tensor>();
  /**
   * This thread's copy of the current parameters, made by {@link beginStep} and read by every
   * shard of the step: allocated by allocateArray, so on the wasm backend it lies in the kernels'
   * memory and no shard copies the weights in again.
   */
  private readonly staged: Tensor[];
  /** This thread's WASM reduce-and-update over the shared memory, where there is one. */
  private readonly update: UpdateRunner | undefined;

  /** Rebuilds the training graph from its plan. */
  constructor(
    train: TrainPlan,
    private readonly shared: SharedState,
    private readonly optimizer: OptimizerConfig,
  ) {
    const graph = rebuildGraph(train.plan);
    this.placeholders = graph.placeholders;
    this.meanLoss = train.shardLoss === "mean";
    this.dataCount = train.dataCount ?? 2;
    this.objective = train.objective ?? "mean";
    if (shared.columns.length !== this.dataCount) {
      throw new Error(
        `ShardRunner: the plan has ${this.dataCount} data inputs, the shared state ${shared.columns.length} columns`,
      );
    }
    this.evaluator = new Evaluator(graph.outputs);
    this.outputNodes = graph.outputs;
    this.compiled = train.compiled ?? true;
    this.reduced = allocateArray(0, shared.dtype);
    this.offsets = [];
    let offset = 0;
    for (const shape of train.paramShapes) {
      this.offsets.push(offset);
      offset += sizeOf(shape);
    }
    this.update = shared.memory ? updateKernels(shared.memory) : undefined;
    this.staged = train.paramShapes.map(
      (shape) =>
        new Tensor(
          placeInBackend(() => allocateArray(sizeOf(shape), shared.dtype)),
          shape,
        ),
    );
    this.paramViews = shared.params.map((buffer) =>
      train.paramShapes.map(
        (shape, i) =>
          new Tensor(buffer.subarray(this.offsets[i], this.offsets[i] + sizeOf(shape)), shape),
      ),
    );
  }

  /** Copies the current parameters for this step's shards; call before the first shard of a step. */
  beginStep(): void {
    const current = this.paramViews[Atomics.load(this.shared.control, CONTROL.current)];
    for (let i = 0; i < current.length; i++) this.staged[i].data.set(current[i].data);
    for (const program of this.programs.values()) program?.newStep();
  }

  /**
   * Forward and backward pass of micro-shard `s` at the parameters {@link beginStep} staged: its
   * gradient and summed loss into slot `s`.
   */
  runShard(s: number): void {
    const { shared } = this;
    const { paramCount } = shared;
    const batchSize = shared.control[CONTROL.batchSize];
    const [lo, hi] = shardBounds(batchSize, shared.shardCount, s);
    const slot = shared.grads.subarray(s * paramCount, (s + 1) * paramCount);
    const rows = hi - lo;
    if (rows === 0) {
      slot.fill(0);
      shared.losses[s] = 0;
      return;
    }
    const gathered = this.gatherBuffers(rows);
    const augment = shared.augment;
    const step = shared.control[CONTROL.step];
    for (let c = 0; c < shared.columns.length; c++) {
      const into = gathered[c].data;
      const { data, rowSize } = shared.columns[c];
      for (let r = 0; r < rows; r++) {
        const row = shared.batch[lo + r];
        if (augment && c === 0) {
          const [dx, dy] = shiftFor(augment, step, row);
          shiftImage(data, row * rowSize, into, r * rowSize, augment, dx, dy);
        } else {
          into.set(data.subarray(row * rowSize, (row + 1) * rowSize), r * rowSize);
        }
      }
    }
    const { outputs, program } = this.execute(gathered, rows);
    if (outputs[0].size !== 1) {
      throw new Error(`the loss must be one number per shard, got shape [${outputs[0].shape}]`);
    }
    // A mean over the shard's rows becomes their sum, so that slots of any sizes add up.
    const scale = this.meanLoss ? rows : 1;
    shared.losses[s] = outputs[0].data[0] * scale;
    for (let i = 1; i < outputs.length; i++) {
      const offset = this.offsets[i - 1];
      const grad = outputs[i].data;
      if (scale === 1) slot.set(grad, offset);
      else for (let k = 0; k < grad.length; k++) slot[offset + k] = grad[k] * scale;
    }
    // Copied out: the outputs' buffers go back to this thread's pool for the next shard.
    if (!program) this.evaluator.recycle(outputs);
  }

  /**
   * Runs the micro-shards of a full batch once on whatever the gather buffers hold, into this
   * thread's own buffers (nothing shared is written): their programs are compiled and the JIT has
   * been through the step, so a worker that calls this before it joins never keeps a step waiting
   * for its first shard (60-80 ms on the cnn, against 4 ms warm).
   */
  warmUp(): void {
    const { shardCount, batch } = this.shared;
    const sizes = new Set<number>();
    for (let s = 0; s < shardCount; s++) {
      const [lo, hi] = shardBounds(batch.length, shardCount, s);
      if (hi > lo) sizes.add(hi - lo);
    }
    for (const rows of sizes) {
      const { outputs, program } = this.execute(this.gatherBuffers(rows), rows);
      if (!program) this.evaluator.recycle(outputs);
    }
  }

  /** Runs the plan on gathered rows and the staged parameters; the program, where one ran. */
  private execute(
    gathered: readonly Tensor[],
    rows: number,
  ): { outputs: Tensor[]; program: CompiledShard | undefined } {
    const feeds = this.feeds;
    for (let c = 0; c < gathered.length; c++) feeds.set(this.placeholders[c], gathered[c]);
    const params = this.staged;
    const first = this.dataCount;
    for (let i = 0; i < params.length; i++) feeds.set(this.placeholders[first + i], params[i]);
    const program = placeInBackend(() => this.programFor(rows));
    const outputs = program
      ? placeInBackend(() => program.run())
      : this.evaluator.runInPlace(feeds);
    return { outputs, program };
  }

  /** The shard sizes this runner runs as compiled programs (for tests and benches). */
  compiledSizes(): number[] {
    return [...this.programs].filter(([, p]) => p !== null).map(([rows]) => rows);
  }

  /** The compiled program for shards of `rows` rows, where the backend runs one (see compiled.ts). */
  private programFor(rows: number): CompiledShard | undefined {
    let program = this.programs.get(rows);
    if (program === undefined) {
      const wasm = backend() as Partial<WasmBackend>;
      program =
        this.compiled && wasm.kernels !== undefined
          ? (CompiledShard.compile(
              this.outputNodes,
              this.feeds,
              wasm as WasmBackend,
              new Set(this.placeholders.slice(this.dataCount)),
            ) ?? null)
          : null;
      this.programs.set(rows, program);
    }
    return program ?? undefined;
  }

  /**
   * The X and Y tensors a shard of `rows` rows is gathered into (every row is overwritten):
   * allocated once per shard size, so a run of equal batches allocates nothing.
   */
  private gatherBuffers(rows: number): Tensor[] {
    let gather = this.gathers.get(rows);
    if (gather === undefined) {
      const { columns, dtype } = this.shared;
      // Micro-shards of one batch have at most two sizes; a short last batch adds one or two.
      if (this.gathers.size >= 4) {
        this.gathers.clear();
        this.programs.clear(); // they read the cleared buffers
      }
      gather = columns.map(
        (c) =>
          new Tensor(
            placeInBackend(() => allocateArray(rows * c.rowSize, dtype)),
            [rows, ...c.rowShape],
          ),
      );
      this.gathers.set(rows, gather);
    }
    return gather;
  }

  /**
   * Sums the gradient slots in index order over elements [start, end), scales by 1/batchSize, and
   * writes the optimizer's update into the next parameter and state buffers.
   */
  reduceAndUpdate(start: number, end: number): void {
    const { shared } = this;
    const { paramCount, shardCount, grads } = shared;
    const batchSize = shared.control[CONTROL.batchSize];
    const cur = Atomics.load(shared.control, CONTROL.current);
    const next = 1 - cur;
    const scale = this.objective === "sum" ? 1 : 1 / batchSize;
    const t = shared.control[CONTROL.step];
    if (this.update) {
      const arrays = {
        slots: grads,
        count: shardCount,
        stride: paramCount,
        params: shared.params[cur],
        next: shared.params[next],
        state: shared.state.map((pair) => pair[cur]),
        nextState: shared.state.map((pair) => pair[next]),
      };
      this.update.run(arrays, start, end, scale, this.optimizer, t);
      return;
    }
    if (this.reduced.length < REDUCE_BLOCK)
      this.reduced = allocateArray(REDUCE_BLOCK, shared.dtype);
    // Block by block, so the reduced gradient stays in cache between the sum and the update;
    // every element's arithmetic is the same for any blocking or slicing.
    for (let lo = start; lo < end; lo += REDUCE_BLOCK) {
      const hi = Math.min(end, lo + REDUCE_BLOCK);
      const reduced = this.reduced.subarray(0, hi - lo);
      sumSlots(grads, shardCount, paramCount, lo, hi, scale, reduced);
      const view = (a: TypedArray) => a.subarray(lo, hi);
      applyUpdate(
        this.optimizer,
        t,
        view(shared.params[cur]),
        reduced,
        shared.state.map((pair) => view(pair[cur])),
        view(shared.params[next]),
        shared.state.map((pair) => view(pair[next])),
      );
    }
  }
}
