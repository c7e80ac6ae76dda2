/** Step engines: who runs the micro-shards of a step. The in-process one lives here. */
import type { OptimizerConfig } from "./optimizer-kernels.js";
import { ShardRunner } from "./shard.js";
import type { SharedState, TrainPlan } from "./state.js";

/**
 * Runs one synchronous step: every micro-shard's forward and backward pass over the batch rows in
 * `shared.batch`, then the index-order reduction and the optimizer update into the next
 * parameter buffer. The caller flips `control[current]` only after step() resolves.
 */
export interface StepEngine {
  /** Threads computing shards (1 for the in-process engine). */
  readonly threads: number;
  /** Runs one step; rejects (leaving the current parameters untouched) when any shard fails. */
  step(): Promise<void>;
  /** Releases threads; idempotent. */
  close(): Promise<void>;
}

/** Builds an engine over shared state. */
export type EngineFactory = (
  shared: SharedState,
  train: TrainPlan,
  optimizer: OptimizerConfig,
) => Promise<StepEngine>;

/** The single-threaded engine: the same micro-shards and reduction order as the worker pool. */
export class InProcessEngine implements StepEngine {
  readonly threads = 1;
  private readonly runner: ShardRunner;

  /** Builds the shard runner in this thread. */
  constructor(
    private readonly shared: SharedState,
    train: TrainPlan,
    optimizer: OptimizerConfig,
  ) {
    this.runner = new ShardRunner(train, shared, optimizer);
  }

  /** Runs every micro-shard in order, then reduces and updates all parameters. */
  async step(): Promise<void> {
    this.runner.beginStep();
    for (let s = 0; s < this.shared.shardCount; s++) this.runner.runShard(s);
    this.runner.reduceAndUpdate(0, this.shared.paramCount);
  }

  /** Gives the runner's buffers back. */
  async close(): Promise<void> {
    this.runner.dispose();
  }
}

/** Factory for {@link InProcessEngine}. */
export const inProcessEngine: EngineFactory = async (shared, train, optimizer) =>
  new InProcessEngine(shared, train, optimizer);
