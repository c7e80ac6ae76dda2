/**
 * What a backend may offer the trainer beyond the Backend interface: its micro-shards compiled
 * into programs. train/ asks `trainingKernels(backend())` (select.ts) and names only these types.
 */
import type { Node } from "../graph/node.js";
import type { Tensor, TypedArray } from "../tensor/tensor.js";

/** A shard's plan compiled for one shard size: `run()` returns the plan's outputs. */
export interface ShardProgram {
  /** What each step runs: its op, "+grad" when fused, "(interpreted)" through its compute. */
  readonly labels: readonly string[];
  /** Says that the constants (the parameters) changed since the last run. */
  newStep(): void;
  /** Runs every step in order; the outputs' buffers are overwritten by the next run. */
  run(): Tensor[];
  /** {@link run}, adding each step's seconds to `seconds[label]` (bench:profile). */
  runTimed(seconds: Record<string, number>): Tensor[];
  /** Gives its buffers back for reuse; the program must not run again. */
  dispose(): void;
}

/** One data column's rows gathered into a shard's buffer by the backend, in one call. */
export interface RowGather {
  /** Rows `batch[lo..hi)` of the column into `into` (row i at i * rowSize); false: not done. */
  gather(batch: Int32Array, lo: number, hi: number, into: TypedArray): boolean;
  /** Frees its copy of the column; the gather must not be used again. */
  dispose(): void;
}

/** The training kernels of a backend. */
export interface TrainingKernels {
  /**
   * A gather over `column` (rows of `rowSize` elements), which it may copy into the backend's
   * memory; undefined where the backend has none for it (the caller then copies row by row).
   */
  rowGather(column: TypedArray, rowSize: number): RowGather | undefined;
  /**
   * `outputs` over `feeds` (placeholder -> tensor, bound by identity: refill their data between
   * runs), `constants` the feeds that change only between steps; undefined where it cannot
   * compile (the caller then runs the Evaluator).
   */
  compileShard(
    outputs: readonly Node[],
    feeds: ReadonlyMap<Node, Tensor>,
    constants: ReadonlySet<Node>,
  ): ShardProgram | undefined;
}
