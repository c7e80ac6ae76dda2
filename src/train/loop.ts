/**
 * The one training loop, whatever built the graph (train() for the built-in models, fit() for any
 * graph): epochs of shuffled mini-batches through a step engine, a checkpoint after every epoch
 * and at a stop, resume, and the divergence stop.
 */
import type { Tensor } from "../tensor/tensor.js";
import type { OptimizerConfig } from "./parallel/optimizer-kernels.js";
import type { EngineFactory, StepEngine } from "./parallel/engine.js";
import {
  currentParams,
  NonFiniteLossError,
  runStep,
  type SharedState,
  type TrainPlan,
} from "./parallel/state.js";
import { Checkpoint, type CheckpointSpec, type Position } from "./checkpoint.js";
import { StepRates } from "./rates.js";
import type { Rng } from "./random.js";

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

/** One epoch of the loop's history: its loss, and the test metric where the run has one. */
export interface RunEpoch {
  epoch: number;
  trainLoss: number;
  testAccuracy?: number;
  /** The mean cross-entropy over the test rows. */
  testLoss?: number;
}

/** An epoch of a run that measures its test accuracy (the built-in models'; what --plot draws). */
export type EpochRecord = RunEpoch & { testAccuracy: number };

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

/** Steps between the training loop's yields to the event loop. */
const YIELD_STEPS = 256;

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
  const checkpoint =
    run.checkpoint && Checkpoint.open(run.checkpoint, shared, trainPlan.paramShapes);
  const releaseLock = () => checkpoint?.release();
  const saveCheckpoint = (at: Position) => checkpoint?.save(at);
  const perRow = (sum: number, rows: number) => (run.meanLoss ? sum / rows : sum);
  let engine: StepEngine;
  try {
    if (checkpoint?.resuming) {
      position = checkpoint.resume({ epochs: run.epochs, batchesPerEpoch, batchSize });
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
