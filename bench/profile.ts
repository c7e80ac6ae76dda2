/**
 * Where a training step's time goes (`npm run bench:profile`): samples/s of whole training steps
 * measured in-process (in-process engine, 1 thread; `npm run bench:train` measures the command) for the MLP 784-256-10 (batch 128, fp32) and the exercise's digits softmax
 * regression (batch 50, SGD lr 0.05, fp32 and fp64) on the js and wasm backends (wasm: the
 * relaxed-SIMD build where the engine has it; wasm-plain: plain SIMD), TF.js (cpu, wasm;
 * devDependencies @tensorflow/tfjs and tfjs-backend-wasm) as a peer where it loads, and adjoint
 * wasm with the buffer pool off, then per-step kernel profiles, engine overhead and allocations
 * (typed arrays from the pool's miss counter), and the training plans' node counts with the
 * Evaluator's own cost per run (kernels replayed).
 */
import { Bench } from "tinybench";
import { loadTf, tfStep } from "./peers.js";
import { CompiledShard } from "../src/backends/wasm-training/compiled.js";
import { setBackend } from "../src/tensor/active.js";
import { type Backend } from "../src/tensor/backend.js";
import { jsBackend } from "../src/tensor/kernels/js.js";
import { createWasmBackend, type WasmBackend } from "../src/backends/wasm.js";
import { wasmStats } from "../src/backends/wasm-arena.js";
import type { OptimizerConfig } from "../src/train/parallel/optimizer-kernels.js";
import {
  allocate,
  placeInBackend,
  clearPool,
  setPooling,
  tensor,
  tensorStats,
  type DType,
  type Tensor,
} from "../src/tensor/tensor.js";
import { gradients } from "../src/autodiff/gradients.js";
import { variable, type Node } from "../src/graph/node.js";
import { logSoftmax, mul, neg, sum } from "../src/graph/ops/index.js";
import { Evaluator } from "../src/runtime/evaluator.js";
import { lowerGraph, rebuildGraph, type Plan } from "../src/runtime/plan.js";
import { loadDigits, type Dataset } from "../src/train/data.js";
import { inProcessEngine } from "../src/train/parallel/engine.js";
import {
  buildTrainPlan,
  forward,
  initParams,
  modelSpec,
  paramSpecs,
  type ModelSpec,
} from "../src/train/models.js";
import { Rng } from "../src/train/random.js";
import { prepareTraining } from "../src/train/trainer.js";
import { runStep } from "../src/train/parallel/state.js";

/** One training workload. */
interface Workload {
  label: string;
  spec: ModelSpec;
  data: Dataset;
  dtype: DType;
  batch: number;
  optimizer: OptimizerConfig;
}

/** What one (workload, engine) pair measured. */
interface Measurement {
  name: string;
  secondsPerStep: number;
  samplesPerSecond: number;
}

/** Kernel time per step by family, from a timing wrapper around the backend. */
interface Profile {
  /** Wall time per step of the profiled run itself (timer overhead included). */
  stepSeconds: number;
  seconds: Record<string, number>;
  calls: number;
  tensors: number;
  /** Fresh typed arrays (the buffer pool's misses) and their elements; arrays the pool reused. */
  arrays: number;
  elements: number;
  reused: number;
  /** Elements the wasm kernels copied into and out of the linear memory. */
  copiedIn: number;
  copiedOut: number;
}

/** Synthetic MNIST-shaped data: uniform pixels in [0, 1), labels cycling 0..9 (speed only). */
function syntheticMnist(rows: number): Dataset {
  const X = new Float32Array(rows * 784);
  let s = 12345;
  for (let i = 0; i < X.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    X[i] = s / 2 ** 32;
  }
  const y = Int32Array.from({ length: rows }, (_, i) => i % 10);
  return { X: tensor(X, { shape: [rows, 784] }), y, classes: 10 };
}

/** A step function over fixed shuffled batches, after `warmSteps` steps. */
async function stepper(w: Workload, warmSteps: number): Promise<() => Promise<void>> {
  const rng = new Rng(0);
  const n = w.data.X.shape[0];
  const initial = initParams(w.spec, rng, w.dtype);
  const { trainPlan, shared } = prepareTraining(
    w.spec,
    w.data,
    w.dtype,
    w.optimizer,
    1,
    w.batch,
    initial,
  );
  const engine = await inProcessEngine(shared, trainPlan, w.optimizer);
  const order = rng.permutation(n);
  const batches: Int32Array[] = [];
  for (let start = 0; start + w.batch <= n; start += w.batch)
    batches.push(order.subarray(start, start + w.batch));
  let t = 0;
  const step = async (): Promise<void> => {
    t++;
    await runStep(engine, shared, batches[t % batches.length], t);
  };
  for (let i = 0; i < warmSteps; i++) await step();
  return step;
}

/** Mean seconds per call of an async step, by tinybench within `timeMs`. */
async function secondsPerStep(name: string, step: () => Promise<void>, timeMs: number) {
  const bench = new Bench({ time: timeMs, iterations: 3, warmupTime: 0, warmupIterations: 0 });
  bench.add(name, step);
  await bench.run();
  const result = bench.tasks[0].result;
  if (result.state !== "completed") throw new Error(`bench ${name}: ${result.state}`);
  return result.latency.mean / 1000;
}

const FAMILY: Record<keyof Omit<Backend, "name">, string> = {
  matmul: "matmul",
  binary: "element-wise",
  where: "element-wise",
  unary: "element-wise",
  scalar: "element-wise",
  reduce: "reductions",
  slice: "shape",
  unslice: "shape",
  concat: "shape",
  argmax: "reductions",
  conv2d: "convolution",
  conv2dInputGrad: "convolution",
  conv2dFilterGrad: "convolution",
  maxPoolSelect: "convolution",
  maxPoolGrad: "convolution",
  layerNorm: "reductions",
  layerNormGrad: "reductions",
  maxMask: "reductions",
  softmaxCrossEntropy: "reductions",
  softmaxCrossEntropyGrad: "reductions",
  broadcastTo: "broadcast/sumTo/transpose",
  sumTo: "broadcast/sumTo/transpose",
  transpose: "broadcast/sumTo/transpose",
};

/** `inner` with every kernel call timed into `seconds` by family. */
function timedBackend(inner: Backend, seconds: Record<string, number>, calls: { n: number }) {
  // The arena goes along, so the wrapped wasm backend still finds its arrays in place.
  const timed: Record<string, unknown> = { name: inner.name, arena: (inner as WasmBackend).arena };
  for (const [method, family] of Object.entries(FAMILY)) {
    const fn = (inner as unknown as Record<string, (...args: unknown[]) => unknown>)[method];
    timed[method] = (...args: unknown[]) => {
      const t0 = performance.now();
      const out = fn(...args);
      seconds[family] = (seconds[family] ?? 0) + (performance.now() - t0) / 1000;
      calls.n++;
      return out;
    };
  }
  return timed as unknown as Backend;
}

/** Per-step kernel time by family, kernel calls, Tensors and elements allocated (mean of `steps`). */
async function profile(w: Workload, inner: Backend, steps: number): Promise<Profile> {
  const seconds: Record<string, number> = {};
  const calls = { n: 0 };
  setBackend(inner);
  clearPool(); // arrays another backend left in the pool would not be in this one's memory
  const step = await stepper(w, 3);
  setBackend(timedBackend(inner, seconds, calls));
  const tensors0 = tensorStats.constructed;
  const arrays0 = tensorStats.arraysAllocated;
  const elements0 = tensorStats.elementsAllocated;
  const reused0 = tensorStats.arraysReused;
  const copiedIn0 = wasmStats.elementsCopiedIn;
  const copiedOut0 = wasmStats.elementsCopiedOut;
  const start = performance.now();
  for (let i = 0; i < steps; i++) await step();
  const stepSeconds = (performance.now() - start) / 1000 / steps;
  setBackend(jsBackend);
  for (const key of Object.keys(seconds)) seconds[key] /= steps;
  return {
    stepSeconds,
    seconds,
    calls: calls.n / steps,
    tensors: (tensorStats.constructed - tensors0) / steps,
    arrays: (tensorStats.arraysAllocated - arrays0) / steps,
    elements: (tensorStats.elementsAllocated - elements0) / steps,
    reused: (tensorStats.arraysReused - reused0) / steps,
    copiedIn: (wasmStats.elementsCopiedIn - copiedIn0) / steps,
    copiedOut: (wasmStats.elementsCopiedOut - copiedOut0) / steps,
  };
}

/** samples/s of `w` on an adjoint backend, with the buffer pool on (default) or off. */
async function measureAdjoint(
  w: Workload,
  b: Backend,
  timeMs: number,
  pooling = true,
): Promise<Measurement> {
  setBackend(b);
  clearPool();
  const previous = setPooling(pooling);
  const step = await stepper(w, 5);
  const seconds = await secondsPerStep(`${w.label} ${b.name}`, step, timeMs);
  setPooling(previous);
  setBackend(jsBackend);
  return {
    name: `adjoint ${b.name}${pooling ? "" : ", buffer pool off"}`,
    secondsPerStep: seconds,
    samplesPerSecond: w.batch / seconds,
  };
}

function table(title: string, rows: Measurement[]): void {
  console.log(`\n### ${title}\n`);
  console.log("| engine | samples/s | µs/step | vs baseline |");
  console.log("|---|---:|---:|---:|");
  const base = rows[0].samplesPerSecond;
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${Math.round(r.samplesPerSecond).toLocaleString("en-US")} | ` +
        `${(r.secondsPerStep * 1e6).toFixed(1)} | ${(r.samplesPerSecond / base).toFixed(2)}x |`,
    );
  }
}

/** Where a step's time goes: kernel families, then the rest (engine + Evaluator) by difference. */
function profileTable(title: string, p: Profile): void {
  const stepSeconds = p.stepSeconds;
  console.log(`\n#### ${title}: ${(stepSeconds * 1e6).toFixed(1)} µs/step profiled\n`);
  console.log("| part | µs/step | share |");
  console.log("|---|---:|---:|");
  let kernels = 0;
  for (const [family, s] of Object.entries(p.seconds).sort((a, b) => b[1] - a[1])) {
    kernels += s;
    const share = ((100 * s) / stepSeconds).toFixed(0);
    console.log(`| ${family} | ${(s * 1e6).toFixed(1)} | ${share}% |`);
  }
  const rest = stepSeconds - kernels;
  console.log(
    `| engine + Evaluator + timer (rest: step minus kernels) | ${(rest * 1e6).toFixed(1)} | ` +
      `${((100 * rest) / stepSeconds).toFixed(0)}% |`,
  );
  console.log(
    `\n${p.calls.toFixed(0)} kernel calls per step; allocated per step: ` +
      `${p.arrays.toFixed(2)} typed arrays (${Math.round(p.elements).toLocaleString("en-US")} ` +
      `elements; buffer pool misses, steady state target 0), ${p.reused.toFixed(0)} arrays ` +
      `reused from the pool, ${p.tensors.toFixed(0)} Tensor wrappers (small JS objects).`,
  );
  if (p.copiedIn + p.copiedOut > 0) {
    const count = (x: number) => Math.round(x).toLocaleString("en-US");
    console.log(
      `Elements copied per step by the wasm kernels: ${count(p.copiedIn)} in, ` +
        `${count(p.copiedOut)} out (operands outside the linear memory, e.g. the parameters).`,
    );
  }
}

const wasm = createWasmBackend();
// Plain SIMD for comparison: the same kernels but mul-then-add in matmul (no relaxed_madd).
const wasmPlain = createWasmBackend({ build: "simd" });
const sgd: OptimizerConfig = { kind: "sgd", lr: 0.05 };
const mlp: Workload = {
  label: "mlp",
  spec: modelSpec("mlp", 784, [256], 10),
  data: syntheticMnist(128 * 16),
  dtype: "float32",
  batch: 128,
  optimizer: sgd,
};
const digits = (dtype: DType): Workload => ({
  label: `digits ${dtype}`,
  spec: modelSpec("logreg", 64, [], 10),
  data: loadDigits({ dtype }),
  dtype,
  batch: 50,
  optimizer: sgd,
});

console.log(
  `node ${process.version}, 1 thread, in-process engine, shardCount 1; ` +
    `adjoint wasm runs the ${wasm.build} build, wasm-plain the ${wasmPlain.build} one`,
);
const results: [Workload, Measurement[]][] = [];

const mlpRows = [
  await measureAdjoint(mlp, jsBackend, 1500),
  await measureAdjoint(mlp, wasm, 1500),
  await measureAdjoint(mlp, wasmPlain, 1500),
  await measureAdjoint(mlp, wasm, 1500, false),
];
const tf = await loadTf();
if (typeof tf === "string") console.log(`\n${tf}`);
else {
  for (const name of ["cpu", "wasm"]) {
    const batch = {
      sizes: mlp.spec.sizes,
      X: (mlp.data.X.data as Float32Array).slice(0, mlp.batch * 784),
      y: mlp.data.y.slice(0, mlp.batch),
      lr: mlp.optimizer.lr,
    };
    const r = await tfStep(tf, name, batch)
      .then(async (step) => {
        const seconds = await secondsPerStep(`tfjs ${name}`, step, 1500);
        return {
          name: `TF.js ${name}`,
          secondsPerStep: seconds,
          samplesPerSecond: mlp.batch / seconds,
        };
      })
      .catch((error: Error) => `TF.js ${name} not measured: ${error.message.split("\n")[0]}`);
    if (typeof r === "string") console.log(`\n${r}`);
    else mlpRows.push(r);
  }
}
table("MLP 784-256-10, batch 128, fp32, SGD (synthetic MNIST-shaped data)", mlpRows);
results.push([mlp, mlpRows]);

for (const dtype of ["float32", "float64"] as const) {
  const w = digits(dtype);
  const rows = [
    await measureAdjoint(w, jsBackend, 1000),
    await measureAdjoint(w, wasm, 1000),
    await measureAdjoint(w, wasmPlain, 1000),
    await measureAdjoint(w, wasm, 1000, false),
  ];
  table(`Exercise: digits softmax regression, batch 50, SGD lr 0.05, ${dtype}`, rows);
  results.push([w, rows]);
}

/**
 * The wasm step runs a compiled program (src/backends/wasm-training/compiled.ts), which calls the kernels
 * by address, past any wrapper backend: its calls are timed by the program itself, on one shard
 * of the workload's batch; the rest of the measured step is the shard's row gather, the copy of
 * its gradients into the slot, the WASM reduce-and-update and the engine.
 */
function compiledProfile(w: Workload, b: WasmBackend, stepSeconds: number, runs: number): void {
  setBackend(b);
  clearPool();
  const { graph: plan } = buildTrainPlan(w.spec);
  const { placeholders, outputs } = rebuildGraph(plan);
  const rng = new Rng(0);
  const [features, classes] = [w.spec.sizes[0], w.spec.sizes[w.spec.sizes.length - 1]];
  // In the kernels' memory, where a shard places its feeds (placeInBackend).
  const placed = (shape: readonly number[]) => placeInBackend(() => allocate(shape, w.dtype));
  const X = placed([w.batch, features]);
  X.data.set(w.data.X.data.subarray(0, w.batch * features));
  const Y = placed([w.batch, classes]);
  for (let r = 0; r < w.batch; r++) Y.data[r * classes + w.data.y[r]] = 1;
  const params = initParams(w.spec, rng, w.dtype).map((t) => {
    const inArena = placed(t.shape);
    inArena.data.set(t.data);
    return inArena;
  });
  const feeds = new Map<Node, Tensor>(placeholders.map((p, i) => [p, [X, Y, ...params][i]]));
  const program = CompiledShard.compile(outputs, feeds, b);
  if (program === undefined) throw new Error(`${w.label}: the plan did not compile`);
  for (let i = 0; i < 50; i++) program.run();
  const seconds: Record<string, number> = {};
  for (let i = 0; i < runs; i++) program.runTimed(seconds);
  const micros = (x: number) => (x * 1e6).toFixed(1);
  const share = (x: number) => `${((100 * x) / stepSeconds).toFixed(0)}%`;
  console.log(`\n#### ${w.label} on ${b.name}, compiled: ${micros(stepSeconds)} µs/step\n`);
  console.log("| part | µs/step | share |");
  console.log("|---|---:|---:|");
  let total = 0;
  for (const [label, s] of Object.entries(seconds).sort((a, c) => c[1] - a[1])) {
    total += s / runs;
    console.log(`| ${label} | ${micros(s / runs)} | ${share(s / runs)} |`);
  }
  const rest = stepSeconds - total;
  console.log(
    `| rows gathered, gradients into the slot, reduce + update, engine | ${micros(rest)} | ${share(rest)} |`,
  );
  console.log(`\n${program.labels.length} calls per step: ${program.labels.join(", ")}.`);
  setBackend(jsBackend);
}

console.log(
  "\n### Where a step's time goes (js: kernels timed by a wrapper backend; wasm: the compiled program's calls)",
);
for (const [w, rows] of results) {
  for (const b of [jsBackend, wasm]) {
    const m = rows.find((r) => r.name === `adjoint ${b.name}`)!;
    const unprofiled = (m.secondsPerStep * 1e6).toFixed(1);
    if (b === wasm) {
      compiledProfile(w, wasm, m.secondsPerStep, w.label === "mlp" ? 200 : 2000);
      continue;
    }
    const p = await profile(w, b, w.label === "mlp" && b === jsBackend ? 5 : 300);
    profileTable(`${w.label} on ${b.name} (${unprofiled} µs/step unprofiled)`, p);
  }
}

/** The training plan as buildTrainPlan built it before simplify(): the baseline of the counts. */
function unsimplifiedPlan(spec: ModelSpec): Plan {
  const X = variable("X");
  const Y = variable("Y");
  const params = paramSpecs(spec).map((p) => variable(p.name));
  const lossSum = neg(sum(mul(Y, logSoftmax(forward(spec, X, params)))));
  return lowerGraph([lossSum, ...gradients(lossSum, params)], [X, Y, ...params]);
}

/**
 * `inner` recording every kernel result during the first run, then replaying them in call order:
 * a run then costs only what is not kernel work (Evaluator, op compute wrappers, shape checks).
 */
function replayBackend(inner: Backend): { backend: Backend; replay: () => void } {
  const recorded: unknown[] = [];
  let next = 0;
  let recording = true;
  const replaying: Record<string, unknown> = { name: `${inner.name} (replayed)` };
  for (const method of Object.keys(FAMILY)) {
    const fn = (inner as unknown as Record<string, (...args: unknown[]) => unknown>)[method];
    replaying[method] = (...args: unknown[]) => {
      if (!recording) return recorded[next++ % recorded.length];
      const out = fn(...args);
      recorded.push(out);
      return out;
    };
  }
  return { backend: replaying as unknown as Backend, replay: () => (recording = false) };
}

/** µs per Evaluator.run of `plan` with its kernels replayed (the engine's dispatch cost). */
function dispatchMicroseconds(plan: Plan, w: Workload, paramShapes: number[][]): number {
  const graph = rebuildGraph(plan);
  const evaluator = new Evaluator(graph.outputs);
  const sizes = w.spec.sizes;
  const shapes = [[w.batch, sizes[0]], [w.batch, sizes[sizes.length - 1]], ...paramShapes];
  const feeds = new Map<Node, Tensor>(
    graph.placeholders.map((p, i) => [p, allocate(shapes[i], w.dtype)]),
  );
  const { backend, replay } = replayBackend(jsBackend);
  setBackend(backend);
  // Recorded with the pool off, so the recorded results hold distinct arrays; replayed with it on
  // (the Evaluator's ownership bookkeeping and releases counted; replayed arrays already pooled
  // are not pooled twice), then emptied.
  setPooling(false);
  evaluator.run(feeds);
  setPooling(true);
  replay();
  const runs = 20_000;
  for (let i = 0; i < runs; i++) evaluator.run(feeds);
  const start = performance.now();
  for (let i = 0; i < runs; i++) evaluator.run(feeds);
  const micros = ((performance.now() - start) * 1000) / runs;
  clearPool();
  setBackend(jsBackend);
  return micros;
}

console.log("\n### Training plans: node counts and dispatch cost (simplify() in buildTrainPlan)\n");
console.log("| plan | forward nodes | backward nodes | Evaluator.run, kernels replayed (µs) |");
console.log("|---|---:|---:|---:|");
for (const w of [digits("float32"), mlp]) {
  const train = buildTrainPlan(w.spec);
  const { before, after } = train.stats;
  const raw = dispatchMicroseconds(unsimplifiedPlan(w.spec), w, train.paramShapes);
  const simplified = dispatchMicroseconds(train.graph, w, train.paramShapes);
  const name = `${w.spec.kind} ${w.spec.sizes.join("-")}, batch ${w.batch}`;
  console.log(
    `| ${name}, as differentiated | ${before.forward} | ${before.backward} | ${raw.toFixed(2)} |`,
  );
  console.log(
    `| ${name}, simplified | ${after.forward} | ${after.backward} | ${simplified.toFixed(2)} |`,
  );
}
