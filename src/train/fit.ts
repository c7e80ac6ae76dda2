/**
 * fit(): trains any graph on every core. The main thread holds the graph and the parameters; the
 * batch is split into micro-shards fixed by the batch size, each shard's forward and backward
 * pass runs on the worker pool over SharedArrayBuffer tensors, and the slots are reduced in
 * order and applied in one synchronous step: the same bits for any thread count.
 */
import { availableParallelism } from "node:os";
import { checkOptions, Node } from "../graph/node.js";
import { Tensor } from "../tensor/tensor.js";
import { inProcessEngine } from "./parallel/engine.js";
import { type OptimizerConfig } from "./optimizers.js";
import { poolEngine } from "./parallel/pool.js";
import { BUILTIN_OPS } from "../graph/ops/index.js";
import { Rng } from "./random.js";
import { paramsHash } from "./serialize.js";
import { runTraining } from "./loop.js";
import { prepare } from "./fit-prepare.js";
import { planFlops } from "./step-cost.js";
import { MIN_PARALLEL_STEP_MS, msOfFlops } from "./config.js";
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
   * Worker threads, or "auto" (default): one per core, at most one per micro-shard; one when a
   * step's products and convolutions come to under 0.5 ms (threads would cost more than they
   * save), or when the graph uses a custom op, which workers cannot rebuild.
   */
  threads?: number | "auto";
  /**
   * Shards per batch, fixing the summation order (default: batchSize / 32 rows, 1 to 16; shards
   * of at least 8 rows, a power of two of them, where a row's values fill 64 KB or more).
   */
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
  // "auto" keeps a step too small to gain from threads here, as the CLI does for its models.
  const stepMs = () => {
    const rowShapes = shared.columns.map((c) => c.rowShape);
    const flops = planFlops(plan, rowShapes, batchSize, shared.dtype);
    return flops === undefined ? Infinity : msOfFlops(flops);
  };
  const threads =
    custom.length > 0 && requested === "auto" ? 1 : chooseThreads(requested, shardCount, stepMs);
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

/**
 * --threads' rule for fit: what is asked, at most one thread per micro-shard; "auto" one per core,
 * or one where the step's estimated work (`stepMs`) is below MIN_PARALLEL_STEP_MS.
 */
function chooseThreads(
  requested: number | "auto",
  shardCount: number,
  stepMs: () => number,
): number {
  if (requested === "auto") {
    const threads = Math.max(1, Math.min(availableParallelism(), shardCount));
    return threads > 1 && stepMs() < MIN_PARALLEL_STEP_MS ? 1 : threads;
  }
  if (!Number.isSafeInteger(requested) || requested < 1) {
    throw new RangeError(`fit: threads must be a positive integer or "auto", got ${requested}`);
  }
  return Math.min(requested, shardCount);
}
