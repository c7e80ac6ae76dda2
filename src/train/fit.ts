/**
 * fit(): trains any graph on every core. The main thread holds the graph and the parameters; the
 * batch is split into micro-shards fixed by the batch size, each shard's forward and backward
 * pass runs on the worker pool over SharedArrayBuffer tensors, and the slots are reduced in
 * order and applied in one synchronous step: the same bits for any thread count.
 */
import { availableParallelism } from "node:os";
import { gradients } from "../autodiff/gradients.js";
import { simplify } from "../autodiff/simplify.js";
import { checkFeed, checkOptions, isPlaceholder, Node } from "../graph/node.js";
import { typeName } from "../tensor/options.js";
import { topoSort } from "../graph/topo.js";
import { lowerGraph } from "../runtime/plan.js";
import { fmtType } from "../graph/types.js";
import { firstNonFinite, Tensor, type DType } from "../tensor/tensor.js";
import { inProcessEngine } from "./parallel/engine.js";
import { checkOptimizerConfig, type OptimizerConfig } from "./optimizers.js";
import { poolEngine } from "./parallel/pool.js";
import { BUILTIN_OPS } from "../graph/ops/index.js";
import { allocateShared, type SharedState, type TrainPlan } from "./parallel/state.js";
import { Rng } from "./random.js";
import { outputPathProblem } from "./files.js";
import { paramsHash } from "./serialize.js";
import { runTraining } from "./loop.js";
import { defaultMicroShards } from "./config.js";

/** Progress of one optimizer step of {@link fit}. */
export interface FitStep {
  /** 1-based epoch and step (steps count across epochs). */
  epoch: number;
  step: number;
  /** The loss of this step's batch, reduced as `reduction` says. */
  loss: number;
}

/** One completed epoch of {@link fit}: its loss over all rows (their mean, or sum for "sum"). */
export interface FitEpoch {
  epoch: number;
  loss: number;
}

/** Options of {@link fit}. */
export interface FitOptions {
  /** The loss of one batch: a 0-d node built from the variables in `params` and `data`. */
  loss: Node;
  /** The trainable variables and their initial values (not modified). */
  params: ReadonlyMap<Node, Tensor>;
  /** Per-example inputs: tensors with the examples along axis 0, all with one row count. */
  data: ReadonlyMap<Node, Tensor>;
  /**
   * Fixed inputs that are neither trained nor split into rows (a mask, a positional table, a
   * frozen layer): every batch sees the whole tensor, on every thread; they get no gradient.
   * PyTorch calls these buffers (Keras: non-trainable weights).
   */
  buffers?: ReadonlyMap<Node, Tensor>;
  /** "mean" (default): the loss averages over the batch's rows; "sum": it adds them up. */
  reduction?: "mean" | "sum";
  /** Rows per optimizer step (default 32; the last batch of an epoch may be shorter). */
  batchSize?: number;
  /** Passes over the data (default 1); `steps` stops earlier. */
  epochs?: number;
  steps?: number;
  /** sgd, momentum or adam, with lr and weightDecay (default adam, lr 1e-3). */
  optimizer?: OptimizerConfig;
  /**
   * Worker threads, or "auto" (default): one per core, at most one per micro-shard (one when the
   * graph uses a custom op, which workers cannot rebuild).
   */
  threads?: number | "auto";
  /** Shards per batch (default: batchSize / 32 rows, 1 to 16); fixes the summation order. */
  microShards?: number;
  /** Seeds the shuffle (default 0). */
  seed?: number;
  /** Shuffle the rows every epoch (default true). */
  shuffle?: boolean;
  /** Called after every step and every epoch. */
  onStep?: (info: FitStep) => void;
  onEpoch?: (info: FitEpoch) => void;
  /** Stops the run at the next step boundary when aborted (the result says `stopped`). */
  signal?: AbortSignal;
  /** A checkpoint file written after every epoch and at a stop, atomically, under a lock. */
  checkpoint?: string;
  /** Continue from `checkpoint` (same settings: the difference is named otherwise). */
  resume?: boolean;
  /** Replace an existing `checkpoint` instead of refusing to. */
  overwrite?: boolean;
}

/** What {@link fit} returns. */
export interface FitResult {
  /** The trained parameters, by the variables given in `params`. */
  params: Map<Node, Tensor>;
  history: FitEpoch[];
  /** sha-256 of the final parameters' bytes, in the order of `params`. */
  paramsHash: string;
  steps: number;
  threads: number;
  microShards: number;
  stopped: boolean;
  /** Samples per second over every step (the step engine's time; data and evaluation excluded). */
  samplesPerSecond: number;
  /** The same over the first 20 steps (start-up and JIT warm-up) and over the second half. */
  coldSamplesPerSecond: number;
  warmSamplesPerSecond: number;
}

const FIT_OPTIONS: (keyof FitOptions)[] = [
  "loss",
  "params",
  "data",
  "buffers",
  "reduction",
  "batchSize",
  "epochs",
  "steps",
  "optimizer",
  "threads",
  "microShards",
  "seed",
  "shuffle",
  "onStep",
  "onEpoch",
  "signal",
  "checkpoint",
  "resume",
  "overwrite",
];

/**
 * Trains `params` to minimise `loss` over `data` in mini-batches, on a worker pool. Each batch is
 * split into micro-shards fixed by the batch size and `microShards`, never by the thread count;
 * each shard's gradient goes to its own slot and the slots are summed in order, so the result is
 * bitwise identical for any `threads`, and equal to rounding to whole-batch `gradients(loss,
 * params)` (with reduction "mean" each shard's mean is weighted by its rows). A graph whose rows
 * interact (a statistic over the batch, such as batch normalisation) needs `microShards: 1`.
 * Workers rebuild the graph from the ops the library registers: a graph with a custom op trains
 * on one thread ("auto" picks 1; more are refused, naming the op).
 * Example: `const { params } = await fit({ loss, params: new Map([[W, w0]]), data: new Map([[X, x],
 * [Y, y]]), batchSize: 64, epochs: 5, optimizer: { kind: "adam", lr: 1e-3 } })`.
 */
export async function fit(options: FitOptions): Promise<FitResult> {
  const checked = checkOptions("fit(options)", options, FIT_OPTIONS, "fit({ loss, params, data })");
  const setup = prepare(checked);
  const { plan, shared, rows, batchSize, shardCount, optimizer } = setup;
  // Workers rebuild the plan from the ops their modules register: a custom op defined in this
  // thread alone cannot run there, so "auto" then trains here and an explicit count is refused.
  const custom = [...new Set(plan.graph.nodes.map((n) => n.op))].filter(
    (op) => !BUILTIN_OPS.has(op),
  );
  const requested = checked.threads ?? "auto";
  const threads =
    custom.length > 0 && requested === "auto" ? 1 : chooseThreads(requested, shardCount);
  if (threads > 1 && custom.length > 0) {
    throw new Error(
      `fit: the graph uses ${custom.map((op) => `"${op}"`).join(", ")}, defined in this thread only: worker threads cannot rebuild it; pass threads: 1`,
    );
  }
  const names = [...checked.params.keys()].map((p) => p.name);
  if (checked.checkpoint !== undefined && new Set(names).size !== names.length) {
    throw new Error(
      `fit: checkpoints name parameters by variable name; names repeat: ${names.join(", ")}`,
    );
  }
  const outcome = await runTraining({
    trainPlan: plan,
    shared,
    rows,
    batchSize,
    epochs: checked.epochs ?? 1,
    maxSteps: checked.steps,
    optimizer,
    createEngine: threads === 1 ? inProcessEngine : poolEngine({ threads }),
    rng: new Rng(checked.seed ?? 0),
    meanLoss: setup.reduction === "mean",
    shuffle: checked.shuffle,
    checkpoint:
      checked.checkpoint === undefined
        ? undefined
        : {
            path: checked.checkpoint,
            names,
            model: { kind: "fit", params: names, shapes: plan.paramShapes },
            // What must match for a resume to continue the same run.
            fingerprint: {
              reduction: setup.reduction,
              batchSize,
              microShards: shardCount,
              optimizer,
              seed: checked.seed ?? 0,
              shuffle: checked.shuffle !== false,
              dtype: shared.dtype,
              rows,
              // The values too: other data (or buffers) of the same shape is another run.
              data: setup.dataHash,
              buffers: setup.bufferHashes,
            },
            resume: checked.resume,
            overwrite: checked.overwrite,
            onNotice: (line) => process.emitWarning(line, "AdjointWarning"),
          },
    onStep:
      checked.onStep &&
      ((info) => checked.onStep!({ epoch: info.epoch + 1, step: info.step, loss: info.loss })),
    onEpoch:
      checked.onEpoch &&
      ((record) => checked.onEpoch!({ epoch: record.epoch, loss: record.trainLoss })),
    shouldStop: () => checked.signal?.aborted === true,
  });
  return {
    params: new Map([...checked.params.keys()].map((node, i) => [node, outcome.params[i]])),
    history: outcome.history.map((r) => ({ epoch: r.epoch, loss: r.trainLoss })),
    paramsHash: paramsHash(outcome.params),
    steps: outcome.steps,
    threads: outcome.threads,
    microShards: shardCount,
    stopped: outcome.stopped,
    samplesPerSecond: outcome.samplesPerSecond,
    coldSamplesPerSecond: outcome.coldSamplesPerSecond,
    warmSamplesPerSecond: outcome.warmSamplesPerSecond,
  };
}

/** --threads' rule for fit: what is asked, at most one thread per micro-shard. */
function chooseThreads(requested: number | "auto", shardCount: number): number {
  if (requested === "auto") return Math.max(1, Math.min(availableParallelism(), shardCount));
  if (!Number.isSafeInteger(requested) || requested < 1) {
    throw new RangeError(`fit: threads must be a positive integer or "auto", got ${requested}`);
  }
  return Math.min(requested, shardCount);
}

/** Everything checked before any step: the plan, the shared state and the batch geometry. */
function prepare(options: FitOptions): {
  plan: TrainPlan;
  shared: SharedState;
  rows: number;
  batchSize: number;
  shardCount: number;
  optimizer: OptimizerConfig;
  reduction: "mean" | "sum";
  dataHash: string;
  bufferHashes: Record<string, string>;
} {
  const { loss, params, data } = options;
  const buffers = options.buffers ?? new Map<Node, Tensor>();
  const fail = (message: string): never => {
    throw new Error(`fit: ${message}`);
  };
  if (!(loss instanceof Node)) fail("loss must be a Node (the loss of one batch)");
  if (loss.shape !== null && loss.shape.length !== 0) {
    fail(`loss must be 0-d (one number per batch), ${loss.name} has shape ${fmtType(loss.shape)}`);
  }
  if (!(params instanceof Map) || params.size === 0)
    fail("params must be a non-empty Map of variables to tensors");
  if (!(data instanceof Map)) fail("data must be a Map of variables to tensors");
  if (!(buffers instanceof Map)) fail("buffers must be a Map of variables to tensors");
  for (const [name, value, kind] of [
    ["shuffle", options.shuffle, "boolean"],
    ["resume", options.resume, "boolean"],
    ["overwrite", options.overwrite, "boolean"],
    ["onStep", options.onStep, "function"],
    ["onEpoch", options.onEpoch, "function"],
    ["checkpoint", options.checkpoint, "string"],
  ] as const) {
    if (value !== undefined && typeof value !== kind) {
      fail(`${name} must be a ${kind}, got ${typeName(value)}`);
    }
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    fail(
      `signal must be an AbortSignal (from new AbortController().signal), got ${typeName(options.signal)}`,
    );
  }
  if (options.checkpoint !== undefined) {
    const problem = outputPathProblem(options.checkpoint);
    if (problem) fail(`checkpoint ${JSON.stringify(options.checkpoint)}: ${problem}`);
  }
  if (options.resume === true && options.checkpoint === undefined) {
    fail("resume: true needs the checkpoint to resume from: pass checkpoint: path");
  }
  for (const [name, value] of [
    ["batchSize", options.batchSize],
    ["epochs", options.epochs],
    ["steps", options.steps],
    ["microShards", options.microShards],
    ["seed", options.seed],
  ] as const) {
    if (value !== undefined && typeof value !== "number") {
      fail(
        `${name} must be a number, got ${typeName(value)}${typeof value === "string" ? ` "${value}"` : ""}`,
      );
    }
  }
  const reduction = options.reduction ?? "mean";
  if (reduction !== "mean" && reduction !== "sum") {
    fail(`reduction must be "mean" or "sum", got ${JSON.stringify(reduction)}`);
  }
  // The cross-entropy says how it reduces the rows: a mismatch would scale every gradient by
  // the batch size (or its inverse) without a word.
  const lossReduction = loss.op.name === "softmaxCrossEntropy" ? loss.attrs.reduction : undefined;
  if (lossReduction !== undefined && lossReduction !== reduction) {
    fail(
      `the loss is softmaxCrossEntropy with reduction "${String(lossReduction)}" but fit's reduction is "${reduction}"${options.reduction === undefined ? " (the default)" : ""}: give both the same`,
    );
  }
  const all = [...params, ...data, ...buffers];
  for (const [node, value] of all) {
    if (!(node instanceof Node) || !isPlaceholder(node))
      fail(`the keys of params, data and buffers must be variables, got ${String(node)}`);
    if (!(value instanceof Tensor)) fail(`the value of ${node.name} is not a Tensor`);
    const places = [params, data, buffers].filter((m) => m.has(node)).length;
    if (places > 1) fail(`${node.name} is in more than one of params, data and buffers`);
    // A variable's declared dtype and shape (rows aside for data) hold for what trains it.
    try {
      checkFeed(node, value);
    } catch (error) {
      fail((error as Error).message);
    }
  }
  // A NaN in the data or an Infinity in a parameter would end as "training diverged" after a
  // step: named here, before any step.
  for (const [node, value] of all) {
    const bad = firstNonFinite(value.data);
    if (bad >= 0) {
      const kind = params.has(node) ? "params" : data.has(node) ? "data" : "buffers";
      fail(
        `${kind} ${node.name} holds ${value.data[bad]} at element ${bad}: every value must be finite`,
      );
    }
  }
  const dtypes = new Set(all.map(([, t]) => t.dtype));
  if (dtypes.size > 1) {
    const list = all.map(([n, t]) => `${n.name} ${t.dtype}`).join(", ");
    fail(
      `params, data and buffers must share one dtype (float32 for training, float64 for checks): ${list}`,
    );
  }
  const dtype: DType = [...dtypes][0];
  const needed = topoSort([loss]).filter(isPlaceholder);
  const missing = needed.filter((v) => !params.has(v) && !data.has(v) && !buffers.has(v));
  if (missing.length > 0) {
    fail(
      `the loss needs ${missing.map((v) => `"${v.name}"`).join(", ")}, in none of params, data and buffers (a fixed tensor that is not split into rows goes in buffers)`,
    );
  }
  const unused = [...params.keys()].filter((p) => !needed.includes(p));
  if (unused.length > 0) {
    fail(
      `the loss does not depend on ${unused.map((v) => `"${v.name}"`).join(", ")}: remove it from params`,
    );
  }
  const dataNodes = [...data.keys()].filter((d) => needed.includes(d));
  const rowCounts = dataNodes.map((d) => data.get(d)!.shape[0]);
  if (dataNodes.length === 0) fail("the loss depends on no data variable");
  for (const d of dataNodes)
    if (data.get(d)!.rank === 0) fail(`data ${d.name} is 0-d: examples go along axis 0`);
  if (new Set(rowCounts).size > 1) {
    fail(
      `data tensors have different row counts: ${dataNodes.map((d, i) => `${d.name} ${rowCounts[i]}`).join(", ")}`,
    );
  }
  const rows = rowCounts[0];
  if (rows === 0) {
    fail(
      `data has 0 rows (${dataNodes.map((d) => `${d.name} ${fmtType(data.get(d)!.shape)}`).join(", ")}): nothing to train on`,
    );
  }
  const batchSize = options.batchSize ?? Math.min(32, rows);
  if (!Number.isSafeInteger(batchSize) || batchSize < 1)
    fail(`batchSize must be a positive integer, got ${batchSize}`);
  if (batchSize > rows) fail(`batchSize ${batchSize} is larger than the ${rows} rows of data`);
  const shardCount = options.microShards ?? defaultMicroShards(batchSize);
  if (!Number.isSafeInteger(shardCount) || shardCount < 1 || shardCount > batchSize) {
    fail(`microShards must be an integer from 1 to the batch size ${batchSize}, got ${shardCount}`);
  }
  for (const [name, value] of [
    ["epochs", options.epochs],
    ["steps", options.steps],
  ] as const) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1))
      fail(`${name} must be a positive integer, got ${value}`);
  }
  const optimizer = checkOptimizerConfig(options.optimizer ?? { kind: "adam", lr: 1e-3 });
  const paramNodes = [...params.keys()];
  const outputs = simplify([loss, ...gradients(loss, paramNodes)]);
  const plan: TrainPlan = {
    graph: lowerGraph(outputs, [...dataNodes, ...paramNodes], buffers),
    paramShapes: paramNodes.map((p) => [...params.get(p)!.shape]),
    dataCount: dataNodes.length,
    shardLoss: reduction,
    objective: reduction,
  };
  const shared = allocateShared({
    dtype,
    columns: dataNodes.map((d) => {
      const t = data.get(d)!;
      return { data: t.data, rowShape: t.shape.slice(1) };
    }),
    paramShapes: plan.paramShapes,
    optimizer,
    shardCount,
    maxBatch: batchSize,
    initial: paramNodes.map((p) => params.get(p)!),
  });
  // Hashed only for a checkpoint's fingerprint (the 60,000 MNIST images take about 0.4 s).
  const hashed = options.checkpoint !== undefined;
  const dataHash = hashed ? paramsHash(dataNodes.map((d) => data.get(d)!)) : "";
  const bufferHashes = Object.fromEntries(
    [...buffers].map(([node, value]) => [node.name, hashed ? paramsHash([value]) : ""]),
  );
  return {
    plan,
    shared,
    rows,
    batchSize,
    shardCount,
    optimizer,
    reduction,
    dataHash,
    bufferHashes,
  };
}
