#!/usr/bin/env node
/** `npm run train-parallel` and `adjoint-train`: train logistic regression or an MLP on digits or MNIST. */
import { realpathSync } from "node:fs";
import { availableParallelism } from "node:os";
import { pathToFileURL } from "node:url";
import { Tensor } from "../tensor/tensor.js";
import {
  chooseEngine,
  defaultsFor,
  loadSplit,
  shardCountFor,
  type EngineChooser,
} from "../train/config.js";
import { backend } from "../tensor/active.js";
import { useBackend } from "../backends/select.js";
import { modelSpec, paramSpecs } from "../train/models.js";
import type { OptimizerConfig } from "../train/optimizers.js";
import { renderCurvesSvg } from "../train/plot.js";
import { paramsHash, PARAMS_VERSION, saveParams } from "../train/serialize.js";
import { writeFileAtomic } from "../train/files.js";
import { accuracy } from "../train/metrics.js";
import { train, type TrainResult } from "../train/trainer.js";
import { parseTrainArgs, usage, UsageError, type TrainOptions } from "./args.js";
import { mnistDataDir, MNIST_FULL_MISSING } from "../train/idx.js";
import { progressBar, PLAIN_PROGRESS_MS, progressLine } from "./progress.js";
import {
  writeModelFiles,
  describeModel,
  readParams,
  checkOutputPaths,
  checkModelMemory,
} from "./model-files.js";
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
  // Workers started ahead of the run (chooseEngine's) end with it, whichever way it ends.
  const releases: (() => Promise<void>)[] = [];
  const tracked: EngineChooser = async (...args) => {
    const chosen = await choose(...args);
    if (chosen.release) releases.push(chosen.release);
    return chosen;
  };
  try {
    return await run(argv, io, tracked);
  } finally {
    for (const release of releases) await release();
  }
}

/** {@link main}'s work. */
async function run(argv: readonly string[], io: CliIO, choose: EngineChooser): Promise<number> {
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
  const augment =
    maxShift > 0 ? { width: side, height: side, maxShift, seed: opts.seed } : undefined;
  const spec = modelSpec(opts.model, features, hidden, classes, defaults.arch);
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

  // Chosen before the data loads: a worker pool's threads then boot while it does.
  const evaluateOnly = epochs === 0 && opts.load !== undefined;
  const engine = evaluateOnly
    ? undefined
    : await choose(threads, spec, batchSize, opts.stepTimeoutMs, shardCount);
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
  const tag = `${opts.dataset} ${describeModel(spec)} ${opts.dtype}`;
  // The fields every --json summary starts with.
  const described = {
    dataset: opts.dataset,
    model: opts.model,
    ...(spec.arch ? { arch: spec.arch } : {}),
    sizes: spec.sizes,
  };
  let initialParams: Tensor[] | undefined;
  if (opts.load) {
    // A file that is missing, of another model or corrupt is bad input: one line, exit 2.
    try {
      initialParams = readParams(opts.load, spec, opts.dtype);
    } catch (error) {
      return refuse(error instanceof Error ? error.message : String(error));
    }
  }
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

  if (engine === undefined) throw new Error("no engine chosen for a training run");
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
