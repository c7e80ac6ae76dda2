/**
 * train(): the built-in models (ModelSpec) through the one training loop: their plan, their shared
 * state (images and one-hot labels), their test metrics after every epoch.
 */
import type { OptimizerConfig } from "./parallel/optimizer-kernels.js";
import type { EngineFactory } from "./parallel/engine.js";
import { allocateShared, type SharedState, type TrainPlan } from "./parallel/state.js";
import type { ShiftAugment } from "./parallel/augment.js";
import type { Tensor, DType } from "../tensor/tensor.js";
import { oneHot, type Dataset, type Split } from "./data.js";
import { buildTrainPlan, initParams, paramSpecs, type ModelSpec } from "./models.js";
import { checkOptimizerConfig } from "./optimizers.js";
import { Rng } from "./random.js";
import type { EpochRecord } from "./loop.js";
import { runTraining, type StepInfo, type TrainingOutcome, type TrainingRun } from "./loop.js";
import { accuracy, testMetrics } from "./metrics.js";

/** Everything a training run needs. */
export interface TrainerOptions {
  spec: ModelSpec;
  split: Split;
  dtype: DType;
  batchSize: number;
  epochs: number;
  /** Stop after this many optimizer steps in total (for benchmarks). */
  maxSteps?: number;
  optimizer: OptimizerConfig;
  seed: number;
  /** Micro-shards per batch: fixed, whatever the thread count, so results are bitwise identical. */
  shardCount: number;
  createEngine: EngineFactory;
  /** Random shifts of the training images (e.g. 28x28, up to 2 pixels); off by default. */
  augment?: ShiftAugment;
  /** Initial parameters (from --load), in paramSpecs order. */
  initialParams?: Tensor[];
  checkpointPath?: string;
  /** Continue from the checkpoint at checkpointPath (which must exist). */
  resume?: boolean;
  /** Replace an existing checkpoint at checkpointPath without resuming it (default: refuse). */
  overwrite?: boolean;
  /** Receives one-line notices: a stale lock taken over, leftover temp files removed. */
  onNotice?: (line: string) => void;
  /** Called with the trained parameters as soon as the steps end (before any evaluation). */
  onTrained?: (params: Tensor[]) => void;
  /** Identifies the run in checkpoints; a resumed run must match it. */
  fingerprint?: Record<string, unknown>;
  onStep?: (info: StepInfo) => void;
  onEpoch?: (record: EpochRecord & { seconds: number }) => void;
  /** Checked at every step boundary: when true, the run stops (after a checkpoint if asked). */
  shouldStop?: () => boolean;
}

/** What a training run produced. */
export interface TrainResult extends Omit<TrainingOutcome, "history"> {
  /** Every epoch with its test accuracy. */
  history: EpochRecord[];
  testAccuracy: number;
}

/** Trains `spec` on `split.train` and evaluates on `split.test` after every epoch. */
export async function train(options: TrainerOptions): Promise<TrainResult> {
  const { spec, split, dtype, batchSize, shardCount } = options;
  const optimizer = checkOptimizerConfig(options.optimizer);
  if (!Number.isInteger(batchSize) || batchSize <= 0)
    throw new RangeError(`batch size must be a positive integer, got ${batchSize}`);
  const trainSet = split.train;
  const rng = new Rng(options.seed);
  const initial = options.initialParams ?? initParams(spec, rng, dtype);
  const { trainPlan, shared } = prepareTraining(
    spec,
    trainSet,
    dtype,
    optimizer,
    shardCount,
    batchSize,
    initial,
    options.augment,
  );
  const outcome = await runTraining({
    trainPlan,
    shared,
    rows: trainSet.X.shape[0],
    batchSize,
    epochs: options.epochs,
    maxSteps: options.maxSteps,
    optimizer,
    createEngine: options.createEngine,
    rng,
    meanLoss: true,
    evaluateEpoch: (params) => {
      try {
        return testMetrics(spec, params, split.test);
      } catch (error) {
        // The epoch's parameters are not lost to a failed evaluation: the caller saves them first.
        if (!options.onTrained) throw error;
        options.onTrained(params);
        throw new Error(
          `evaluating the test accuracy failed after an epoch's training steps (the parameters were saved first): ${(error as Error).message}`,
          { cause: error },
        );
      }
    },
    checkpoint: options.checkpointPath
      ? {
          path: options.checkpointPath,
          names: paramSpecs(spec).map((p) => p.name),
          model: { ...spec },
          fingerprint: options.fingerprint ?? {},
          resume: options.resume,
          overwrite: options.overwrite,
          onNotice: options.onNotice,
        }
      : undefined,
    onStep: options.onStep,
    onEpoch: options.onEpoch as TrainingRun["onEpoch"],
    shouldStop: options.shouldStop,
  });
  // Before anything after training can fail (the evaluation of a stopped run): the caller's save.
  options.onTrained?.(outcome.params);
  const last = outcome.history[outcome.history.length - 1];
  return {
    ...outcome,
    history: outcome.history as EpochRecord[],
    testAccuracy:
      outcome.stopped || !last
        ? accuracy(spec, outcome.params, split.test)
        : (last.testAccuracy as number),
  };
}

/**
 * The training graph and the shared state for a training set: dataset and one-hot targets copied
 * into shared memory once, `initial` parameters in buffer 0.
 */
export function prepareTraining(
  spec: ModelSpec,
  trainSet: Dataset,
  dtype: DType,
  optimizer: OptimizerConfig,
  shardCount: number,
  maxBatch: number,
  initial: readonly Tensor[],
  augment?: ShiftAugment,
): { trainPlan: TrainPlan; shared: SharedState } {
  const trainPlan = buildTrainPlan(spec);
  const shared = allocateShared({
    dtype,
    columns: [
      {
        data: trainSet.X.dtype === dtype ? trainSet.X.data : trainSet.X.clone({ dtype }).data,
        rowShape: [spec.sizes[0]],
      },
      {
        data: oneHot(trainSet.y, trainSet.classes, dtype).data,
        rowShape: [spec.sizes[spec.sizes.length - 1]],
      },
    ],
    paramShapes: trainPlan.paramShapes,
    optimizer,
    shardCount,
    maxBatch,
    augment,
    initial,
  });
  return { trainPlan, shared };
}
