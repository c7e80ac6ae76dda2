import { defineConfig } from "vitest/config";

// The suite runs on two backends (test/setup-backend.ts reads ADJOINT_BACKEND): every test that
// computes through the active backend runs on the plain-TypeScript reference kernels and again
// on the WASM SIMD kernels. Files that pick their backends themselves (each op case already
// checked on js, wasm and wasm-with-every-kernel), or compute nothing through one (the CLI picks
// its own, the PRNG, files, data, arguments), run once, in the js project: the same test twice
// would only cost time. (long-chains: the pool and both allocators are exercised there on js;
// the arena's own O(1) paths are tested in arena.test.ts.)
const ONCE = [
  "test/graph/ops.test.ts",
  "test/graph/bad-input.test.ts",
  "test/autodiff/random-graphs.test.ts",
  "test/autodiff/simplify.test.ts",
  "test/runtime/evaluator-pool.test.ts",
  "test/runtime/long-chains.test.ts",
  "test/backends/arena.test.ts",
  "test/backends/arena-faults.test.ts",
  "test/backends/select.test.ts",
  "test/tensor/js-fastpaths.test.ts",
  "test/backends/wasm.test.ts",
  "test/backends/wasm-kernels.test.ts",
  "test/train/data.test.ts",
  "test/train/parallel.test.ts",
  "test/train/parallel/slots.test.ts",
  "test/train/parallel/update-wasm.test.ts",
  "test/train/parallel/compiled.test.ts",
  "test/train/plot.test.ts",
  "test/train/random.test.ts",
  "test/train/serialize.test.ts",
  "test/train/safetensors.test.ts",
  "test/train/safetensors-python.test.ts",
  "test/inspect/trace.test.ts",
  "test/cli/**/*.test.ts",
  "test/package/**/*.test.ts",
  "test/readme.test.ts",
  "test/examples.test.ts",
];

const project = (backend: "js" | "wasm") => ({
  extends: true as const,
  test: {
    name: backend,
    include: ["test/**/*.test.ts"],
    exclude: backend === "js" ? [] : ONCE,
    setupFiles: ["test/setup-backend.ts"],
    env: { ADJOINT_BACKEND: backend },
  },
});

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    projects: [project("js"), project("wasm")],
  },
});
