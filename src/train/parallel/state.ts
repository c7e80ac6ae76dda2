/**
 * The shared state of a training run and the one place its control words are written and read:
 * the data columns, the two parameter buffers (current and next), the optimizer state, a gradient
 * slot per micro-shard, and the step's inputs (its rows, its batch size, its number). Every
 * thread maps the same SharedArrayBuffers; the trainer reaches them only through these functions.
 */
import { sizeOf } from "../../tensor/shape.js";
import { allocateArray, Tensor, type DType, type TypedArray } from "../../tensor/tensor.js";
import type { Plan } from "../../runtime/plan.js";
import type { WasmMemory } from "../../backends/wasm-module.js";
import { stateCount, type OptimizerConfig } from "./optimizer-kernels.js";
import { allocateInMemory } from "../../backends/wasm-training/update.js";
import type { ShiftAugment } from "./augment.js";
import type { StepEngine } from "./engine.js";

/**
 * The training graph as data: placeholders [...data, ...params] (`dataCount` per-example inputs),
 * outputs [loss, ...grads] of the rows a shard is fed.
 */
export interface TrainPlan {
  /** The lowered graph (rebuilt in every thread). */
  graph: Plan;
  paramShapes: number[][];
  /** How many placeholders are per-example data, fed one gathered shard each. */
  dataCount: number;
  /**
   * Whether the plan's loss (and so its gradients) is the sum over the shard's rows or their
   * mean; means are scaled by the shard's rows, so slots always hold sums.
   */
  shardLoss: "sum" | "mean";
  /** What a step minimises: the batch's mean (slot sums divided by its rows) or sum. */
  objective: "mean" | "sum";
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
   * one: every thread then reduces and updates there in WASM (backends/wasm-training/update.ts), else in JS.
   */
  memory?: WasmMemory;
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
  /** The initial parameters, in the plan's order: made current (else zeros). */
  initial?: readonly Tensor[];
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
  const shared: SharedState = {
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
  if (options.initial) stageParams(shared, options.initial);
  return shared;
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

/** runStep's signal that a step's loss was not finite: nothing was made current. */
export class NonFiniteLossError extends Error {
  /** Creates it with the step's summed loss. */
  constructor(readonly loss: number) {
    super(`the step's loss is ${loss}`);
    this.name = "NonFiniteLossError";
  }
}

/**
 * Runs one step of `engine` on `rows` and makes the new parameters current; returns the summed
 * loss. The parameters change only when every shard and the update succeeded and the loss is
 * finite (else a {@link NonFiniteLossError}).
 */
export async function runStep(
  engine: StepEngine,
  shared: SharedState,
  rows: Int32Array,
  t: number,
): Promise<number> {
  shared.batch.set(rows);
  shared.control[CONTROL.batchSize] = rows.length;
  shared.control[CONTROL.step] = t;
  await engine.step();
  let loss = 0;
  for (let s = 0; s < shared.shardCount; s++) loss += shared.losses[s];
  // A non-finite loss means the update is not to be trusted: the current parameters stay.
  if (!Number.isFinite(loss)) throw new NonFiniteLossError(loss);
  Atomics.store(shared.control, CONTROL.current, 1 - shared.control[CONTROL.current]);
  return loss;
}

/** Copies tensors into one flat array, in order. */
function writeFlat(flat: Float32Array | Float64Array, tensors: readonly Tensor[]): void {
  let offset = 0;
  for (const t of tensors) {
    flat.set(t.data, offset);
    offset += t.size;
  }
  if (offset !== flat.length)
    throw new Error(`parameters hold ${offset} values, the model needs ${flat.length}`);
}

/** Copies of the current parameters as tensors. */
export function currentParams(shared: SharedState, shapes: readonly number[][]): Tensor[] {
  return splitFlat(shared.params[shared.control[CONTROL.current]], shapes);
}

function splitFlat(flat: Float32Array | Float64Array, shapes: readonly number[][]): Tensor[] {
  let offset = 0;
  return shapes.map((shape) => {
    const size = sizeOf(shape);
    const t = new Tensor(flat.slice(offset, offset + size), shape);
    offset += size;
    return t;
  });
}

/** Copies `initial` parameters (in the plan's order) into the first parameter buffer. */
export function stageParams(shared: SharedState, initial: readonly Tensor[]): void {
  shared.control[CONTROL.current] = 0;
  writeFlat(shared.params[0], initial);
}

/** Makes `params` and the optimizer's `state` (one list per state vector) current. */
export function restoreState(
  shared: SharedState,
  params: readonly Tensor[],
  state: readonly (readonly Tensor[])[],
): void {
  stageParams(shared, params);
  shared.state.forEach((pair, k) => writeFlat(pair[0], state[k]));
}

/** The current optimizer state as tensors: one list of `shapes` per state vector. */
export function currentState(shared: SharedState, shapes: readonly number[][]): Tensor[][] {
  const cur = shared.control[CONTROL.current];
  return shared.state.map((pair) => splitFlat(pair[cur], shapes));
}
