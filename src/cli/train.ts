#!/usr/bin/env node
/** `npm run train-parallel` and `adjoint-train`: train logistic regression or an MLP on digits or MNIST. */
import { existsSync, realpathSync } from "node:fs";
import { availableParallelism, totalmem } from "node:os";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { firstNonFinite, MAX_TENSOR_SIZE, Tensor, type DType } from "../tensor/tensor.js";
import { stateCount } from "../train/parallel/optimizer-kernels.js";
import {
  chooseEngine,
  defaultsFor,
  loadSplit,
  shardCountFor,
  type EngineChooser,
} from "../train/config.js";
import { backend } from "../tensor/active.js";
import { useBackend } from "../backends/select.js";
import { architectureOf, modelSpec, paramSpecs, type ModelSpec } from "../train/models.js";
import type { OptimizerConfig } from "../train/optimizers.js";
import { renderCurvesSvg } from "../train/plot.js";
import { exportModelOnnx } from "../train/export.js";
import { traceModelStep } from "../train/trace.js";
import type { Split } from "../train/data.js";
import { loadParams, paramsHash, PARAMS_VERSION, saveParams } from "../train/serialize.js";
import { outputPathProblem, writeFileAtomic } from "../train/files.js";
import { accuracy, EVAL_ACTIVATION_BYTES } from "../train/metrics.js";
import { CHECKPOINT_KIND } from "../train/checkpoint.js";
import { train, type TrainResult } from "../train/trainer.js";
import { type StepInfo } from "../train/loop.js";
import { parseTrainArgs, usage, UsageError, type TrainOptions } from "./args.js";
import { mnistDataDir, MNIST_FULL_MISSING } from "../train/idx.js";

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
    io.err("run with --help for the options");
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
  const defaults = defaultsFor(opts.dataset, opts.model, opts.arch);
  if (opts.dataset === "mnist-full" && mnistDataDir() === undefined) {
    return refuse(`--dataset mnist-full: ${MNIST_FULL_MISSING}`);
  }
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
    modelSpec(opts.model, features, hidden, classes, defaults.arch),
    opts.dtype,
    optimizer.kind,
    opts.microShards ?? 16,
    batchSize,
    typeof opts.threads === "number"
      ? opts.threads
      : Math.min(availableParallelism(), opts.microShards ?? 16),
  );
  if (memoryProblem) return refuse(memoryProblem);
  const split = loadSplit(opts.dataset, opts.dtype, opts.seed, defaults.standardize);
  const trainRows = split.train.X.shape[0];
  if (batchSize > trainRows) {
    return refuse(
      `--batch-size ${batchSize} is larger than the ${trainRows} training images of ${opts.dataset}; use at most ${trainRows}`,
    );
  }
  if ((opts.lrSchedule ?? defaults.schedule) === "cosine") {
    const stepsPerEpoch = Math.ceil(split.train.X.shape[0] / batchSize);
    const totalSteps = Math.min(opts.steps ?? Infinity, epochs * stepsPerEpoch);
    optimizer.schedule = { kind: "cosine", totalSteps };
  }
  const augment =
    maxShift > 0 ? { width: side, height: side, maxShift, seed: opts.seed } : undefined;
  const spec = modelSpec(
    opts.model,
    split.train.X.shape[1],
    hidden,
    split.train.classes,
    defaults.arch,
  );
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

  const tag = `${opts.dataset} ${describeModel(spec)} ${opts.dtype}`;
  // The fields every --json summary starts with.
  const described = {
    dataset: opts.dataset,
    model: opts.model,
    ...(spec.arch ? { arch: spec.arch } : {}),
    sizes: spec.sizes,
  };
  let initialParams: Tensor[] | undefined;
  if (opts.load) initialParams = readParams(opts.load, spec, opts.dtype);
  if (epochs === 0 && initialParams) {
    // Evaluate a saved model without training: the test split of the same seed.
    const testAccuracy = accuracy(spec, initialParams, split.test);
    const hash = paramsHash(initialParams);
    writeModelFiles(opts, spec, initialParams, split, batchSize, tag);
    io.out(
      `evaluated ${opts.load}: ${opts.dataset} ${describeModel(spec)}, test accuracy ${(testAccuracy * 100).toFixed(2)}% on ${split.test.X.shape[0]} images, params ${hash.slice(0, 16)}`,
    );
    if (opts.json) {
      io.out(
        JSON.stringify({
          ...described,
          epochs: 0,
          steps: 0,
          testAccuracy,
          paramsHash: hash,
        }),
      );
    }
    return 0;
  }

  const engine = await choose(threads, spec, batchSize, opts.stepTimeoutMs, shardCount);
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
      // Written as soon as the steps end, before the evaluation of a stopped run can fail.
      onTrained: (params) => {
        if (!opts.save) return;
        saveParams(opts.save, {
          format: "adjoint-params",
          version: PARAMS_VERSION,
          model: { ...spec },
          params: params.map((t, i) => ({
            name: paramSpecs(spec)[i].name,
            shape: [...t.shape],
            dtype: t.dtype,
            data: t.data,
          })),
        });
      },
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
        const now = performance.now();
        const totalSteps = Math.min(opts.steps ?? Infinity, epochs * info.batchesPerEpoch);
        if (io.isTTY && io.progress) {
          if (now - lastDraw < 100 && info.batch + 1 < info.batchesPerEpoch) return;
          lastDraw = now;
          io.progress(progressBar(info, epochs, totalSteps));
        } else if (now - lastDraw >= PLAIN_PROGRESS_MS) {
          // Not a terminal (a log, a pipe): a plain line now and then in a long epoch.
          if (lastDraw > 0) io.out(progressLine(info, epochs, totalSteps));
          lastDraw = now;
        }
      },
      onEpoch: (record) => {
        if (io.isTTY && io.progress) io.progress("");
        const testLoss =
          record.testLoss === undefined ? "" : `  test loss ${record.testLoss.toFixed(4)}`;
        io.out(
          `epoch ${String(record.epoch).padStart(3)}/${epochs}  train loss ${record.trainLoss.toFixed(4)}  ` +
            `test accuracy ${(record.testAccuracy * 100).toFixed(2)}%${testLoss}  ${record.seconds.toFixed(2)} s`,
        );
      },
    });
  } finally {
    process.off("SIGINT", sigint);
    process.off("SIGTERM", sigterm);
  }

  const hash = paramsHash(result.params);
  if (opts.save) io.out(`wrote ${opts.save} (parameters)`);
  if (opts.plot) {
    writeFileAtomic(opts.plot, renderCurvesSvg(result.history, `adjoint: ${tag}`));
    io.out(`wrote ${opts.plot} (learning curves)`);
  }
  writeModelFiles(opts, spec, result.params, split, batchSize, tag);
  if (opts.exportOnnx) io.out(`wrote ${opts.exportOnnx} (ONNX model)`);
  if (opts.trace) io.out(`wrote ${opts.trace} (trace page)`);
  const { samplesPerSecond } = result;
  io.out(
    `${stopSignal ? `stopped by ${stopSignal}` : "done"}: ${result.steps} steps, ${samplesPerSecond.toFixed(0)} samples/s, ` +
      `train loss ${result.trainLoss.toFixed(4)}, test accuracy ${(result.testAccuracy * 100).toFixed(2)}%, params ${hash.slice(0, 16)}`,
  );
  if (opts.json) {
    io.out(
      JSON.stringify({
        ...described,
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
        coldSamplesPerSecond: result.coldSamplesPerSecond,
        warmSamplesPerSecond: result.warmSamplesPerSecond,
        trainLoss: result.trainLoss,
        testAccuracy: result.testAccuracy,
        paramsHash: hash,
        stopped: stopSignal ?? null,
      }),
    );
  }
  return stopSignal ? 130 : 0;
}

/**
 * The files a run writes from its final (or loaded) parameters: --export-onnx's model, with the
 * data's standardization folded in, and --trace's page of one step on the first training rows.
 */
function writeModelFiles(
  opts: TrainOptions,
  spec: ModelSpec,
  params: Tensor[],
  split: Split,
  batchSize: number,
  tag: string,
): void {
  if (opts.exportOnnx) {
    writeFileAtomic(opts.exportOnnx, exportModelOnnx(spec, params, { scaling: split.scaling }));
  }
  if (opts.trace) {
    const page = traceModelStep(
      spec,
      params,
      split.train,
      Math.min(batchSize, 16),
      `adjoint: ${tag}`,
    );
    writeFileAtomic(opts.trace, page);
  }
}

/** A model as the CLI names it: "mlp [784-256-10]", "cnn wide". */
function describeModel(spec: ModelSpec): string {
  return spec.arch ? `${spec.kind} ${spec.arch}` : `${spec.kind} [${spec.sizes.join("-")}]`;
}

/** Reads a --load file and checks it fits the model. */
function readParams(path: string, spec: ModelSpec, dtype: DType): Tensor[] {
  const record = loadParams(path);
  if ((record.extra as { kind?: unknown } | undefined)?.kind === CHECKPOINT_KIND) {
    throw new Error(
      `${path} is a training checkpoint, not a parameter file: continue its run with --checkpoint ${path} --resume (and the run's other flags), or --save the parameters of a finished run`,
    );
  }
  const specs = paramSpecs(spec);
  const { sizes, kind, arch } = record.model as { sizes?: unknown; kind?: unknown; arch?: unknown };
  const archOf = (arch ?? undefined) as string | undefined;
  if (
    kind !== undefined &&
    (archOf ?? spec.arch) !== undefined &&
    (kind !== spec.kind || archOf !== spec.arch)
  ) {
    const saved = `${String(kind)}${arch ? ` --arch ${String(arch)}` : ""}`;
    throw new Error(
      `${path}: parameters are for --model ${saved}, this run builds ${describeModel(spec)}`,
    );
  }
  // A file from elsewhere (safetensors from Python) describes no model: each tensor is checked.
  if (sizes !== undefined && JSON.stringify(sizes) !== JSON.stringify(spec.sizes)) {
    throw new Error(
      `${path}: parameters are for a model of sizes ${JSON.stringify(sizes)}, this run builds [${spec.sizes.join(",")}]`,
    );
  }
  const unexpected = record.params.find((p) => !specs.some((s) => s.name === p.name));
  if (unexpected) {
    throw new Error(
      `${path}: tensor "${unexpected.name}" is not a parameter of this model (${specs.map((s) => s.name).join(", ")})`,
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
    const bad = firstNonFinite(entry.data);
    if (bad >= 0) {
      throw new Error(
        `${path}: parameter "${name}" holds ${entry.data[bad]} at element ${bad}: a diverged or corrupt file; training from it would be NaN from the first step`,
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
    ["--export-onnx", opts.exportOnnx],
    ["--trace", opts.trace],
    ["--checkpoint", opts.checkpoint],
  ];
  const seen = new Map<string, string>();
  for (const [option, path] of outputs) {
    if (path === undefined) continue;
    const problem = outputPathProblem(path);
    if (problem) return `${option} ${path}: ${problem}`;
    // Two outputs on one file: the later write would replace the earlier (a checkpoint by
    // the parameter file, say).
    const key = resolve(path);
    const other = seen.get(key);
    if (other !== undefined)
      return `${other} and ${option} name the same file ${path}: give each its own`;
    seen.set(key, option);
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

/** The most bytes a wasm32 linear memory can hold. */
const WASM_MEMORY_LIMIT = 2 ** 32;
/** Headroom for the arena's size classes and its doubling scratch over the bytes it holds. */
const ARENA_HEADROOM = 2;

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
  batchSize = 64,
  threads = Math.min(availableParallelism(), shards),
): string | undefined {
  const counts = paramSpecs(spec).map((p) => p.shape.reduce((a, b) => a * b, 1));
  const parameters = counts.reduce((a, b) => a + b, 0);
  const largest = Math.max(...counts);
  const describeModel = `${option} gives a [${spec.sizes.join("-")}] model with ${parameters.toLocaleString("en-US")} parameters`;
  if (largest > MAX_TENSOR_SIZE) {
    return `${describeModel}: one weight matrix of ${largest.toLocaleString("en-US")} values exceeds the ${MAX_TENSOR_SIZE.toLocaleString("en-US")} one tensor can hold`;
  }
  const elem = dtype === "float32" ? 4 : 8;
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
  // Shared: two parameter buffers, two per optimizer state, one gradient slot per micro-shard.
  const shared = parameters * elem * (2 + 2 * stateCount(optimizer) + shards);
  // Each thread's WebAssembly memory: its staged parameters, their packed copy and a shard's
  // gradient, and a shard's activations forward and backward (4 per unit). wasm32 caps it at 4 GiB.
  // Activations per row: every layer's width (a cnn's or transformer's: about 4 of its widest).
  const widths = spec.arch
    ? 4 * architectureOf(spec).widestPerRow
    : spec.sizes.reduce((a, b) => a + b, 0);
  const perThread = elem * (3 * parameters + 4 * Math.ceil(batchSize / shards) * widths);
  if (perThread > WASM_MEMORY_LIMIT) {
    return `${describeModel}: each training thread's WebAssembly memory would need about ${gib(perThread)} (${dtype} weights staged, packed and a gradient, and a micro-shard's activations), over the 4 GiB a wasm32 memory can hold`;
  }
  // The main thread also evaluates: a copy of the weights and chunks of activations, in the same
  // memory, whose blocks come in size classes (up to a quarter larger) and whose scratch grows
  // by doubling: ARENA_HEADROOM covers both (a 784-200000-10 run measured past 4 GiB there).
  const evaluation = elem * parameters + 2 * EVAL_ACTIVATION_BYTES;
  const mainThread = ARENA_HEADROOM * (perThread + evaluation);
  if (mainThread > WASM_MEMORY_LIMIT) {
    return `${describeModel}: the main thread's WebAssembly memory would need about ${gib(mainThread)} (a training thread's ${gib(perThread)} and the evaluation's ${gib(evaluation)}, with room for its size classes), over the 4 GiB a wasm32 memory can hold`;
  }
  const total = shared + threads * perThread + evaluation;
  const available = totalmem();
  if (total > available / 2) {
    return `${describeModel}: training it needs about ${gib(total)} (${dtype} parameters, gradients and ${optimizer} state ${gib(shared)}, ${threads} thread${threads === 1 ? "" : "s"} at ${gib(perThread)} each, evaluation), more than half of this machine's ${gib(available)}`;
  }
  return undefined;
}

/** One line of progress: epoch, bar, step, loss, samples/s, ETA. */
function progressBar(info: StepInfo, epochs: number, totalSteps: number): string {
  const done = (info.batch + 1) / info.batchesPerEpoch;
  const width = 24;
  const filled = Math.round(done * width);
  return (
    `epoch ${info.epoch + 1}/${epochs} [${"=".repeat(filled)}${" ".repeat(width - filled)}] ` +
    `step ${info.step}/${totalSteps} loss ${info.loss.toFixed(4)} ${info.samplesPerSecond.toFixed(0)} samples/s, ${timeLeft(info, totalSteps)} left`
  );
}

/** Milliseconds between the plain progress lines of a run whose output is not a terminal. */
const PLAIN_PROGRESS_MS = 15_000;

/** One plain progress line: epoch, steps done of all, loss, speed and the run's time left. */
function progressLine(info: StepInfo, epochs: number, totalSteps: number): string {
  const percent = ((100 * info.step) / totalSteps).toFixed(0);
  return `progress: epoch ${info.epoch + 1}/${epochs}, step ${info.step}/${totalSteps} (${percent}%), loss ${info.loss.toFixed(4)}, ${info.samplesPerSecond.toFixed(0)} samples/s, ${timeLeft(info, totalSteps)} left`;
}

/** The run's remaining steps at the current speed, as "1 min 5 s" (evaluations not counted). */
function timeLeft(info: StepInfo, totalSteps: number): string {
  const seconds =
    info.samplesPerSecond > 0
      ? ((totalSteps - info.step) * info.batchSize) / info.samplesPerSecond
      : 0;
  const minutes = Math.floor(seconds / 60);
  return minutes > 0 ? `${minutes} min ${Math.round(seconds % 60)} s` : `${seconds.toFixed(1)} s`;
}

/** Whether this module is the program being run (also through a bin symlink, as npx runs it). */
function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
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
