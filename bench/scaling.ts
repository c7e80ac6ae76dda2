/**
 * Thread scaling of the data-parallel trainer (`npm run bench:scaling`): samples/s of the MLP
 * 784-256-10 and logistic regression at batch 128 and 512, fp32, through the command users type
 * (`npm run train-parallel -- ... --threads N --json` in a fresh process, median of --repeat
 * runs: all steps, cold = first 20, warm = second half) for 1..cores+1 threads, then the
 * per-step synchronisation cost of both step protocols (engines driven directly, tinybench).
 * Options: --threads 1,2,4, --command-steps N (steps per command run, default 200), --repeat N,
 * --steps N and --time MS (the synchronisation bench), --models mlp,logreg, --batches 128,512,
 * --backend, --json FILE.
 */
import { writeFileSync } from "node:fs";
import { availableParallelism, cpus } from "node:os";
import { parseArgs } from "node:util";
import { Bench } from "tinybench";
import { backend } from "../src/tensor/active.js";
import { Tensor } from "../src/tensor/tensor.js";
import { useBackend, type BackendName } from "../src/backends/select.js";
import type { OptimizerConfig } from "../src/train/parallel/optimizer-kernels.js";
import { loadMnist, type Dataset } from "../src/train/data.js";
import {
  inProcessEngine,
  type EngineFactory,
  type StepEngine,
} from "../src/train/parallel/engine.js";
import { initParams, modelSpec, type ModelSpec } from "../src/train/models.js";
import { poolEngine, type StepProtocol } from "../src/train/parallel/pool.js";
import { Rng } from "../src/train/random.js";
import { prepareTraining } from "../src/train/trainer.js";
import { runStep } from "../src/train/parallel/state.js";
import { shardCountFor } from "../src/train/config.js";
import { commandLine, measureCommand } from "./command.js";
import type { SharedState } from "../src/train/parallel/state.js";

const { values } = parseArgs({
  options: {
    threads: { type: "string" },
    steps: { type: "string", default: "20" },
    "command-steps": { type: "string", default: "200" },
    repeat: { type: "string", default: "3" },
    time: { type: "string", default: "1500" },
    models: { type: "string", default: "mlp,logreg" },
    batches: { type: "string", default: "128,512" },
    backend: { type: "string", default: "wasm" },
    protocol: { type: "string", default: "barrier" },
    json: { type: "string" },
  },
});
const cores = availableParallelism();
const threadCounts = values.threads
  ? values.threads.split(",").map(Number)
  : [...Array.from({ length: cores }, (_, i) => i + 1), cores + 1];
const stepsPerIteration = Number(values.steps);
const commandSteps = Number(values["command-steps"]);
const repeat = Number(values.repeat);
const protocol = values.protocol as StepProtocol;
useBackend(values.backend as BackendName);
const optimizer: OptimizerConfig = { kind: "sgd", lr: 0.01 };

/** A warm engine over shared state, and a function running `steps` optimizer steps. */
interface Runner {
  engine: StepEngine;
  shared: SharedState;
  run(steps: number): Promise<void>;
}

async function makeRunner(
  spec: ModelSpec,
  data: Dataset,
  batchSize: number,
  shardCount: number,
  factory: EngineFactory,
): Promise<Runner> {
  const initial = initParams(spec, new Rng(0), "float32");
  const { trainPlan, shared } = prepareTraining(
    spec,
    data,
    "float32",
    optimizer,
    shardCount,
    batchSize,
    initial,
  );
  const engine = await factory(shared, trainPlan, optimizer);
  const n = data.X.shape[0];
  const order = new Rng(1).permutation(n);
  let t = 0;
  const run = async (steps: number) => {
    for (let i = 0; i < steps; i++) {
      const start = (t * batchSize) % (n - batchSize);
      t++;
      await runStep(engine, shared, order.subarray(start, start + batchSize), t);
    }
  };
  await run(3); // warm: workers started, plans built, JIT and WASM tiers up
  return { engine, shared, run };
}

/** Mean seconds of one `run(stepsPerIteration)` measured by tinybench. */
async function measure(name: string, runner: Runner): Promise<number> {
  const bench = new Bench({ time: Number(values.time), warmupTime: 200 });
  bench.add(name, () => runner.run(stepsPerIteration));
  await bench.run();
  const result = bench.tasks[0].result;
  if (!result || !("latency" in result)) throw new Error(`${name}: no result`);
  return result.latency.mean / 1000;
}

const data = loadMnist({ dtype: "float32" });
const rows: Record<string, unknown>[] = [];
const lines: string[] = [];
const cpu = cpus()[0]?.model ?? "unknown CPU";
lines.push(
  `# bench:scaling: ${cpu}, ${cores} cores, Node ${process.version}, ${backend().name} kernels, fp32, ${protocol} protocol, ${stepsPerIteration} steps per iteration`,
);

for (const modelName of values.models.split(",")) {
  const spec =
    modelName === "mlp" ? modelSpec("mlp", 784, [256], 10) : modelSpec("logreg", 784, [], 10);
  for (const batchSize of values.batches.split(",").map(Number)) {
    const shardCount = shardCountFor(spec, batchSize);
    const label = `${modelName} [${spec.sizes.join("-")}] batch ${batchSize} (${shardCount} micro-shards)`;
    const args = (threads: number) => [
      "--dataset",
      "mnist",
      "--model",
      modelName,
      ...(modelName === "mlp" ? ["--hidden", "256"] : []),
      "--batch-size",
      String(batchSize),
      "--optimizer",
      "sgd",
      "--lr",
      "0.01",
      "--augment",
      "0",
      "--steps",
      String(commandSteps),
      "--threads",
      String(threads),
      "--backend",
      values.backend,
    ];
    lines.push(
      "",
      `## ${label}`,
      "",
      `\`${commandLine(args(1))}\` and the same with other --threads; median of ${repeat} runs.`,
      "",
      "| threads | samples/s (all steps) | cold (first 20) | warm (second half) | warm vs 1 thread | efficiency | paramsHash |",
      "|---:|---:|---:|---:|---:|---:|---|",
    );
    let oneThread = NaN;
    let firstHash = "";
    for (const threads of threadCounts) {
      const r = await measureCommand(args(threads), repeat);
      if (threads === 1) [oneThread, firstHash] = [r.warmSamplesPerSecond, r.paramsHash];
      const speedup = r.warmSamplesPerSecond / oneThread;
      const same = r.paramsHash === firstHash ? "same as 1 thread" : "DIFFERS";
      lines.push(
        `| ${threads} | ${r.samplesPerSecond.toFixed(0)} | ${r.coldSamplesPerSecond.toFixed(0)} | ${r.warmSamplesPerSecond.toFixed(0)} | ${speedup.toFixed(2)} | ${((speedup / threads) * 100).toFixed(0)}% | ${same} |`,
      );
      rows.push({ model: modelName, ...r, runs: undefined, speedupVs1: speedup });
      console.error(lines[lines.length - 1]);
    }
  }
}

// Synchronisation cost: a step whose compute is negligible (logreg 4->2, one row per shard), so
// its time is the two phase round-trips; the in-process step time is subtracted.
lines.push(
  "",
  "## Per-step synchronisation overhead (two phases per step; compute ~0)",
  "",
  "A step of logreg 4->2 on one row per micro-shard: its compute is a few µs, so the pool's step",
  "time minus the in-process step time is what starting and joining two phases costs.",
  "",
  "| protocol | threads | pool µs per step | in-process µs per step | overhead µs |",
  "|---|---:|---:|---:|---:|",
);
const tiny = modelSpec("logreg", 4, [], 2);
const tinyRows = 4096;
const tinyData: Dataset = {
  X: new Tensor(data.X.data.subarray(0, tinyRows * 4), [tinyRows, 4]),
  y: new Int32Array(tinyRows),
  classes: 2,
};
for (const proto of ["barrier", "tasks"] as const) {
  for (const threads of threadCounts.filter((t) => t > 1 && t <= cores)) {
    const base = await makeRunner(tiny, tinyData, threads, threads, inProcessEngine);
    const baseUs = ((await measure("tiny in-process", base)) / stepsPerIteration) * 1e6;
    const pool = poolEngine({ threads, protocol: proto });
    const runner = await makeRunner(tiny, tinyData, threads, threads, pool);
    const poolUs = ((await measure(`tiny ${proto} ${threads}`, runner)) / stepsPerIteration) * 1e6;
    await runner.engine.close();
    const overheadUs = poolUs - baseUs;
    lines.push(
      `| ${proto} | ${threads} | ${poolUs.toFixed(1)} | ${baseUs.toFixed(1)} | ${overheadUs.toFixed(1)} |`,
    );
    rows.push({
      protocol: proto,
      threads,
      poolUs,
      inProcessUs: baseUs,
      syncOverheadUs: overheadUs,
    });
  }
}
console.log(lines.join("\n"));
if (values.json)
  writeFileSync(values.json, JSON.stringify({ cpu, cores, node: process.version, rows }, null, 2));
