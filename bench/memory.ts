/**
 * Memory over long synchronous loops (`npm run bench:memory [-- runs]`): an MLP 784-256-10's loss
 * and gradients at batch 128 run by `Evaluator.run` in a plain `for` loop, and the exercise's
 * `sgdEpoch` over the 10,000 MNIST digits, on the js and wasm backends: RSS and the wasm arena's
 * live arrays after the first runs and at the end. float32 for the MLP, float64 for the exercise.
 */
import {
  Evaluator,
  gradients,
  logisticRegression,
  logSoftmax,
  loadMnist,
  matmul,
  relu,
  sgdEpoch,
  softmaxLoss,
  sum,
  tensor,
  useBackend,
  variable,
  zeros,
  type Node,
  type Tensor,
} from "../src/index.js";
import type { BackendName } from "../src/backends/select.js";
import type { WasmBackend } from "../src/backends/wasm.js";

const runs = Number(process.argv[2] ?? 10_000);
const mb = () => (process.memoryUsage().rss / 1e6).toFixed(0);
const filled = (shape: number[], seed: number) =>
  tensor(
    Float32Array.from(
      { length: shape.reduce((a, b) => a * b, 1) },
      (_, i) => Math.sin(seed + i) / 10,
    ),
    { shape },
  );

console.log(`node ${process.version}; ${runs} runs of the MLP loop per backend\n`);
console.log(
  "| loop | backend | RSS after warm-up | RSS at the end | arena arrays then / at the end | time |",
);
console.log("|---|---|---:|---:|---:|---:|");
for (const name of ["wasm", "js"] as BackendName[]) {
  const backend = useBackend(name) as Partial<WasmBackend>;
  const arrays = () => backend.arena?.stats.arrays ?? "-";
  const X = variable("X"),
    W1 = variable("W1"),
    W2 = variable("W2"),
    Y = variable("Y");
  const loss = sum(Y.mul(logSoftmax(matmul(relu(matmul(X, W1)), W2)))).div(-128);
  const evaluator = new Evaluator([loss, ...gradients(loss, [W1, W2])]);
  const feeds = new Map<Node, Tensor>([
    [X, filled([128, 784], 1)],
    [W1, filled([784, 256], 2)],
    [W2, filled([256, 10], 3)],
    [Y, filled([128, 10], 4)],
  ]);
  // The js kernels take ~30x longer a run: a tenth of the runs shows the same trend.
  const count = name === "js" ? Math.ceil(runs / 10) : runs;
  let warm = ["", 0 as number | string];
  const t0 = performance.now();
  for (let run = 1; run <= count; run++) {
    evaluator.run(feeds);
    if (run === 100) warm = [mb(), arrays()];
  }
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(
    `| Evaluator.run x ${count} | ${name} | ${warm[0]} MB | ${mb()} MB | ${warm[1]} / ${arrays()} | ${seconds} s |`,
  );

  const data = loadMnist({ dtype: "float64" });
  const [Xe, We, be, Ye] = [variable("X"), variable("W"), variable("b"), variable("y")];
  const Z = logisticRegression(Xe, We, be);
  const exerciseLoss = softmaxLoss(Z, Ye, 128);
  const exercise = new Evaluator([Z, exerciseLoss, ...gradients(exerciseLoss, [We, be])]);
  const runModel = (Xb: Tensor, yb: Tensor, Wv: Tensor, bv: Tensor) =>
    exercise.run(
      new Map([
        [Xe, Xb],
        [Ye, yb],
        [We, Wv],
        [be, bv],
      ]),
    ) as [Tensor, Tensor, Tensor, Tensor];
  let [Wv, bv] = [zeros([784, 10]), zeros([10])];
  const labels = tensor(Array.from(data.y));
  let first = ["", 0 as number | string];
  const t1 = performance.now();
  for (let epoch = 1; epoch <= 10; epoch++) {
    ({ W: Wv, b: bv } = sgdEpoch(runModel, data.X, labels, Wv, bv, 128, 0.01));
    if (epoch === 1) first = [mb(), arrays()];
  }
  const epochs = ((performance.now() - t1) / 1000).toFixed(1);
  console.log(
    `| sgdEpoch x 10 (MNIST 10k, batch 128) | ${name} | ${first[0]} MB | ${mb()} MB | ${first[1]} / ${arrays()} | ${epochs} s |`,
  );
}
