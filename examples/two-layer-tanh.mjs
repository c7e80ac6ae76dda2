// A custom graph trained on every core with fit(): a two-layer tanh network learning
// z = sin(x) cos(y) on 4096 points of [-3, 3]^2, float32, then checked on 1 thread.
// Run: npm run build && node examples/two-layer-tanh.mjs
import { availableParallelism } from "node:os";
import { fit, matmul, mean, tanh, tensor, variable } from "adjoint";

const n = 4096;
const hidden = 64;
const points = Float32Array.from({ length: 2 * n }, (_, i) => ((i * 0.618034) % 1) * 6 - 3);
for (let r = 0; r < n; r++) points[2 * r + 1] = ((r * 0.7548777) % 1) * 6 - 3;
const targets = Float32Array.from(
  { length: n },
  (_, r) => Math.sin(points[2 * r]) * Math.cos(points[2 * r + 1]),
);

const X = variable("X", { shape: [null, 2], dtype: "float32" });
const Z = variable("Z", { shape: [null, 1], dtype: "float32" });
const W1 = variable("W1", { shape: [2, hidden], dtype: "float32" });
const b1 = variable("b1", { shape: [hidden], dtype: "float32" });
const W2 = variable("W2", { shape: [hidden, 1], dtype: "float32" });
const b2 = variable("b2", { shape: [1], dtype: "float32" });
const error = matmul(tanh(matmul(X, W1).add(b1)), W2)
  .add(b2)
  .sub(Z);
const loss = mean(error.mul(error));

// Deterministic initial values (Glorot-like scales from a fixed low-discrepancy sequence).
const init = (size, scale) =>
  Float32Array.from({ length: size }, (_, i) => scale * (((i * 0.381966 + 0.1) % 1) * 2 - 1));
const options = {
  loss,
  params: new Map([
    [W1, tensor(init(2 * hidden, 1.2), { shape: [2, hidden] })],
    [b1, tensor(init(hidden, 1), { shape: [hidden] })],
    [W2, tensor(init(hidden, 0.2), { shape: [hidden, 1] })],
    [b2, tensor(new Float32Array(1), { shape: [1] })],
  ]),
  data: new Map([
    [X, tensor(points, { shape: [n, 2] })],
    [Z, tensor(targets, { shape: [n, 1] })],
  ]),
  batchSize: 256, // 8 micro-shards of 32 rows
  epochs: 40,
  optimizer: { kind: "adam", lr: 0.01 },
  seed: 1,
};

const start = performance.now();
const result = await fit({
  ...options,
  threads: "auto",
  onEpoch: ({ epoch, loss: value }) => {
    if (epoch % 10 === 0) console.log(`epoch ${epoch}: mean squared error ${value.toFixed(5)}`);
  },
});
const seconds = (performance.now() - start) / 1000;
console.log(
  `${result.steps} steps on ${result.threads} threads (${availableParallelism()} cores), ` +
    `${((result.steps * options.batchSize) / seconds).toFixed(0)} samples/s`,
);
const single = await fit({ ...options, threads: 1 });
console.log(`same parameters on 1 thread: ${single.paramsHash === result.paramsHash}`);
