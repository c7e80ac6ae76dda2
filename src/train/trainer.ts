/** The training loop: epochs of shuffled mini-batches through a step engine, with checkpoints. */
import { variable } from "../graph/node.js";
import { evaluate } from "./evaluate.js";
import {
  allocateShared,
  CONTROL,
  type SharedState,
  type ShiftAugment,
  type TrainPlan,
} from "./parallel/shard.js";
import type { OptimizerConfig } from "./parallel/optimizer-kernels.js";
import { sizeOf } from "../tensor/shape.js";
import { clearPool, Tensor, type DType } from "../tensor/tensor.js";
import { oneHot, type Dataset, type Split } from "./data.js";
import type { EngineFactory, StepEngine } from "./engine.js";
import {
  architectureOf,
  buildTrainPlan,
  forward,
  initParams,
  paramSpecs,
  type ModelSpec,
} from "./models.js";
import { checkOptimizerConfig } from "./optimizers.js";
import { Rng } from "./random.js";
import {
  loadParams,
  PARAMS_VERSION,
  processAlive,
  processStat,
  removeStaleTempFiles,
  saveParams,
} from "./serialize.js";
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
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

/**
 * A run whose loss became non-finite (NaN or ±Infinity): it stops at that step, the parameters
 * stay those of the last finite step, and the checkpoint on disk stays the last good one.
 */
export class DivergenceError extends Error {
  /** Creates the error for optimizer step `step` (1-based) in epoch `epoch` (1-based). */
  constructor(
    readonly step: number,
    readonly epoch: number,
    readonly lastFiniteLoss: number | undefined,
    what = "the training loss is",
    lr?: number,
  ) {
    const last =
      lastFiniteLoss === undefined
        ? "no finite loss before it"
        : `last finite loss ${lastFiniteLoss.toPrecision(6)}`;
    const hint = lr === undefined ? "a lower learning rate" : `a learning rate below ${lr}`;
    super(
      `training diverged at step ${step} (epoch ${epoch}): ${what} not finite (${last}); try ${hint} (--lr)`,
    );
    this.name = "DivergenceError";
  }
}

/** runStep's signal that a step's loss was not finite: nothing was made current. */
export class NonFiniteLossError extends Error {
  /** Creates it with the step's summed loss. */
  constructor(readonly loss: number) {
    super(`the step's loss is ${loss}`);
    this.name = "NonFiniteLossError";
  }
}

/** Where a run is, as a checkpoint stores it. */
interface Position {
  epoch: number;
  batch: number;
  t: number;
  rngState: number[];
  history: RunEpoch[];
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

/** Where a training run keeps its checkpoint, and what identifies the run in it. */
export interface CheckpointSpec {
  path: string;
  /** Parameter names, in the plan's order (the checkpoint's tensor names). */
  names: readonly string[];
  /** The model's description stored with the parameters. */
  model: Record<string, unknown>;
  /** Identifies the run's settings; a resumed run must match it. */
  fingerprint: Record<string, unknown>;
  resume?: boolean;
  overwrite?: boolean;
  onNotice?: (line: string) => void;
}

/** One epoch of the loop's history: its loss, and the test metric where the run has one. */
export interface RunEpoch {
  epoch: number;
  trainLoss: number;
  testAccuracy?: number;
  /** The mean cross-entropy over the test rows. */
  testLoss?: number;
}

/**
 * What the one training loop needs, whatever built the graph: train() for the built-in models,
 * fit() for any graph. The shared state holds the data, the initial parameters and the slots.
 */
export interface TrainingRun {
  trainPlan: TrainPlan;
  shared: SharedState;
  /** Rows of the training data. */
  rows: number;
  batchSize: number;
  epochs: number;
  maxSteps?: number;
  optimizer: OptimizerConfig;
  createEngine: EngineFactory;
  /** The shuffles' generator, where the run starts (a resumed run restores its state). */
  rng: Rng;
  /** Whether losses are per-row means (the step's sum over its rows divided by them) or sums. */
  meanLoss: boolean;
  /** Shuffle the rows every epoch (default true); false keeps their order. */
  shuffle?: boolean;
  /** The test metrics of an epoch's parameters, kept in its history record. */
  evaluateEpoch?: (params: Tensor[]) => { accuracy: number; loss: number };
  checkpoint?: CheckpointSpec;
  onStep?: (info: StepInfo) => void;
  onEpoch?: (record: RunEpoch & { seconds: number }) => void;
  shouldStop?: () => boolean;
}

/** What the loop returns. */
export interface TrainingOutcome {
  params: Tensor[];
  history: RunEpoch[];
  steps: number;
  epochsCompleted: number;
  /** Seconds spent in optimizer steps (data loading and evaluation excluded). */
  stepSeconds: number;
  samples: number;
  /** Samples per second over every step (the step engine's time). */
  samplesPerSecond: number;
  /** Samples per second over this run's first {@link COLD_STEPS} steps (start-up and JIT warm-up). */
  coldSamplesPerSecond: number;
  /** Samples per second over this run's second half of steps (the steady state). */
  warmSamplesPerSecond: number;
  trainLoss: number;
  threads: number;
  stopped: boolean;
}

/** Steps the cold figure covers. */
export const COLD_STEPS = 20;

/** The bytes of one activation of an evaluation chunk (its rows are chosen to fit). */
export const EVAL_ACTIVATION_BYTES = 64 * 2 ** 20;

/** Steps between the training loop's yields to the event loop. */
const YIELD_STEPS = 256;

// NOTE: bounded memory over any run length. The loop once kept every step's rows and seconds
// (two arrays growing by a step each, ~250 B a step over 200,000 steps); it now keeps running
// totals and a sample of cumulative totals at most SAMPLES long, thinned to every other point when
// full, so the warm rate starts at the first sampled step at or after the run's middle.

/** Step timings reduced to the cold, warm and overall rates in bounded memory. */
export class StepRates {
  private rows = 0;
  private seconds = 0;
  private steps = 0;
  private coldRows = 0;
  private coldSeconds = 0;
  /** Cumulative (steps, rows, seconds) after every `stride`-th step. */
  private readonly marks: [number, number, number][] = [[0, 0, 0]];
  private stride = 1;

  /** Records one step of `rows` samples that took `seconds`. */
  add(rows: number, seconds: number): void {
    this.rows += rows;
    this.seconds += seconds;
    this.steps++;
    if (this.steps <= COLD_STEPS) [this.coldRows, this.coldSeconds] = [this.rows, this.seconds];
    if (this.steps % this.stride !== 0) return;
    this.marks.push([this.steps, this.rows, this.seconds]);
    if (this.marks.length > StepRates.SAMPLES) {
      let kept = 0;
      for (let i = 0; i < this.marks.length; i += 2) this.marks[kept++] = this.marks[i];
      this.marks.length = kept;
      this.stride *= 2;
    }
  }

  /** Samples per second over every step, the first COLD_STEPS, and the second half. */
  rates(): { all: number; cold: number; warm: number } {
    const per = (n: number, t: number) => (t > 0 ? n / t : 0);
    const middle = this.marks.find(([steps]) => steps >= Math.floor(this.steps / 2)) ?? [0, 0, 0];
    return {
      all: per(this.rows, this.seconds),
      cold: per(this.coldRows, this.coldSeconds),
      warm: per(this.rows - middle[1], this.seconds - middle[2]),
    };
  }

  /** How many cumulative samples it holds now (bounded by SAMPLES + 1). */
  get sampleCount(): number {
    return this.marks.length;
  }

  private static readonly SAMPLES = 1024;
}

/**
 * The training loop: epochs of shuffled mini-batches through a step engine, checkpoints after
 * every epoch and at a stop, resume, the divergence stop. One loop for every model.
 */
export async function runTraining(run: TrainingRun): Promise<TrainingOutcome> {
  const { shared, trainPlan, rng, batchSize, optimizer, rows: n } = run;
  let position: Position = {
    epoch: 0,
    batch: 0,
    t: 0,
    rngState: rng.getState(),
    history: [],
    epochLossSum: 0,
    epochSamples: 0,
  };
  const batchesPerEpoch = Math.ceil(n / batchSize);
  const checkpoint = run.checkpoint;
  const releaseLock = checkpoint === undefined ? () => {} : claimCheckpoint(checkpoint);
  const saveCheckpoint = (at: Position) => {
    if (checkpoint) writeCheckpoint(checkpoint, shared, trainPlan.paramShapes, at);
  };
  const perRow = (sum: number, rows: number) => (run.meanLoss ? sum / rows : sum);
  let engine: StepEngine;
  try {
    if (checkpoint?.resume) {
      position = readCheckpoint(checkpoint, shared, trainPlan.paramShapes, {
        epochs: run.epochs,
        batchesPerEpoch,
        batchSize,
      });
    }
    engine = await run.createEngine(shared, trainPlan, optimizer);
  } catch (error) {
    releaseLock();
    throw error;
  }
  let lastFiniteLoss: number | undefined;
  let steps = 0;
  let stepSeconds = 0;
  let samples = 0;
  const stepRates = new StepRates();
  let stopped = false;
  let trainLoss = NaN;
  try {
    for (let epoch = position.epoch; epoch < run.epochs && !stopped; epoch++) {
      const epochStart = performance.now();
      rng.setState(position.rngState);
      const order =
        run.shuffle === false ? Int32Array.from({ length: n }, (_, i) => i) : rng.permutation(n);
      const afterShuffle = rng.getState();
      let lossSum = position.epochLossSum;
      let epochSamples = position.epochSamples;
      for (let batch = position.batch; batch < batchesPerEpoch; batch++) {
        if (run.shouldStop?.() || (run.maxSteps !== undefined && steps >= run.maxSteps)) {
          stopped = true;
          position = { ...position, epoch, batch, epochLossSum: lossSum, epochSamples };
          saveCheckpoint(position);
          break;
        }
        // NOTE: a step awaits only promises already settled, so the loop would never reach the
        // event loop, where FinalizationRegistry callbacks (the wasm arena's frees) and timers
        // run: it yields to it every YIELD_STEPS steps.
        if (steps % YIELD_STEPS === YIELD_STEPS - 1) await new Promise((r) => setImmediate(r));
        const rows = order.subarray(batch * batchSize, Math.min(n, (batch + 1) * batchSize));
        const t0 = performance.now();
        let stepLoss: number;
        try {
          stepLoss = await runStep(engine, shared, rows, position.t + 1);
        } catch (error) {
          if (!(error instanceof NonFiniteLossError)) throw error;
          throw new DivergenceError(
            position.t + 1,
            epoch + 1,
            lastFiniteLoss,
            "the training loss is",
            optimizer.lr,
          );
        }
        lastFiniteLoss = perRow(stepLoss, rows.length);
        position.t++;
        const elapsed = (performance.now() - t0) / 1000;
        stepSeconds += elapsed;
        samples += rows.length;
        stepRates.add(rows.length, elapsed);
        steps++;
        lossSum += stepLoss;
        epochSamples += rows.length;
        run.onStep?.({
          epoch,
          batch,
          batchesPerEpoch,
          batchSize,
          step: position.t,
          loss: perRow(stepLoss, rows.length),
          samplesPerSecond: samples / stepSeconds,
        });
      }
      if (stopped) {
        // The mean over the steps of the epoch in progress, not NaN, when it was cut short.
        if (epochSamples > 0) trainLoss = perRow(lossSum, epochSamples);
        break;
      }
      trainLoss = perRow(lossSum, Math.max(epochSamples, 1));
      const epochParams = currentParams(shared, trainPlan.paramShapes);
      if (!epochParams.every((t) => t.data.every(Number.isFinite))) {
        throw new DivergenceError(
          position.t,
          epoch + 1,
          lastFiniteLoss,
          "the parameters are",
          optimizer.lr,
        );
      }
      const record: RunEpoch = { epoch: epoch + 1, trainLoss };
      if (run.evaluateEpoch) {
        const { accuracy, loss } = run.evaluateEpoch(epochParams);
        record.testAccuracy = accuracy;
        record.testLoss = loss;
      }
      position.history.push(record);
      position = {
        epoch: epoch + 1,
        batch: 0,
        t: position.t,
        rngState: afterShuffle,
        history: position.history, // appended in place: a copy per epoch made long runs quadratic
        epochLossSum: 0,
        epochSamples: 0,
      };
      saveCheckpoint(position);
      run.onEpoch?.({ ...record, seconds: (performance.now() - epochStart) / 1000 });
    }
  } finally {
    try {
      await engine.close();
    } finally {
      releaseLock();
    }
  }
  const last = position.history[position.history.length - 1];
  const rates = stepRates.rates();
  return {
    params: currentParams(shared, trainPlan.paramShapes),
    history: position.history,
    steps,
    epochsCompleted: position.epoch,
    stepSeconds,
    samples,
    samplesPerSecond: rates.all,
    coldSamplesPerSecond: rates.cold,
    warmSamplesPerSecond: rates.warm,
    trainLoss: Number.isNaN(trainLoss) ? (last?.trainLoss ?? NaN) : trainLoss,
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
  });
  writeFlat(shared.params[0], initial);
  return { trainPlan, shared };
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

/** Fraction of rows of `data` whose arg-max logit is the label (through {@link evaluate}). */
export function accuracy(
  spec: ModelSpec,
  params: readonly Tensor[],
  data: Dataset,
  chunk = 1000,
): number {
  return testMetrics(spec, params, data, chunk).accuracy;
}

/** The accuracy and the mean cross-entropy of the model over `data`'s rows. */
export function testMetrics(
  spec: ModelSpec,
  params: readonly Tensor[],
  data: Dataset,
  chunk = 1000,
): { accuracy: number; loss: number } {
  const X = variable("X");
  const paramNodes = paramSpecs(spec).map((p) => variable(p.name));
  const dtype = params[0].dtype;
  const images = data.X.dtype === dtype ? data.X : data.X.clone({ dtype });
  // Rows per chunk so that a chunk's widest activation stays near EVAL_ACTIVATION_BYTES: a
  // 1000-row chunk of a 200,000-unit layer would take 800 MB of WebAssembly memory at once.
  const widest = spec.arch ? architectureOf(spec).widestPerRow : Math.max(...spec.sizes);
  const rowsPerChunk = Math.max(
    1,
    Math.floor(EVAL_ACTIVATION_BYTES / (widest * (dtype === "float32" ? 4 : 8))),
  );
  const [logits] = evaluate([forward(spec, X, paramNodes)], new Map([[X, images]]), {
    batchSize: Math.min(chunk, rowsPerChunk),
    feeds: new Map(paramNodes.map((p, i) => [p, params[i]])),
  });
  const [n, classes] = [data.X.shape[0], logits.shape[1]];
  let correct = 0;
  let loss = 0;
  const z = logits.data;
  for (let r = 0; r < n; r++) {
    const row = r * classes;
    let best = 0;
    for (let c = 1; c < classes; c++) if (z[row + c] > z[row + best]) best = c;
    if (best === data.y[r]) correct++;
    // -log softmax at the label: log-sum-exp shifted by the row's largest logit.
    let total = 0;
    for (let c = 0; c < classes; c++) total += Math.exp(z[row + c] - z[row + best]);
    loss += Math.log(total) - (z[row + data.y[r]] - z[row + best]);
  }
  // Evaluation-sized plain arrays are not reused by training steps: hand them back to the GC.
  // The backend's are kept for the next epoch's evaluation: its memory never shrinks, and
  // dropped blocks wait for finalizers the loop rarely lets run, so each evaluation took new
  // ones (measured: +50 MB of RSS per epoch on the tutorial's cnn; flat since).
  clearPool("plain");
  return n > 0 ? { accuracy: correct / n, loss: loss / n } : { accuracy: NaN, loss: NaN };
}

/** The `extra.kind` of a checkpoint file (a parameter file has none). */
export const CHECKPOINT_KIND = "adjoint-checkpoint";

function writeCheckpoint(
  checkpoint: CheckpointSpec,
  shared: SharedState,
  shapes: readonly number[][],
  at: Position,
): void {
  const cur = shared.control[CONTROL.current];
  const { names } = checkpoint;
  const tensors = [
    ...splitFlat(shared.params[cur], shapes).map((t, i) => ({ name: names[i], t })),
    ...shared.state.flatMap((pair, k) =>
      splitFlat(pair[cur], shapes).map((t, i) => ({ name: `state${k}.${names[i]}`, t })),
    ),
  ];
  saveParams(checkpoint.path, {
    format: "adjoint-params",
    version: PARAMS_VERSION,
    model: checkpoint.model,
    params: tensors.map(({ name, t }) => ({
      name,
      shape: [...t.shape],
      dtype: t.dtype,
      data: t.data,
    })),
    extra: { kind: CHECKPOINT_KIND, position: at, fingerprint: checkpoint.fingerprint },
  });
}

/** What a checkpoint's position must fit: the run that resumes it. */
interface RunShape {
  epochs: number;
  batchesPerEpoch: number;
  batchSize: number;
}

function readCheckpoint(
  checkpoint: CheckpointSpec,
  shared: SharedState,
  shapes: readonly number[][],
  run: RunShape,
): Position {
  const { path, fingerprint } = checkpoint;
  const specs = checkpoint.names.map((name, i) => ({ name, shape: shapes[i] }));
  const record = loadParams(path);
  const extra = record.extra as
    { kind?: string; position?: unknown; fingerprint?: unknown } | undefined;
  if (extra?.kind !== CHECKPOINT_KIND || extra.position === undefined) {
    throw new Error(`${path}: not a training checkpoint (a parameter file? use --load for those)`);
  }
  checkFingerprint(path, extra.fingerprint, fingerprint);
  const position = checkPosition(path, extra.position, run);
  const byName = new Map(record.params.map((p) => [p.name, p]));
  const expected = new Set<string>();
  const take = (name: string, shape: readonly number[]) => {
    expected.add(name);
    const p = byName.get(name);
    if (!p) throw new Error(`${path}: checkpoint lacks tensor "${name}"`);
    if (p.dtype !== shared.dtype)
      throw new Error(`${path}: tensor "${name}" is ${p.dtype}, the run uses ${shared.dtype}`);
    if (JSON.stringify(p.shape) !== JSON.stringify(shape))
      throw new Error(
        `${path}: tensor "${name}" has shape [${p.shape}], the model needs [${shape}]`,
      );
    return new Tensor(p.data, p.shape);
  };
  const params = specs.map((s) => take(s.name, s.shape));
  const state = shared.state.map((_, k) => specs.map((s) => take(`state${k}.${s.name}`, s.shape)));
  const unexpected = record.params.filter((p) => !expected.has(p.name)).map((p) => p.name);
  if (unexpected.length > 0) {
    throw new Error(
      `${path}: checkpoint holds tensors this run does not have: ${unexpected.map((n) => JSON.stringify(n)).join(", ")}`,
    );
  }
  shared.control[CONTROL.current] = 0;
  writeFlat(shared.params[0], params);
  shared.state.forEach((pair, k) => writeFlat(pair[0], state[k]));
  return position;
}

/** Throws naming each setting in which a checkpoint's run differs from this one. */
function checkFingerprint(path: string, saved: unknown, current: Record<string, unknown>): void {
  if (JSON.stringify(saved) === JSON.stringify(current)) return;
  if (typeof saved !== "object" || saved === null || Array.isArray(saved)) {
    throw new Error(`${path}: checkpoint has no valid run description (fingerprint)`);
  }
  const savedRecord = saved as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(savedRecord), ...Object.keys(current)])];
  const differences = keys
    .filter((k) => JSON.stringify(savedRecord[k]) !== JSON.stringify(current[k]))
    .map(
      (k) =>
        `${k}: checkpoint ${JSON.stringify(savedRecord[k]) ?? "(none)"}, this run ${JSON.stringify(current[k]) ?? "(none)"}`,
    );
  throw new Error(
    `${path}: checkpoint was written by a run with other settings; ${differences.join("; ")}`,
  );
}

/** A checkpoint's position, every field checked for type and range against the resuming run. */
function checkPosition(path: string, value: unknown, run: RunShape): Position {
  const fail = (what: string): never => {
    throw new Error(`${path}: corrupt checkpoint position: ${what}`);
  };
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return fail(`expected an object, got ${JSON.stringify(value)}`);
  }
  const p = value as Record<string, unknown>;
  const keys = ["epoch", "batch", "t", "rngState", "history", "epochLossSum", "epochSamples"];
  for (const key of keys) if (!(key in p)) fail(`${key} is missing`);
  for (const key of Object.keys(p)) if (!keys.includes(key)) fail(`unknown field "${key}"`);
  const integer = (key: string, lo: number, hi: number): number => {
    const v = p[key];
    if (!Number.isSafeInteger(v) || (v as number) < lo || (v as number) > hi) {
      fail(`${key} is ${JSON.stringify(v)}, expected an integer from ${lo} to ${hi}`);
    }
    return v as number;
  };
  const epoch = integer("epoch", 0, Number.MAX_SAFE_INTEGER);
  if (epoch > run.epochs) {
    throw new Error(
      `${path}: checkpoint is at epoch ${epoch}, past this run's ${run.epochs} epochs (--epochs)`,
    );
  }
  const batch = integer("batch", 0, run.batchesPerEpoch - 1);
  const t = integer("t", 0, Number.MAX_SAFE_INTEGER);
  if (t !== epoch * run.batchesPerEpoch + batch) {
    fail(
      `step ${t} does not match epoch ${epoch}, batch ${batch} (${run.batchesPerEpoch} batches per epoch)`,
    );
  }
  integer("epochSamples", batch * run.batchSize, batch * run.batchSize);
  if (
    typeof p.epochLossSum !== "number" ||
    !Number.isFinite(p.epochLossSum) ||
    p.epochLossSum < 0
  ) {
    fail(`epochLossSum is ${JSON.stringify(p.epochLossSum)}, expected a finite sum >= 0`);
  }
  if (batch === 0 && p.epochLossSum !== 0) fail("epochLossSum is not 0 at the start of an epoch");
  try {
    new Rng(1).setState(p.rngState as number[]);
  } catch (error) {
    fail(`rngState: ${(error as Error).message}`);
  }
  const history = p.history;
  if (!Array.isArray(history) || history.length !== epoch) {
    fail(`history must list the ${epoch} completed epochs, got ${JSON.stringify(history)}`);
  }
  (history as unknown[]).forEach((entry, i) => {
    const e = entry as Record<string, unknown> | null;
    const accuracyOk =
      e?.testAccuracy === undefined ||
      (typeof e.testAccuracy === "number" && e.testAccuracy >= 0 && e.testAccuracy <= 1);
    // NaN where the loss was not finite: JSON writes it as null.
    const lossOk =
      e?.testLoss === undefined || e.testLoss === null || typeof e.testLoss === "number";
    const ok =
      typeof e === "object" &&
      e !== null &&
      Object.keys(e).length ===
        2 + (e.testAccuracy === undefined ? 0 : 1) + (e.testLoss === undefined ? 0 : 1) &&
      lossOk &&
      e.epoch === i + 1 &&
      typeof e.trainLoss === "number" &&
      Number.isFinite(e.trainLoss) &&
      accuracyOk;
    if (!ok) fail(`history[${i}] is ${JSON.stringify(entry)}`);
  });
  return p as unknown as Position;
}

/**
 * Takes the checkpoint path for this run: removes temp files a killed writer left, refuses an
 * existing checkpoint unless the run resumes or overwrites it, and holds `path.lock` (created
 * exclusively, with this pid; a dead process's lock is taken over with a notice). Returns the
 * function that releases the lock.
 */
function claimCheckpoint(options: CheckpointSpec): () => void {
  const { path } = options;
  const notice = options.onNotice ?? (() => {});
  const release = acquireLock(path, notice);
  try {
    const removed = removeStaleTempFiles(path);
    if (removed.length > 0) {
      notice(`removed ${removed.length} temp file(s) a killed run left: ${removed.join(", ")}`);
    }
    const exists = existsSync(path);
    if (options.resume && !exists) {
      throw new Error(`checkpoint ${path} does not exist: there is nothing to resume`);
    }
    if (exists && !options.resume && !options.overwrite) {
      throw new Error(
        `checkpoint ${path} already exists: continue it with --resume, or replace it with --overwrite`,
      );
    }
  } catch (error) {
    release();
    throw error;
  }
  return release;
}

/** Creates `path.lock` exclusively with this pid; returns the function that removes it. */
export function acquireLock(path: string, notice: (line: string) => void = () => {}): () => void {
  const lockPath = `${path}.lock`;
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(lockPath, "wx", 0o644);
      try {
        // The owner's start time beside its pid: a reused pid is not mistaken for the owner.
        const started = processStat(process.pid)?.startTime;
        writeSync(fd, started === undefined ? `${process.pid}\n` : `${process.pid} ${started}\n`);
      } finally {
        closeSync(fd);
      }
      break;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "EEXIST" || attempt > 0) {
        throw new Error(`cannot lock ${path}: ${(error as Error).message}`, { cause: error });
      }
      let text = "";
      try {
        text = readFileSync(lockPath, "utf8");
      } catch {
        // Removed in between: try again.
      }
      const match = /^(\d+)(?: (\d+))?\n?$/.exec(text);
      const pid = match ? Number(match[1]) : undefined;
      if (pid !== undefined && pid !== process.pid && processAlive(pid, match?.[2])) {
        throw new Error(
          `checkpoint ${path} is in use by process ${pid} (lock file ${lockPath}); wait for that run to end or choose another --checkpoint`,
          { cause: error },
        );
      }
      if (pid === process.pid) {
        throw new Error(`checkpoint ${path} is already in use by another run in this process`, {
          cause: error,
        });
      }
      notice(
        `taking over the stale lock ${lockPath} (${pid === undefined ? "unreadable" : `process ${pid} is not running`})`,
      );
      rmSync(lockPath, { force: true });
    }
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    try {
      rmSync(lockPath, { force: true });
    } catch (error) {
      // NOTE: never thrown: a release runs in `finally` after a failure (a directory made
      // read-only mid-run), and the error to report is that failure, not this one. The lock
      // names this pid, so the next run takes it over once this process is gone.
      notice(`could not remove the lock ${lockPath}: ${(error as Error).message}`);
    }
  };
}
