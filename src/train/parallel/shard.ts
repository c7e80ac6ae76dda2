/**
 * Micro-shards of a training batch over shared memory: the one decomposition both the in-process
 * and the worker paths use, so their results are bitwise identical for any thread count.
 */
import "../../graph/ops/index.js"; // registers every op, so any plan can be rebuilt here
import type { Node } from "../../graph/node.js";
import { applyUpdate, wasmRule, type OptimizerConfig } from "./optimizer-kernels.js";
import { sumSlots } from "./slots.js";
import { sizeOf } from "../../tensor/shape.js";
import {
  allocateArray,
  placeInBackend,
  releaseArray,
  Tensor,
  type TypedArray,
} from "../../tensor/tensor.js";
import { Evaluator } from "../../runtime/evaluator.js";
import { rebuildGraph } from "../../runtime/plan.js";
import { backend } from "../../tensor/active.js";
import { trainingKernels } from "../../backends/select.js";
import type { RowGather, ShardProgram } from "../../backends/training.js";
import {
  updateKernels,
  type UpdateArrays,
  type UpdateRunner,
} from "../../backends/wasm-training/update.js";
import { shiftFor, shiftImage } from "./augment.js";
import { CONTROL, shardBounds, type SharedState, type TrainPlan } from "./state.js";

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
  private readonly programs = new Map<number, ShardProgram | null>();
  /** Tells a program that the parameters changed ({@link beginStep}'s, bound once). */
  private readonly renew = (program: ShardProgram | null): void => program?.newStep();
  private disposed = false;
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
  /**
   * Each data column's gather by the backend (undefined: row by row in JS), made with the run's
   * other staging (allocateShared's), in this thread under its backend: its copy of a column is
   * not a cost of the first step (the digits: 0.9 MB, 2-3 ms of fresh pages).
   */
  private readonly rowGathers: (RowGather | undefined)[];
  /** This thread's WASM reduce-and-update over the shared memory, where there is one. */
  private readonly update: UpdateRunner | undefined;
  /** The WASM update's constants, refilled every step (wasmRule). */
  private readonly constants = new Float64Array(10);
  /** The update's arrays when parameter buffer 0 or 1 is current, made on first use. */
  private readonly updateArrays: (UpdateArrays | undefined)[] = [undefined, undefined];

  /** Rebuilds the training graph from its plan. */
  constructor(
    train: TrainPlan,
    private readonly shared: SharedState,
    private readonly optimizer: OptimizerConfig,
  ) {
    const graph = rebuildGraph(train.graph);
    this.placeholders = graph.placeholders;
    this.meanLoss = train.shardLoss === "mean";
    this.dataCount = train.dataCount;
    this.objective = train.objective;
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
    const kernels = trainingKernels(backend());
    this.rowGathers = shared.columns.map((c) => kernels?.rowGather(c.data, c.rowSize));
  }

  /** Copies the current parameters for this step's shards; call before the first shard of a step. */
  beginStep(): void {
    const current = this.paramViews[Atomics.load(this.shared.control, CONTROL.current)];
    for (let i = 0; i < current.length; i++) this.staged[i].data.set(current[i].data);
    // NOTE: forEach with a bound function, not the map's iterator, which allocated every step.
    this.programs.forEach(this.renew);
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
    const rowGathers = this.rowGathers;
    for (let c = 0; c < shared.columns.length; c++) {
      const into = gathered[c].data;
      const { data, rowSize } = shared.columns[c];
      const shifted = augment !== undefined && c === 0;
      if (!shifted && rowGathers[c]?.gather(shared.batch, lo, hi, into)) continue;
      for (let r = 0; r < rows; r++) {
        const row = shared.batch[lo + r];
        if (shifted) {
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
   * for its first shard (which costs many warm shards: compiling, then V8's tiers).
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
  ): { outputs: Tensor[]; program: ShardProgram | undefined } {
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

  /** The compiled program for shards of `rows` rows, where the backend runs one (see backends/wasm-training/compiled.ts). */
  private programFor(rows: number): ShardProgram | undefined {
    let program = this.programs.get(rows);
    if (program === undefined) {
      const kernels = this.compiled ? trainingKernels(backend()) : undefined;
      program =
        kernels?.compileShard(
          this.outputNodes,
          this.feeds,
          new Set(this.placeholders.slice(this.dataCount)),
        ) ?? null;
      this.programs.set(rows, program);
    }
    return program ?? undefined;
  }

  /**
   * Gives the run's buffers back (the programs', the gathered rows', the staged parameters', the
   * columns' copies), so that the next run in this thread reuses them rather than growing the
   * kernels' memory until a collection; the runner must not be used again.
   */
  dispose(): void {
    // Once: a second release would hand the pool arrays it may have given out again.
    if (this.disposed) return;
    this.disposed = true;
    this.dropShardSizes();
    for (const t of this.staged) releaseArray(t.data);
    for (const gather of this.rowGathers) gather?.dispose();
  }

  /** Forgets every shard size's gathered rows and program, their buffers back to the pool. */
  private dropShardSizes(): void {
    this.programs.forEach((program) => program?.dispose());
    this.gathers.forEach((tensors) => tensors.forEach((t) => releaseArray(t.data)));
    this.programs.clear();
    this.gathers.clear();
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
      if (this.gathers.size >= 4) this.dropShardSizes(); // the programs read those buffers
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
      // The arrays of each direction (current 0 or 1) built once: a step allocates nothing here.
      const arrays = (this.updateArrays[cur] ??= {
        slots: grads,
        count: shardCount,
        stride: paramCount,
        params: shared.params[cur],
        next: shared.params[next],
        state: shared.state.map((pair) => pair[cur]),
        nextState: shared.state.map((pair) => pair[next]),
      });
      const rule = wasmRule(this.optimizer, t, this.constants);
      this.update.run(arrays, start, end, scale, rule, this.constants);
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
