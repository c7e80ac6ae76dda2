/**
 * Training throughput through the command users type (`npm run bench:train`), peers side by side
 * in the same run. Each adjoint row is `npm run train-parallel -- ...` (dist/src/cli/train.js) in
 * a fresh process, its --json samplesPerSecond over every step (start-up and JIT warm-up
 * included), with the cold (first 20 steps) and warm (second half) figures of the same runs; the
 * median of --repeat runs (default 3). Peers: jax-js (wasm, `jit`) and TF.js (wasm) in this
 * process, PyTorch and NumPy through ../shared/peers/ where python3 has them; each peer's figure
 * is its steady state (after its warm-up or compile steps). Options: --repeat N, --json FILE.
 */
import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { Bench } from "tinybench";
import { commandLine, measureCommand, median, type CommandSummary } from "./command.js";
import {
  jaxSteps,
  loadJax,
  loadTf,
  nodePeer,
  pythonPeers,
  tfStep,
  type PeerBatch,
  type PeerFigure,
} from "./peers.js";

const { values } = parseArgs({
  options: {
    repeat: { type: "string", default: "3" },
    json: { type: "string" },
    // `npm run bench:train -- --only models`: one section (mlp, default, exercise, models).
    only: { type: "string" },
  },
});
const only = (section: string) => values.only === undefined || values.only === section;
const repeat = Number(values.repeat);

/** Synthetic MNIST-shaped rows (uniform pixels, labels cycling): speed does not depend on them. */
function batchOf(hidden: number, rows: number): PeerBatch {
  let s = 12345;
  const X = Float32Array.from({ length: rows * 784 }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  });
  return {
    sizes: [784, hidden, 10],
    X,
    y: Int32Array.from({ length: rows }, (_, i) => i % 10),
    lr: 0.05,
  };
}

/** jax-js figures: cold (first 20 steps, compile included) and warm (after 5 steps), median of 3. */
async function jaxFigure(b: PeerBatch, steps: number): Promise<PeerFigure & { cold?: number }> {
  const jax = await loadJax();
  if (typeof jax === "string") return { peer: "jax-js wasm", error: jax };
  const rows = b.y.length;
  const colds: number[] = [];
  const warms: number[] = [];
  for (let r = 0; r < 3; r++) {
    const run = jaxSteps(jax, b);
    let t0 = performance.now();
    await run(20);
    colds.push((20 * rows) / ((performance.now() - t0) / 1000));
    t0 = performance.now();
    await run(steps);
    warms.push((steps * rows) / ((performance.now() - t0) / 1000));
  }
  return { peer: "jax-js wasm", samplesPerSecond: median(warms), cold: median(colds) };
}

/** TF.js wasm: tinybench over warm steps. */
async function tfFigure(b: PeerBatch): Promise<PeerFigure> {
  const tf = await loadTf();
  if (typeof tf === "string") return { peer: "TF.js wasm", error: tf };
  try {
    const step = await tfStep(tf, "wasm", b);
    const bench = new Bench({ time: 2000, iterations: 5, warmupTime: 0, warmupIterations: 0 });
    bench.add("tfjs wasm", step);
    await bench.run();
    const result = bench.tasks[0].result;
    if (result.state !== "completed") throw new Error(result.state);
    return { peer: "TF.js wasm", samplesPerSecond: b.y.length / (result.latency.mean / 1000) };
  } catch (error) {
    return { peer: "TF.js wasm", error: (error as Error).message.split("\n")[0] };
  }
}

const k = (x: number | undefined) => (x === undefined ? "" : `${(x / 1000).toFixed(1)}k`);
const report: Record<string, unknown> = {};

/** One table: adjoint's command rows, then the peers with adjoint's ratio to each. */
function table(
  title: string,
  rows: [string, string[], CommandSummary][],
  peers: (PeerFigure & { cold?: number; goal?: string })[],
): void {
  console.log(`\n### ${title}\n`);
  console.log(
    "| engine | samples/s (all steps) | cold (first 20) | warm (second half) | command |",
  );
  console.log("|---|---:|---:|---:|---|");
  for (const [label, args, r] of rows) {
    const cmd = `\`${commandLine(args)}\``;
    console.log(
      `| ${label} | ${k(r.samplesPerSecond)} | ${k(r.coldSamplesPerSecond)} | ${k(r.warmSamplesPerSecond)} | ${cmd} |`,
    );
  }
  if (peers.length === 0) return;
  const [, , first] = rows[0];
  console.log("\n| peer (same run) | samples/s (steady) | cold | adjoint ÷ peer | goal |");
  console.log("|---|---:|---:|---:|---|");
  for (const p of peers) {
    if (p.samplesPerSecond === undefined) {
      console.log(`| ${p.peer} | not measured: ${p.error} | | | ${p.goal ?? ""} |`);
      continue;
    }
    const ratio = (first.samplesPerSecond / p.samplesPerSecond).toFixed(2);
    console.log(
      `| ${p.peer} | ${k(p.samplesPerSecond)} | ${k(p.cold)} | ${ratio}x | ${p.goal ?? ""} |`,
    );
  }
  report[title] = {
    rows: rows.map(([label, args, r]) => ({ label, args, ...r, runs: undefined })),
    peers,
  };
}

const cpu = cpus();
console.log(
  `Machine: ${cpu[0]?.model ?? "unknown CPU"}, ${cpu.length} cores; Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; median of ${repeat} runs per adjoint row; float32 unless said`,
);

const mlp = (batch: number, threads: number, steps: number) => [
  "--dataset",
  "mnist",
  "--model",
  "mlp",
  "--hidden",
  "256",
  "--batch-size",
  String(batch),
  "--optimizer",
  "sgd",
  "--lr",
  "0.05",
  "--augment",
  "0",
  "--steps",
  String(steps),
  "--threads",
  String(threads),
];
const run = async (label: string, args: string[]): Promise<[string, string[], CommandSummary]> => [
  label,
  args,
  await measureCommand(args, repeat),
];

// 1. The MLP at batch 128, one thread.
if (only("mlp")) {
  const rows = [await run("adjoint, 1 thread", mlp(128, 1, 200))];
  const b = batchOf(256, 128);
  const torch = pythonPeers(
    "peer_mlp_torch.py",
    ["--threads", "1", "--hidden", "256", "--batch-size", "128", "--steps", "200"],
    "PyTorch CPU, 1 thread",
  );
  table("MNIST MLP 784-256-10, batch 128, SGD, 200 steps, 1 thread", rows, [
    ...torch.map((p) => ({ ...p, goal: ">= 0.6x" })),
    { ...(await jaxFigure(b, 200)), goal: ">= 3x" },
    { ...(await tfFigure(b)), goal: ">= 15x" },
  ]);
}

// 2. The MLP at batch 512: one thread against two.
if (only("mlp")) {
  const one = await run("adjoint, 1 thread", mlp(512, 1, 200));
  const two = await run("adjoint, 2 threads", mlp(512, 2, 200));
  const torch = pythonPeers(
    "peer_mlp_torch.py",
    ["--threads", "2", "--hidden", "256", "--batch-size", "512", "--steps", "200"],
    "PyTorch CPU, 2 threads",
  );
  table(
    "MNIST MLP 784-256-10, batch 512, SGD, 200 steps",
    [one, two],
    [
      ...torch.map((p) => ({ ...p, goal: "2 threads >= 1.0x" })),
      await jaxFigure(batchOf(256, 512), 60),
    ],
  );
  const speedup = two[2].samplesPerSecond / one[2].samplesPerSecond;
  console.log(
    `\n2 threads ÷ 1 thread: ${speedup.toFixed(2)}x (goal >= 1.8x); paramsHash ${one[2].paramsHash === two[2].paramsHash ? "identical" : "DIFFERS"}`,
  );
}

// 3. The default command: what `npm run train-parallel` picks, against the thread counts it chose from.
if (only("default")) {
  const base = ["--epochs", "3"];
  const rows = [
    await run("defaults (--threads auto)", base),
    await run("--threads 1", [...base, "--threads", "1"]),
    await run("--threads 2", [...base, "--threads", "2"]),
  ];
  table("The default run (MNIST MLP, Adam, batch 64, 1-pixel shifts), 3 epochs", rows, []);
  const same = new Set(rows.map(([, , r]) => r.paramsHash)).size === 1;
  console.log(
    `\nthreads chosen by auto: ${rows[0][2].threads}; paramsHash ${same ? "identical in all three" : "DIFFERS"}`,
  );
}

// 4. The exercise: digits softmax regression, float64.
for (const epochs of only("exercise") ? [20, 100] : []) {
  const args = [
    "--dataset",
    "digits",
    "--model",
    "logreg",
    "--optimizer",
    "sgd",
    "--lr",
    "0.05",
    "--batch-size",
    "50",
    "--dtype",
    "float64",
    "--epochs",
    String(epochs),
  ];
  const rows = [await run("adjoint (defaults: in-process)", args)];
  const peers = pythonPeers("peer_logreg.py", ["--epochs", String(epochs)], "NumPy / PyTorch");
  table(
    `The exercise: digits softmax regression, batch 50, SGD lr 0.05, float64, ${epochs} epochs`,
    rows,
    peers.map((p) => ({
      ...p,
      goal: p.peer.startsWith("numpy") ? (epochs === 20 ? ">= 1.5x" : ">= 2x") : "",
    })),
  );
}

// 5. The cnn and transformer on the official MNIST: the peers' architectures (the tutorial's
// cnn, the course's transformer: SGD, batch 64) on 1 and 2 threads, then the defaults (Adam).
if (only("models")) {
  const steps = "150";
  const common = ["--batch-size", "64", "--steps", steps, "--augment", "0"];
  for (const [model, arch, fallback] of [
    ["cnn", "tutorial", "wide"],
    ["transformer", "course", "residual"],
  ] as const) {
    const sgd = ["--model", model, "--arch", arch, "--optimizer", "sgd", "--lr", "0.01", ...common];
    const one = await run("adjoint, 1 thread", [...sgd, "--threads", "1"]);
    const two = await run("adjoint, 2 threads", [...sgd, "--threads", "2"]);
    const peerArgs = ["--model", model, "--threads", "1", "--batch-size", "64", "--steps", "60"];
    table(
      `${model} --arch ${arch} (the peers' definition), SGD, batch 64, ${steps} steps, official MNIST`,
      [one, two],
      [
        ...pythonPeers("peer_models_torch.py", peerArgs, "PyTorch CPU, 1 thread").map((p) => ({
          ...p,
          goal: ">= 0.6x",
        })),
        nodePeer("peer_models_jaxjs.mjs", [model, "64", "20"], "jax-js wasm (jit)"),
        nodePeer(
          "peer_models_tfjs.mjs",
          [model === "cnn" ? "cpu" : "wasm", model, "64", "10"],
          `TF.js ${model === "cnn" ? "cpu" : "wasm"}`,
        ),
      ],
    );
    const speedup = two[2].samplesPerSecond / one[2].samplesPerSecond;
    console.log(
      `\n2 threads ÷ 1 thread: ${speedup.toFixed(2)}x (goal >= 1.8x); paramsHash ${one[2].paramsHash === two[2].paramsHash ? "identical" : "DIFFERS"}`,
    );
    // The goal's own measure: a batch that splits (256: 16 shards) over an epoch (234 steps), in
    // two pairs of runs of opposite order, since the machine's load drifts between runs.
    const epoch = [...sgd.slice(0, -6), "--batch-size", "256", "--steps", "234", "--augment", "0"];
    const pairs: string[] = [];
    for (const order of [
      [1, 2],
      [2, 1],
    ]) {
      const by = new Map<number, CommandSummary>();
      for (const t of order) by.set(t, await measureCommand([...epoch, "--threads", `${t}`], 1));
      const [a, b] = [by.get(1)!, by.get(2)!];
      pairs.push(
        `${(b.samplesPerSecond / a.samplesPerSecond).toFixed(2)}x (warm ${(b.warmSamplesPerSecond / a.warmSamplesPerSecond).toFixed(2)}x; ${k(a.samplesPerSecond)} -> ${k(b.samplesPerSecond)})`,
      );
    }
    console.log(
      `2 threads ÷ 1 thread at batch 256 over an epoch (\`${commandLine([...epoch, "--threads", "T"])}\`), two pairs: ${pairs.join(", ")} (goal >= 1.8x)`,
    );
    // The default architecture (Adam, its schedule and shifts) against PyTorch on the same net.
    const defaults = ["--model", model, "--batch-size", "64", "--steps", steps];
    const d1 = await run(`adjoint --arch ${fallback}, 1 thread`, [...defaults, "--threads", "1"]);
    const d2 = await run(`adjoint --arch ${fallback}, 2 threads`, [...defaults, "--threads", "2"]);
    table(
      `${model} --arch ${fallback} (the default), Adam, batch 64, ${steps} steps, official MNIST`,
      [d1, d2],
      [
        ...pythonPeers(
          "bench/peers/models_torch.py",
          ["--model", model, "--threads", "1", "--batch-size", "64", "--steps", "60"],
          "PyTorch CPU, 1 thread",
        ),
        ...pythonPeers(
          "bench/peers/models_torch.py",
          ["--model", model, "--threads", "2", "--batch-size", "64", "--steps", "60"],
          "PyTorch CPU, 2 threads",
        ),
      ],
    );
  }
}

if (values.json) writeFileSync(values.json, JSON.stringify(report, null, 2));
