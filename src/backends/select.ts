/** Backends by name, so the CLI and every worker thread can select the same one. */
import { setBackend } from "../tensor/active.js";
import { type Backend } from "../tensor/backend.js";
import { jsBackend } from "../tensor/kernels/js.js";
import { isWasmBackend, tryWasmBackend } from "./wasm.js";
import { wasmTrainingKernels } from "./wasm-training/compiled.js";
import type { TrainingKernels } from "./training.js";
import { clearPool } from "../tensor/tensor.js";

/**
 * The backends adjoint ships: "wasm" runs the relaxed-SIMD kernels where the engine accepts them
 * (in every thread of a process alike: the V8 flag that enables them is process-wide), else plain
 * SIMD; "wasm-plain" always plain SIMD, for comparisons.
 */
export type BackendName = "js" | "wasm" | "wasm-plain";

/**
 * Makes the named backend active in this thread and returns it; "wasm" falls back to "js"
 * (reporting why through `onFallback`) where WASM SIMD or the built module is missing. A change
 * of backend empties the buffer pool, whose arrays may lie in the previous backend's memory.
 */
export function useBackend(name: BackendName, onFallback?: (error: Error) => void): Backend {
  if (name !== "js" && name !== "wasm" && name !== "wasm-plain") {
    throw new TypeError(
      `useBackend: unknown backend ${typeof name === "string" ? `"${name}"` : String(name)} (expected "js", "wasm" or "wasm-plain")`,
    );
  }
  if (onFallback !== undefined && typeof onFallback !== "function") {
    throw new TypeError(`useBackend: onFallback must be a function, got ${typeof onFallback}`);
  }
  const wasm =
    name === "js" ? undefined : tryWasmBackend(onFallback, name === "wasm" ? "auto" : "simd");
  const chosen = wasm ?? jsBackend;
  if (setBackend(chosen) !== chosen) clearPool();
  return chosen;
}

/** The training kernels of each wasm backend, made on first use. */
const training = new WeakMap<Backend, TrainingKernels>();

/** What `b` offers the trainer beyond the Backend interface, where it offers anything. */
export function trainingKernels(b: Backend): TrainingKernels | undefined {
  if (!isWasmBackend(b)) return undefined;
  let kernels = training.get(b);
  if (kernels === undefined) training.set(b, (kernels = wasmTrainingKernels(b)));
  return kernels;
}
