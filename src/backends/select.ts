/** Backends by name, so the CLI and every worker thread can select the same one. */
import { setBackend } from "../tensor/active.js";
import { type Backend } from "../tensor/backend.js";
import { jsBackend } from "../tensor/kernels/js.js";
import { loadWasmBackend } from "./wasm.js";
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
  const chosen =
    name === "wasm"
      ? loadWasmBackend(onFallback)
      : name === "wasm-plain"
        ? loadWasmBackend(onFallback, "simd")
        : jsBackend;
  if (setBackend(chosen) !== chosen) clearPool();
  return chosen;
}
