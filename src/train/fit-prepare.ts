/** fit()'s inputs checked before any step, and the training plan and shared state made from them. */
import { gradients } from "../autodiff/gradients.js";
import { simplify } from "../autodiff/simplify.js";
import { checkFeed, isPlaceholder, Node } from "../graph/node.js";
import { typeName } from "../tensor/options.js";
import { topoSort } from "../graph/topo.js";
import { lowerGraph } from "../runtime/plan.js";
import { fmtType } from "../graph/types.js";
import { firstNonFinite, Tensor, type DType } from "../tensor/tensor.js";
import { checkOptimizerConfig, type OptimizerConfig } from "./optimizers.js";
import { allocateShared, type SharedState, type TrainPlan } from "./parallel/state.js";
import { outputPathProblem } from "./files.js";
import { paramsHash } from "./serialize.js";
import { defaultMicroShards } from "./config.js";
import { planRowBytes } from "./step-cost.js";
import type { FitOptions } from "./fit.js";

/** Everything checked before any step: the plan, the shared state and the batch geometry. */
export function prepare(options: FitOptions): {
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
  const given = options.microShards;
  if (given !== undefined && (!Number.isSafeInteger(given) || given < 1 || given > batchSize))
    fail(`microShards must be an integer from 1 to the batch size ${batchSize}, got ${given}`);
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
  // Large rows (a convolution's, a transformer's) in small shards, which stay in the caches.
  const rowShapes = dataNodes.map((d) => data.get(d)!.shape.slice(1));
  const shardCount =
    given ?? defaultMicroShards(batchSize, planRowBytes(plan, rowShapes, dtype) ?? 0);
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
