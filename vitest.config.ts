import { defineConfig } from "vitest/config";

// The whole suite runs twice, once per backend (test/setup-backend.ts reads ADJOINT_BACKEND):
// every op, gradient, evaluator and trainer test holds on the plain-TypeScript reference kernels
// and on the WASM SIMD kernels alike.
const project = (backend: "js" | "wasm") => ({
  extends: true as const,
  test: {
    name: backend,
    include: ["test/**/*.test.ts"],
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
