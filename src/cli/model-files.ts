/**
 * The CLI's checks before training (output paths, memory) and its model files (--save, --load,
 * --export-onnx).
 */
import { existsSync } from "node:fs";
import { availableParallelism, totalmem } from "node:os";
import { resolve } from "node:path";
import { firstNonFinite, MAX_TENSOR_SIZE, Tensor, type DType } from "../tensor/tensor.js";
import { stateCount } from "../train/parallel/optimizer-kernels.js";
import { architectureOf, paramSpecs, type ModelSpec } from "../train/models.js";
import type { OptimizerConfig } from "../train/optimizers.js";
import { exportModelOnnx } from "../train/export.js";
import { traceModelStep } from "../train/trace.js";
import type { Split } from "../train/data.js";
import { loadParams } from "../train/serialize.js";
import { outputPathProblem, writeFileAtomic } from "../train/files.js";
import { EVAL_ACTIVATION_BYTES } from "../train/metrics.js";
import { CHECKPOINT_KIND } from "../train/checkpoint.js";
import { type TrainOptions } from "./args.js";

/**
 * The files a run writes from its final (or loaded) parameters: --export-onnx's model, with the
 * data's standardization folded in, and --trace's page of one step on the first training rows.
 */
export function writeModelFiles(
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
export function describeModel(spec: ModelSpec): string {
  return spec.arch ? `${spec.kind} ${spec.arch}` : `${spec.kind} [${spec.sizes.join("-")}]`;
}

/** Reads a --load file and checks it fits the model. */
export function readParams(path: string, spec: ModelSpec, dtype: DType): Tensor[] {
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
