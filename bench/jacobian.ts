/**
 * Forward against reverse mode for full Jacobians (`npm run bench:jacobian`): f: R^n -> R^m,
 * f(x) = tanh(A x) with A a constant m x n, float64. Forward mode makes n passes (one per input
 * element), reverse m (one per output element); the time to build the Jacobian's graph and to
 * evaluate it is measured for n, m in 1, 10, 100 (cold: the build; warm: repeated runs).
 */
import { Bench } from "tinybench";
import {
  Evaluator,
  jacobian,
  matmul,
  reshape,
  tanh,
  tensor,
  constant,
  variable,
} from "../src/index.js";

const sizes = [1, 10, 100];
console.log(
  "| n (inputs) | m (outputs) | build fwd ms | build rev ms | run fwd ms | run rev ms | faster |",
);
console.log("|---:|---:|---:|---:|---:|---:|---|");
for (const n of sizes) {
  for (const m of sizes) {
    const x = variable("x", { shape: [n], dtype: "float64" });
    const A = constant(
      tensor(
        Float64Array.from({ length: m * n }, (_, i) => Math.sin(i + 1)),
        { shape: [m, n] },
      ),
    );
    const y = tanh(matmul(A, reshape(x, [n, 1])));
    const x0 = tensor(Float64Array.from({ length: n }, (_, i) => Math.cos(i)));
    const timeBuild = (mode: "fwd" | "rev") => {
      const start = performance.now();
      const node = jacobian(y, x, { mode });
      const evaluator = new Evaluator([node]);
      return { ms: performance.now() - start, evaluator };
    };
    const fwd = timeBuild("fwd");
    const rev = timeBuild("rev");
    const bench = new Bench({ time: 300 });
    bench.add("fwd", () => void fwd.evaluator.run({ x: x0 }));
    bench.add("rev", () => void rev.evaluator.run({ x: x0 }));
    await bench.run();
    const [runF, runR] = bench.tasks.map((t) => {
      const r = t.result;
      if (r.state !== "completed") throw new Error(`bench ${t.name}: ${r.state}`);
      return r.latency.mean;
    });
    const faster = runF < runR ? "forward" : "reverse";
    console.log(
      `| ${n} | ${m} | ${fwd.ms.toFixed(1)} | ${rev.ms.toFixed(1)} | ${runF.toFixed(3)} | ${runR.toFixed(3)} | ${faster} |`,
    );
  }
}
