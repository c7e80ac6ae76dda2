/** The training loop: epochs of shuffled mini-batches through a step engine, with checkpoints. */
import { variable } from "../graph/node.js";
import { Evaluator } from "../runtime/evaluator.js";
import {
  allocateShared,
  CONTROL,
  type SharedState,
  type ShiftAugment,
  type TrainPlan,
} from "../runtime/shard.js";
import type { OptimizerConfig } from "../tensor/kernels/optimizer.js";
import { sizeOf } from "../tensor/shape.js";
import { clearPool, Tensor, type DType } from "../tensor/tensor.js";
import { oneHot, type Dataset, type Split } from "./data.js";
import type { EngineFactory, StepEngine } from "./engine.js";
import { buildTrainPlan, forward, initParams, paramSpecs, type ModelSpec } from "./models.js";
import { checkOptimizerConfig } from "./optimizers.js";
import { Rng } from "./random.js";
import { loadParams, saveParams } from "./serialize.js";
import type { EpochRecord } from "./plot.js";

/** Progress of one optimizer step. */
export interface StepInfo {
  epoch: number;
  batch: number;
  batchesPerEpoch: number;
  batchSize: number;
  step: number;
  loss: number;
  samplesPerSecond: number;
}

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
  resume?: boolean;
  /** Identifies the run in checkpoints; a resumed run must match it. */
  fingerprint?: Record<string, unknown>;
  onStep?: (info: StepInfo) => void;
  onEpoch?: (record: EpochRecord & { seconds: number }) => void;
  /** Checked at every step boundary: when true, the run stops (after a checkpoint if asked). */
  shouldStop?: () => boolean;
}

/** What a training run produced. */
export interface TrainResult {
  params: Tensor[];
  history: EpochRecord[];
  steps: number;
  epochsCompleted: number;
  /** Seconds spent in optimizer steps (data loading and evaluation excluded). */
  stepSeconds: number;
  samples: number;
  trainLoss: number;
  testAccuracy: number;
  threads: number;
  stopped: boolean;
}

/** Where a run is, as a checkpoint stores it. */
interface Position {
  epoch: number;
  batch: number;
  t: number;
  rngState: number[];
  history: EpochRecord[];
  epochLossSum: number;
  epochSamples: number;
}

/** Trains `spec` on `split.train` and evaluates on `split.test` after every epoch. */
export async function train(options: TrainerOptions): Promise<TrainResult> {
  const { spec, split, dtype, batchSize, shardCount } = options;
  const optimizer = checkOptimizerConfig(options.optimizer);
  if (!Number.isInteger(batchSize) || batchSize <= 0)
    throw new RangeError(`batch size must be a positive integer, got ${batchSize}`);
  const trainSet = split.train;
  const n = trainSet.X.shape[0];
  const specs = paramSpecs(spec);
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

  let position: Position = {
    epoch: 0,
    batch: 0,
    t: 0,
    rngState: rng.getState(),
    history: [],
    epochLossSum: 0,
    epochSamples: 0,
  };
  if (options.resume && options.checkpointPath) {
    position = readCheckpoint(
      options.checkpointPath,
      shared,
      specs.map((s) => s.name),
      options.fingerprint ?? {},
    );
  }
  const saveCheckpoint = (at: Position) => {
    if (options.checkpointPath)
      writeCheckpoint(options.checkpointPath, shared, spec, at, options.fingerprint ?? {});
  };

  const engine = await options.createEngine(shared, trainPlan, optimizer);
  const batchesPerEpoch = Math.ceil(n / batchSize);
  let steps = 0;
  let stepSeconds = 0;
  let samples = 0;
  let stopped = false;
  let trainLoss = NaN;
  try {
    for (let epoch = position.epoch; epoch < options.epochs && !stopped; epoch++) {
      const epochStart = performance.now();
      rng.setState(position.rngState);
      const order = rng.permutation(n);
      const afterShuffle = rng.getState();
      let lossSum = position.epochLossSum;
      let epochSamples = position.epochSamples;
      for (let batch = position.batch; batch < batchesPerEpoch; batch++) {
        if (
          options.shouldStop?.() ||
          (options.maxSteps !== undefined && steps >= options.maxSteps)
        ) {
          stopped = true;
          position = { ...position, epoch, batch, epochLossSum: lossSum, epochSamples };
          saveCheckpoint(position);
          break;
        }
        const rows = order.subarray(batch * batchSize, Math.min(n, (batch + 1) * batchSize));
        const t0 = performance.now();
        const stepLoss = await runStep(engine, shared, rows, position.t + 1);
        position.t++;
        const elapsed = (performance.now() - t0) / 1000;
        stepSeconds += elapsed;
        samples += rows.length;
        steps++;
        lossSum += stepLoss;
        epochSamples += rows.length;
        options.onStep?.({
          epoch,
          batch,
          batchesPerEpoch,
          batchSize,
          step: position.t,
          loss: stepLoss / rows.length,
          samplesPerSecond: samples / stepSeconds,
        });
      }
      if (stopped) break;
      trainLoss = lossSum / Math.max(epochSamples, 1);
      const testAccuracy = accuracy(spec, currentParams(shared, trainPlan.paramShapes), split.test);
      const record = { epoch: epoch + 1, trainLoss, testAccuracy };
      position = {
        epoch: epoch + 1,
        batch: 0,
        t: position.t,
        rngState: afterShuffle,
        history: [...position.history, record],
        epochLossSum: 0,
        epochSamples: 0,
      };
      saveCheckpoint(position);
      options.onEpoch?.({ ...record, seconds: (performance.now() - epochStart) / 1000 });
    }
  } finally {
    await engine.close();
  }
  const params = currentParams(shared, trainPlan.paramShapes);
  const last = position.history[position.history.length - 1];
  return {
    params,
    history: position.history,
    steps,
    epochsCompleted: position.epoch,
    stepSeconds,
    samples,
    trainLoss: Number.isNaN(trainLoss) ? (last?.trainLoss ?? NaN) : trainLoss,
    testAccuracy: stopped || !last ? accuracy(spec, params, split.test) : last.testAccuracy,
    threads: engine.threads,
    stopped,
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
    X: trainSet.X.dtype === dtype ? trainSet.X.data : trainSet.X.clone({ dtype }).data,
    Y: oneHot(trainSet.y, trainSet.classes, dtype).data,
    features: spec.sizes[0],
    classes: spec.sizes[spec.sizes.length - 1],
    paramShapes: trainPlan.paramShapes,
    optimizer,
    shardCount,
    maxBatch,
    augment,
  });
  writeFlat(shared.params[0], initial);
  return { trainPlan, shared };
}

/**
 * Runs one step of `engine` on `rows` and makes the new parameters current; returns the summed
 * loss. The parameters change only when every shard and the update succeeded.
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
  Atomics.store(shared.control, CONTROL.current, 1 - shared.control[CONTROL.current]);
  let loss = 0;
  for (let s = 0; s < shared.shardCount; s++) loss += shared.losses[s];
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

/** Fraction of rows of `data` whose arg-max logit is the label. */
export function accuracy(
  spec: ModelSpec,
  params: readonly Tensor[],
  data: Dataset,
  chunk = 1000,
): number {
  const X = variable("X");
  const paramNodes = paramSpecs(spec).map((p) => variable(p.name));
  const evaluator = new Evaluator([forward(spec, X, paramNodes)]);
  const n = data.X.shape[0];
  const features = data.X.shape[1];
  const dtype = params[0].dtype;
  const all = data.X.dtype === dtype ? data.X.data : data.X.clone({ dtype }).data;
  let correct = 0;
  for (let start = 0; start < n; start += chunk) {
    const rows = Math.min(chunk, n - start);
    const Xc = new Tensor(all.subarray(start * features, (start + rows) * features), [
      rows,
      features,
    ]);
    const feeds = new Map([[X, Xc]]);
    paramNodes.forEach((p, i) => feeds.set(p, params[i]));
    const [logits] = evaluator.run(feeds);
    const classes = logits.shape[1];
    for (let r = 0; r < rows; r++) {
      let best = 0;
      for (let c = 1; c < classes; c++)
        if (logits.data[r * classes + c] > logits.data[r * classes + best]) best = c;
      if (best === data.y[start + r]) correct++;
    }
    evaluator.recycle([logits]);
  }
  // Evaluation-sized arrays are not reused by training steps: hand them back to the GC.
  clearPool();
  return n > 0 ? correct / n : NaN;
}

const CHECKPOINT_KIND = "adjoint-checkpoint";

function writeCheckpoint(
  path: string,
  shared: SharedState,
  spec: ModelSpec,
  at: Position,
  fingerprint: Record<string, unknown>,
): void {
  const cur = shared.control[CONTROL.current];
  const names = paramSpecs(spec);
  const shapes = names.map((p) => p.shape);
  const tensors = [
    ...splitFlat(shared.params[cur], shapes).map((t, i) => ({ name: names[i].name, t })),
    ...shared.state.flatMap((pair, k) =>
      splitFlat(pair[cur], shapes).map((t, i) => ({ name: `state${k}.${names[i].name}`, t })),
    ),
  ];
  saveParams(path, {
    format: "adjoint-params",
    version: 1,
    model: { ...spec },
    params: tensors.map(({ name, t }) => ({
      name,
      shape: [...t.shape],
      dtype: t.dtype,
      data: t.data,
    })),
    extra: { kind: CHECKPOINT_KIND, position: at, fingerprint },
  });
}

function readCheckpoint(
  path: string,
  shared: SharedState,
  names: readonly string[],
  fingerprint: Record<string, unknown>,
): Position {
  const record = loadParams(path);
  const extra = record.extra as
    { kind?: string; position?: Position; fingerprint?: unknown } | undefined;
  if (extra?.kind !== CHECKPOINT_KIND || !extra.position) {
    throw new Error(`${path}: not a training checkpoint (a parameter file? use --load for those)`);
  }
  const saved = JSON.stringify(extra.fingerprint);
  if (saved !== JSON.stringify(fingerprint)) {
    throw new Error(
      `${path}: checkpoint was written by a different run configuration: ${saved} vs ${JSON.stringify(fingerprint)}`,
    );
  }
  const byName = new Map(record.params.map((p) => [p.name, p]));
  const take = (name: string) => {
    const p = byName.get(name);
    if (!p) throw new Error(`${path}: checkpoint lacks tensor "${name}"`);
    if (p.dtype !== shared.dtype)
      throw new Error(`${path}: tensor "${name}" is ${p.dtype}, the run uses ${shared.dtype}`);
    return new Tensor(p.data, p.shape);
  };
  shared.control[CONTROL.current] = 0;
  writeFlat(shared.params[0], names.map(take));
  shared.state.forEach((pair, k) =>
    writeFlat(
      pair[0],
      names.map((n) => take(`state${k}.${n}`)),
    ),
  );
  return extra.position;
}
