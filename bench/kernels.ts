/**
 * Kernel benchmark (`npm run bench:kernels`): fp32 matmul GFLOP/s and element-wise GB/s for the
 * js and wasm backends (copying, plain SIMD in the arena, and the default: relaxed SIMD where the
 * engine has it) side by side in one process, 1 thread; prints markdown tables.
 */
import { Bench } from "tinybench";
import { setBackend } from "../src/tensor/active.js";
import { type Backend } from "../src/tensor/backend.js";
import { jsBackend } from "../src/tensor/kernels/js.js";
import { createWasmBackend } from "../src/backends/wasm.js";
import { sizeOf } from "../src/tensor/shape.js";
import { release, tensor, type Tensor } from "../src/tensor/tensor.js";
import { pythonPeers } from "./peers.js";
import { conv2d, Evaluator, gradients, matmul, sum, variable, type Node } from "../src/index.js";

/** One matmul case: op(A) @ op(B) with op(A) m x k and op(B) k x n. */
interface MatmulCase {
  label: string;
  m: number;
  k: number;
  n: number;
  transA: boolean;
  transB: boolean;
}

const square = [64, 128, 256, 512, 1024].map((s): MatmulCase => ({
  label: `${s}²`,
  m: s,
  k: s,
  n: s,
  transA: false,
  transB: false,
}));
const transposed = (
  [
    [true, false],
    [false, true],
    [true, true],
  ] as const
).map(([transA, transB]): MatmulCase => ({
  label: `256² ${transA ? "Aᵀ" : "A"}${transB ? "Bᵀ" : "B"}`,
  m: 256,
  k: 256,
  n: 256,
  transA,
  transB,
}));
// MLP 784-256-10 at batch 128: forward x@W1, h@W2; backward W1ᵀ-free forms as the trainer uses.
const mlp: MatmulCase[] = [
  { label: "fwd x@W1 128x784 @ 784x256", m: 128, k: 784, n: 256, transA: false, transB: false },
  { label: "fwd h@W2 128x256 @ 256x10", m: 128, k: 256, n: 10, transA: false, transB: false },
  {
    label: "bwd dW1 = xᵀ@dh (784x128 @ 128x256)",
    m: 784,
    k: 128,
    n: 256,
    transA: true,
    transB: false,
  },
  {
    label: "bwd dW2 = hᵀ@dy (256x128 @ 128x10)",
    m: 256,
    k: 128,
    n: 10,
    transA: true,
    transB: false,
  },
  {
    label: "bwd dh = dy@W2ᵀ (128x10 @ 10x256)",
    m: 128,
    k: 10,
    n: 256,
    transA: false,
    transB: true,
  },
  {
    label: "bwd dx = dh@W1ᵀ (128x256 @ 256x784)",
    m: 128,
    k: 256,
    n: 784,
    transA: false,
    transB: true,
  },
];

/** Uniform float32 values in [-1, 1) from a fixed linear congruential sequence. */
function randomTensor(shape: number[], seed: number): Tensor {
  const size = sizeOf(shape);
  const data = new Float32Array(size);
  let s = seed >>> 0;
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 2 ** 31 - 1;
  }
  return tensor(data, { shape });
}

/** Mean seconds per call of `fn`, measured by tinybench within roughly `budgetMs`. */
async function secondsPerCall(name: string, fn: () => void, estimate: number): Promise<number> {
  // Cheap calls get many iterations in 150 ms; multi-second calls (js at 1024²) run twice.
  const bench = new Bench({
    time: 150,
    iterations: estimate > 0.2 ? 2 : 5,
    warmupTime: estimate > 0.2 ? 0 : 30,
    warmupIterations: estimate > 0.2 ? 1 : 5,
  });
  bench.add(name, fn);
  await bench.run();
  const result = bench.tasks[0].result;
  if (result.state !== "completed") throw new Error(`bench ${name}: ${result.state}`);
  return result.latency.mean / 1000;
}

/** GFLOP/s of one backend on one case. */
async function matmulRate(backend: Backend, c: MatmulCase): Promise<number> {
  // Active while operands are made and results released, as in training: the wasm backend's
  // operands and results then live in its arena (read and written in place).
  setBackend(backend);
  const a = randomTensor(c.transA ? [c.k, c.m] : [c.m, c.k], 1);
  const b = randomTensor(c.transB ? [c.n, c.k] : [c.k, c.n], 2);
  const flops = 2 * c.m * c.n * c.k;
  const start = performance.now();
  backend.matmul(a, b, c.transA, c.transB);
  const estimate = (performance.now() - start) / 1000;
  const seconds = await secondsPerCall(
    `${backend.name} ${c.label}`,
    () => {
      release(backend.matmul(a, b, c.transA, c.transB));
    },
    estimate,
  );
  setBackend(jsBackend);
  return flops / seconds / 1e9;
}

async function matmulTable(title: string, cases: MatmulCase[], backends: Backend[]): Promise<void> {
  console.log(`\n### ${title}\n`);
  console.log(`| shape | ${backends.map((b) => `${b.name} GFLOP/s`).join(" | ")} | wasm/js |`);
  console.log(`|---|${backends.map(() => "---:").join("|")}|---:|`);
  for (const c of cases) {
    const rates: number[] = [];
    for (const backend of backends) rates.push(await matmulRate(backend, c));
    const ratio = rates[rates.length - 1] / rates[0];
    console.log(
      `| ${c.label} | ${rates.map((r) => r.toFixed(2)).join(" | ")} | ${ratio.toFixed(1)}x |`,
    );
  }
}

async function addTable(backends: Backend[]): Promise<void> {
  console.log("\n### add fp32 (same shapes; GB/s counts 2 reads + 1 write)\n");
  console.log(`| elements | ${backends.map((b) => `${b.name} GB/s`).join(" | ")} | wasm/js |`);
  console.log(`|---|${backends.map(() => "---:").join("|")}|---:|`);
  for (const shape of [
    [500, 1],
    [128, 256],
    [1024, 1024],
  ]) {
    const rates: number[] = [];
    for (const backend of backends) {
      setBackend(backend);
      const x = randomTensor(shape, 3);
      const y = randomTensor(shape, 4);
      const seconds = await secondsPerCall(
        `${backend.name} add`,
        () => {
          release(backend.binary("add", x, y));
        },
        0,
      );
      setBackend(jsBackend);
      rates.push((3 * 4 * sizeOf(shape)) / seconds / 1e9);
    }
    const ratio = rates[rates.length - 1] / rates[0];
    console.log(
      `| ${sizeOf(shape)} | ${rates.map((r) => r.toFixed(2)).join(" | ")} | ${ratio.toFixed(1)}x |`,
    );
  }
}

/** The training step's element-wise kernels at the MLP's and the digits' shapes, js vs wasm. */
async function elementwiseTable(backends: Backend[]): Promise<void> {
  console.log("\n### training element-wise kernels fp32 (GB/s counts the bytes read + written)\n");
  console.log(
    `| kernel | shape | ${backends.map((b) => `${b.name} GB/s`).join(" | ")} | wasm/js |`,
  );
  console.log(`|---|---|${backends.map(() => "---:").join("|")}|---:|`);
  const kinds: [string, number, (b: Backend, x: Tensor, row: Tensor) => Tensor][] = [
    ["relu", 2, (b, x) => b.unary("relu", x)],
    ["step", 2, (b, x) => b.unary("step", x)],
    ["add (n,k)+(1,k)", 2, (b, x, row) => b.binary("add", x, row)],
    ["mul same shape", 3, (b, x) => b.binary("mul", x, x)],
    ["sumTo (n,k)->(1,k)", 1, (b, x, row) => b.sumTo(x, row.shape)],
  ];
  for (const [label, passes, run] of kinds) {
    for (const shape of [
      [128, 256],
      [128, 10],
      [50, 10],
    ]) {
      const rates: number[] = [];
      for (const backend of backends) {
        setBackend(backend);
        const x = randomTensor(shape, 3);
        const row = randomTensor([1, shape[1]], 4);
        const seconds = await secondsPerCall(
          `${backend.name} ${label}`,
          () => {
            release(run(backend, x, row));
          },
          0,
        );
        setBackend(jsBackend);
        rates.push((passes * 4 * sizeOf(shape)) / seconds / 1e9);
      }
      const ratio = rates[rates.length - 1] / rates[0];
      console.log(
        `| ${label} | ${shape.join("x")} | ${rates.map((r) => r.toFixed(2)).join(" | ")} | ` +
          `${ratio.toFixed(1)}x |`,
      );
    }
  }
}

/** One N-D case: a graph of variables `shapes`, timed forward and with every input's gradient. */
interface NdCase {
  label: string;
  shapes: number[][];
  build: (...xs: Node[]) => Node;
  /** Floating-point operations of the forward value (the gradients cost about twice more). */
  flops: number;
}

const ndCases: NdCase[] = [
  {
    label: "conv2d [64,1,28,28] * [8,1,5,5]",
    shapes: [
      [64, 1, 28, 28],
      [8, 1, 5, 5],
    ],
    build: (x, w) => conv2d(x, w),
    flops: 2 * 64 * 8 * 24 * 24 * 25,
  },
  {
    label: "conv2d [64,8,12,12] * [16,8,5,5]",
    shapes: [
      [64, 8, 12, 12],
      [16, 8, 5, 5],
    ],
    build: (x, w) => conv2d(x, w),
    flops: 2 * 64 * 16 * 8 * 8 * 8 * 25,
  },
  {
    label: "matmul [64,28,28] @ [28,128]",
    shapes: [
      [64, 28, 28],
      [28, 128],
    ],
    build: (a, b) => matmul(a, b),
    flops: 2 * 64 * 28 * 28 * 128,
  },
  {
    label: "matmul [64,28,128] @ [64,28,128]ᵀ",
    shapes: [
      [64, 28, 128],
      [64, 28, 128],
    ],
    build: (a, b) => matmul(a, b, { transB: true }),
    flops: 2 * 64 * 28 * 128 * 28,
  },
  {
    label: "matmul [64,28,28] @ [64,28,128]",
    shapes: [
      [64, 28, 28],
      [64, 28, 128],
    ],
    build: (a, b) => matmul(a, b),
    flops: 2 * 64 * 28 * 28 * 128,
  },
  {
    label: "2-D equivalent: matmul [1792,28] @ [28,128]",
    shapes: [
      [1792, 28],
      [28, 128],
    ],
    build: (a, b) => matmul(a, b),
    flops: 2 * 1792 * 28 * 128,
  },
];

/**
 * The N-D ops through the Evaluator (the path a graph takes), forward value and every input's
 * gradient in one run: GFLOP/s counting the forward's operations times 3.
 */
async function ndTable(backends: Backend[]): Promise<void> {
  console.log("\n### N-D ops fp32, forward + every gradient, through the Evaluator (GFLOP/s)\n");
  // PyTorch CPU, one thread, the same cases (forward + autograd of every input), in this run.
  const torch = pythonPeers("bench/peers/kernels_torch.py", [], "PyTorch");
  const failed = torch.find((f) => f.error !== undefined);
  if (failed) console.log(`(PyTorch not measured: ${failed.error})\n`);
  const torchName = torch[0]?.peer ?? "PyTorch";
  console.log(
    `| case | ${backends.map((b) => `${b.name}`).join(" | ")} | wasm/js | ${torchName} | wasm/PyTorch |`,
  );
  console.log(`|---|${backends.map(() => "---:").join("|")}|---:|---:|---:|`);
  for (const c of ndCases) {
    const rates: number[] = [];
    for (const backend of backends) {
      setBackend(backend);
      const xs = c.shapes.map((_, i) => variable(`x${i}`));
      const y = c.build(...xs);
      const u = variable("u");
      const evaluator = new Evaluator([y, ...gradients(sum(y.mul(u)), xs)]);
      const feeds = new Map<Node, Tensor>(
        c.shapes.map((shape, i) => [xs[i], randomTensor(shape, i + 1)]),
      );
      feeds.set(u, randomTensor([...new Evaluator([y]).run(feeds)[0].shape], 9));
      const seconds = await secondsPerCall(
        `${backend.name} ${c.label}`,
        () => void evaluator.run(feeds),
        0.05,
      );
      setBackend(jsBackend);
      rates.push((3 * c.flops) / seconds / 1e9);
    }
    const ratio = rates[rates.length - 1] / rates[0];
    const peer = torch.find((f) => f.case === c.label)?.gflops;
    const peerCells = peer
      ? `${peer.toFixed(2)} | ${(rates[rates.length - 1] / peer).toFixed(2)}x`
      : "- | -";
    console.log(
      `| ${c.label} | ${rates.map((r) => r.toFixed(2)).join(" | ")} | ${ratio.toFixed(1)}x | ${peerCells} |`,
    );
  }
}

/** Runs each backend's matmul for 0.5 s so V8 has tiered the WASM code up (Liftoff to TurboFan). */
function warmUp(backends: Backend[]): void {
  const a = randomTensor([128, 128], 5);
  for (const backend of backends) {
    const end = performance.now() + 500;
    while (performance.now() < end) backend.matmul(a, a, false, false);
  }
}

// Arrays outside the arena (arena hidden from allocateArray): every operand copied in and out.
const copying = {
  ...createWasmBackend({ build: "simd" }),
  arena: undefined,
  name: "wasm (copying)",
};
const wasm = createWasmBackend();
const backends = [jsBackend, copying, createWasmBackend({ build: "simd" }), wasm];
warmUp(backends);
console.log(
  `node ${process.version}, 1 thread, fp32; backends: ${backends.map((b) => b.name)} ` +
    `(wasm: the ${wasm.build} build)`,
);
// `npm run bench:kernels -- --nd`: the N-D table alone.
if (!process.argv.includes("--nd")) {
  await matmulTable("matmul fp32, square", square, backends);
  await matmulTable("matmul fp32, transposes", transposed, backends);
  await matmulTable("matmul fp32, MLP 784-256-10 at batch 128", mlp, backends);
  await addTable(backends);
  await elementwiseTable([jsBackend, wasm]);
}
await ndTable([jsBackend, wasm]);
