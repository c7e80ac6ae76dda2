import { defineConfig } from "vitest/config";

// The suite runs on two backends (test/setup-backend.ts reads ADJOINT_BACKEND): every test that
// computes through the active backend runs on the plain-TypeScript reference kernels and again
// on the WASM SIMD kernels. A file that picks its backends itself (each op case already checked
// on js, wasm and wasm-with-every-kernel), or computes nothing through one (the PRNG, files,
// data, the pool's protocol), is named `*.once.test.ts`; the CLI's tests (test/cli, which picks
// its own backend) and the installed package's (test/package) run once by their place. They run
// in the js project: the same test twice would only cost time.
const ONCE = ["test/**/*.once.test.ts", "test/cli/**/*.test.ts", "test/package/**/*.test.ts"];

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
