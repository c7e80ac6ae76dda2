/** `npm run train-parallel`: train logistic regression or an MLP on digits or MNIST. */
import { accessSync, constants as fsConstants, existsSync, statSync } from "node:fs";
import { availableParallelism, totalmem } from "node:os";
import { dirname } from "node:path";
import { pathToFileURL } from "node:url";
import { MAX_TENSOR_SIZE, Tensor, type DType } from "../tensor/tensor.js";
import { stateCount } from "../tensor/kernels/optimizer.js";
import {
  loadDigits,
  loadMnist,
  randomSplit,
  standardize,
  stratifiedSplit,
  type Split,
} from "../train/data.js";
import { inProcessEngine, type EngineFactory } from "../train/engine.js";
import { poolEngine } from "../train/parallel/pool.js";
import type { FaultInjection } from "../runtime/protocol.js";
import { backend } from "../tensor/backend.js";
import { useBackend } from "../tensor/backends.js";
import { modelSpec, paramSpecs, type ModelSpec } from "../train/models.js";
import type { OptimizerConfig } from "../train/optimizers.js";
import { renderCurvesSvg } from "../train/plot.js";
import {
  loadParams,
  paramsHash,
  PARAMS_VERSION,
  saveParams,
  writeFileAtomic,
} from "../train/serialize.js";
import { train, type StepInfo, type TrainResult } from "../train/trainer.js";
import { parseTrainArgs, usage, UsageError, type TrainOptions } from "./args.js";

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
}

/** The defaults for a data set and model. */
export function defaultsFor(
  dataset: TrainOptions["dataset"],
  model: TrainOptions["model"],
): Defaults {
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
      };
}

/**
 * Micro-shards per batch: set by the model and batch size alone, never by the thread count or
 * the machine (so any --threads, anywhere, gives the same bits). A step too small to gain from
 * threads is one shard; larger steps split into shards of at least 32 rows, at most 16 shards:
 * smaller shards cost more in per-shard overhead and small-matrix kernels than threads win back
 * (measured: MLP 784-256-10, batch 64, 2 threads: 8 shards 17.9k samples/s, 2 shards 24.0k,
 * one shard in-process 18.7k).
 */
export function shardCountFor(spec: ModelSpec, batchSize: number): number {
  if (estimatedStepMs(spec, batchSize) < MIN_PARALLEL_STEP_MS) return 1;
  return Math.max(1, Math.min(16, Math.floor(batchSize / MIN_SHARD_ROWS)));
}

/** The smallest micro-shard the default split makes. */
const MIN_SHARD_ROWS = 32;

/** Milliseconds of kernel work in one step at the active backend's measured 1-thread rate. */
export function estimatedStepMs(spec: ModelSpec, batchSize: number): number {
  const gflops = backend().name === "js" ? 0.7 : 20; // bench:train, MLP step, 1 thread
  return stepFlops(spec, batchSize) / (gflops * 1e6);
}

/** Loads and splits the data set (seeded, stratified for MNIST, 80/20 for digits). */
export function loadSplit(
  dataset: TrainOptions["dataset"],
  dtype: DType,
  seed: number,
  scale: boolean,
): Split {
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
) => Promise<{ factory: EngineFactory; threads: number; reason: string }>;

/** Floating-point operations of one training step (forward 2, backward 4 per weight and row). */
export function stepFlops(spec: ModelSpec, batchSize: number): number {
  let weights = 0;
  for (let l = 1; l < spec.sizes.length; l++) weights += spec.sizes[l - 1] * spec.sizes[l];
  return 6 * batchSize * weights;
}

/** Steps estimated shorter than this run in-process: splitting them costs more than it gains. */
const MIN_PARALLEL_STEP_MS = 0.5;

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
  return { factory: poolEngine({ threads, stepTimeoutMs, fault }), threads, reason };
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

/** Output sinks, so tests can capture what the CLI prints. */
export interface CliIO {
  out: (line: string) => void;
  err: (line: string) => void;
  progress?: (text: string) => void;
  isTTY: boolean;
}

/** Runs the trainer CLI; resolves to the process exit code. */
export async function main(
  argv: readonly string[],
  io: CliIO,
  choose: EngineChooser = chooseEngine,
): Promise<number> {
  let opts: TrainOptions;
  try {
    opts = parseTrainArgs(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.err(`error: ${error.message}`);
    io.err(usage());
    return 2;
  }
  if (opts.help) {
    io.out(usage());
    return 0;
  }
  // Every check that can refuse the run comes before any data is loaded or step taken.
  const refuse = (message: string): number => {
    io.err(`error: ${message}`);
    return 2;
  };
  const pathProblem = checkOutputPaths(opts);
  if (pathProblem) return refuse(pathProblem);
  useBackend(opts.backend, (error) =>
    io.err(`note: WASM backend unavailable, using js: ${error.message}`),
  );
  const defaults = defaultsFor(opts.dataset, opts.model);
  const hidden = opts.model === "mlp" ? (opts.hidden ?? defaults.hidden) : [];
  const epochs = opts.epochs ?? defaults.epochs;
  const batchSize = opts.batchSize ?? defaults.batchSize;
  if (opts.microShards !== undefined && opts.microShards > batchSize) {
    return refuse(`--micro-shards ${opts.microShards} exceeds the batch size ${batchSize}`);
  }
  const side = opts.dataset === "digits" ? 8 : 28;
  const maxShift = opts.augment ?? defaults.augment;
  if (2 * maxShift >= side) {
    return refuse(
      `--augment ${maxShift}: shifts of up to ${maxShift} px move half or more of the ${side}x${side} ${opts.dataset} images out of the frame; use at most ${Math.ceil(side / 2) - 1}`,
    );
  }
  const optimizer: OptimizerConfig = {
    kind: opts.optimizer ?? defaults.optimizer,
    lr: opts.lr ?? (opts.optimizer && opts.optimizer !== defaults.optimizer ? 0.05 : defaults.lr),
    weightDecay: opts.weightDecay ?? defaults.weightDecay,
  };
  const features = opts.dataset === "digits" ? 64 : 784;
  const classes = 10;
  const memoryProblem = checkModelMemory(
    opts.hidden === undefined ? "--model" : "--hidden",
    modelSpec(opts.model, features, hidden, classes),
    opts.dtype,
    optimizer.kind,
    opts.microShards ?? 16,
  );
  if (memoryProblem) return refuse(memoryProblem);
  const split = loadSplit(opts.dataset, opts.dtype, opts.seed, defaults.standardize);
  const trainRows = split.train.X.shape[0];
  if (batchSize > trainRows) {
    return refuse(
      `--batch-size ${batchSize} is larger than the ${trainRows} training images of ${opts.dataset}; use at most ${trainRows}`,
    );
  }
  if (opts.lrSchedule === "cosine") {
    const stepsPerEpoch = Math.ceil(split.train.X.shape[0] / batchSize);
    const totalSteps = Math.min(opts.steps ?? Infinity, epochs * stepsPerEpoch);
    optimizer.schedule = { kind: "cosine", totalSteps };
  }
  const augment =
    maxShift > 0 ? { width: side, height: side, maxShift, seed: opts.seed } : undefined;
  const spec = modelSpec(opts.model, split.train.X.shape[1], hidden, split.train.classes);
  const shardCount = opts.microShards ?? shardCountFor(spec, batchSize);
  let threads = opts.threads ?? "auto";
  if (threads !== "auto" && threads > shardCount) {
    io.err(
      `note: --threads ${threads} but a step has ${shardCount} micro-shard${shardCount === 1 ? "" : "s"} (batch ${batchSize}): using ${shardCount} thread${shardCount === 1 ? "" : "s"}; more would idle (--micro-shards or --batch-size give more)`,
    );
    threads = shardCount;
  }
  if (threads !== "auto" && threads > availableParallelism()) {
    io.err(
      `note: --threads ${threads} on ${availableParallelism()} cores: threads will share cores, which is usually slower than --threads ${availableParallelism()} (results are identical)`,
    );
  }

  let initialParams: Tensor[] | undefined;
  if (opts.load) initialParams = readParams(opts.load, spec, opts.dtype);

  const engine = await choose(threads, spec, batchSize, opts.stepTimeoutMs, shardCount);
  const tag = `${opts.dataset} ${opts.model} [${spec.sizes.join("-")}] ${opts.dtype}`;
  io.out(
    `adjoint: ${tag}, ${optimizer.kind} lr ${optimizer.lr}, batch ${batchSize} (${shardCount} micro-shard${shardCount === 1 ? "" : "s"}), ` +
      `${epochs} epochs, seed ${opts.seed}${augment ? `, shifts up to ${maxShift} px` : ""}, ${backend().name} kernels, threads ${engine.threads}: ${engine.reason}`,
  );

  let stopSignal: string | undefined;
  const onSignal = (signal: string) => {
    if (stopSignal) process.exit(130); // a second ^C: stop now
    stopSignal = signal;
    io.err(`\n${signal}: stopping at the next step boundary`);
  };
  const sigint = () => onSignal("SIGINT");
  const sigterm = () => onSignal("SIGTERM");
  process.on("SIGINT", sigint);
  process.on("SIGTERM", sigterm);
  let lastDraw = 0;
  let result: TrainResult;
  try {
    result = await train({
      spec,
      split,
      dtype: opts.dtype,
      batchSize,
      epochs,
      maxSteps: opts.steps,
      optimizer,
      seed: opts.seed,
      shardCount,
      createEngine: engine.factory,
      augment,
      initialParams,
      checkpointPath: opts.checkpoint,
      resume: opts.resume,
      overwrite: opts.overwrite,
      onNotice: (line) => io.err(`note: ${line}`),
      fingerprint: {
        backend: backend().name,
        dataset: opts.dataset,
        spec,
        dtype: opts.dtype,
        batchSize,
        optimizer,
        seed: opts.seed,
        shardCount,
        augment: maxShift,
        // NOTE: not --load: --resume may not be combined with it (the checkpoint holds the
        // parameters), so a run started from --load could otherwise never be resumed.
      },
      shouldStop: () => stopSignal !== undefined,
      onStep: (info) => {
        if (!io.isTTY || !io.progress) return;
        const now = performance.now();
        if (now - lastDraw < 100 && info.batch + 1 < info.batchesPerEpoch) return;
        lastDraw = now;
        io.progress(progressBar(info, epochs));
      },
      onEpoch: (record) => {
        if (io.isTTY && io.progress) io.progress("");
        io.out(
          `epoch ${String(record.epoch).padStart(3)}/${epochs}  train loss ${record.trainLoss.toFixed(4)}  ` +
            `test accuracy ${(record.testAccuracy * 100).toFixed(2)}%  ${record.seconds.toFixed(2)} s`,
        );
      },
    });
  } finally {
    process.off("SIGINT", sigint);
    process.off("SIGTERM", sigterm);
  }

  const hash = paramsHash(result.params);
  if (opts.save) {
    saveParams(opts.save, {
      format: "adjoint-params",
      version: PARAMS_VERSION,
      model: { ...spec },
      params: result.params.map((t, i) => ({
        name: paramSpecs(spec)[i].name,
        shape: [...t.shape],
        dtype: t.dtype,
        data: t.data,
      })),
    });
  }
  if (opts.plot) writeFileAtomic(opts.plot, renderCurvesSvg(result.history, `adjoint: ${tag}`));
  const samplesPerSecond = result.stepSeconds > 0 ? result.samples / result.stepSeconds : 0;
  io.out(
    `${stopSignal ? `stopped by ${stopSignal}` : "done"}: ${result.steps} steps, ${samplesPerSecond.toFixed(0)} samples/s, ` +
      `train loss ${result.trainLoss.toFixed(4)}, test accuracy ${(result.testAccuracy * 100).toFixed(2)}%, params ${hash.slice(0, 16)}`,
  );
  if (opts.json) {
    io.out(
      JSON.stringify({
        dataset: opts.dataset,
        model: opts.model,
        sizes: spec.sizes,
        threads: result.threads,
        epochs: result.epochsCompleted,
        steps: result.steps,
        batchSize,
        shardCount,
        augment: maxShift,
        dtype: opts.dtype,
        backend: backend().name,
        optimizer: optimizer.kind,
        lr: optimizer.lr,
        seed: opts.seed,
        seconds: result.stepSeconds,
        samplesPerSecond,
        trainLoss: result.trainLoss,
        testAccuracy: result.testAccuracy,
        paramsHash: hash,
        stopped: stopSignal ?? null,
      }),
    );
  }
  return stopSignal ? 130 : 0;
}

/** Reads a --load file and checks it fits the model. */
function readParams(path: string, spec: ModelSpec, dtype: DType): Tensor[] {
  const record = loadParams(path);
  const specs = paramSpecs(spec);
  const sizes = (record.model as { sizes?: unknown }).sizes;
  if (JSON.stringify(sizes) !== JSON.stringify(spec.sizes)) {
    throw new Error(
      `${path}: parameters are for a model of sizes ${JSON.stringify(sizes)}, this run builds [${spec.sizes.join(",")}]`,
    );
  }
  return specs.map(({ name, shape }) => {
    const entry = record.params.find((p) => p.name === name);
    if (!entry) throw new Error(`${path}: no parameter "${name}"`);
    if (JSON.stringify(entry.shape) !== JSON.stringify(shape)) {
      throw new Error(
        `${path}: parameter "${name}" has shape [${entry.shape}], expected [${shape}]`,
      );
    }
    return new Tensor(entry.data, shape).clone({ dtype });
  });
}

/**
 * Why an output path of the run cannot be written (missing or non-directory parent, a
 * directory given as a file, a read-only or unwritable directory), or why the checkpoint may not
 * be used as asked; undefined when all is well. Checked before training, so nothing is lost.
 */
export function checkOutputPaths(opts: TrainOptions): string | undefined {
  const outputs: [string, string | undefined][] = [
    ["--save", opts.save],
    ["--plot", opts.plot],
    ["--checkpoint", opts.checkpoint],
  ];
  for (const [option, path] of outputs) {
    if (path === undefined) continue;
    const problem = outputPathProblem(path);
    if (problem) return `${option} ${path}: ${problem}`;
  }
  if (opts.checkpoint !== undefined) {
    const exists = existsSync(opts.checkpoint);
    if (opts.resume && !exists) {
      return `--resume: checkpoint ${opts.checkpoint} does not exist: there is nothing to resume`;
    }
    if (exists && !opts.resume && !opts.overwrite) {
      return `--checkpoint ${opts.checkpoint}: the file exists; continue it with --resume, or replace it with --overwrite`;
    }
  }
  return undefined;
}

function outputPathProblem(path: string): string | undefined {
  if (existsSync(path) && statSync(path).isDirectory()) return "is a directory, not a file name";
  const dir = dirname(path);
  if (!existsSync(dir)) return `the directory ${dir} does not exist`;
  if (!statSync(dir).isDirectory()) return `${dir} is not a directory`;
  try {
    accessSync(dir, fsConstants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === "EROFS" ? "the file system is read-only" : "permission denied";
    return `cannot write in ${dir}: ${why} (${code})`;
  }
  return undefined;
}

/**
 * Why a model is too large to train here (a weight matrix over one tensor's limit, or more
 * memory than the machine has for parameters, gradients and optimizer state); else undefined.
 */
export function checkModelMemory(
  option: string,
  spec: ModelSpec,
  dtype: DType,
  optimizer: OptimizerConfig["kind"],
  shards: number,
): string | undefined {
  const counts = paramSpecs(spec).map((p) => p.shape.reduce((a, b) => a * b, 1));
  const parameters = counts.reduce((a, b) => a + b, 0);
  const largest = Math.max(...counts);
  const describeModel = `${option} gives a [${spec.sizes.join("-")}] model with ${parameters.toLocaleString("en-US")} parameters`;
  if (largest > MAX_TENSOR_SIZE) {
    return `${describeModel}: one weight matrix of ${largest.toLocaleString("en-US")} values exceeds the ${MAX_TENSOR_SIZE.toLocaleString("en-US")} one tensor can hold`;
  }
  // Two parameter buffers, two per optimizer state, one gradient slot per micro-shard.
  const copies = 2 + 2 * stateCount(optimizer) + shards;
  const bytes = parameters * (dtype === "float32" ? 4 : 8) * copies;
  const available = totalmem();
  if (bytes > available / 2) {
    const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
    return `${describeModel}: training it needs about ${gib(bytes)} (${dtype} parameters, gradients and ${optimizer} state), more than half of this machine's ${gib(available)}`;
  }
  return undefined;
}

/** One line of progress: epoch, bar, step, loss, samples/s, ETA. */
function progressBar(info: StepInfo, epochs: number): string {
  const done = (info.batch + 1) / info.batchesPerEpoch;
  const width = 24;
  const filled = Math.round(done * width);
  const remainingSamples = (info.batchesPerEpoch - info.batch - 1) * info.batchSize;
  const etaSeconds = info.samplesPerSecond > 0 ? remainingSamples / info.samplesPerSecond : 0;
  return (
    `epoch ${info.epoch + 1}/${epochs} [${"=".repeat(filled)}${" ".repeat(width - filled)}] ` +
    `step ${info.step} loss ${info.loss.toFixed(4)} ${info.samplesPerSecond.toFixed(0)} samples/s ETA ${etaSeconds.toFixed(1)} s`
  );
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const io: CliIO = {
    out: (line) => console.log(line),
    err: (line) => console.error(line),
    progress: (text) => process.stdout.write(`\r\x1b[2K${text}`),
    isTTY: process.stdout.isTTY === true,
  };
  main(process.argv.slice(2), io).then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
      process.exit(1);
    },
  );
}
