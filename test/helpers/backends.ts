/** The backends the op suite runs on: the reference, wasm as shipped, and wasm with every kernel. */
import { jsBackend, type Backend } from "../../src/index.js";
import { useBackend } from "../../src/backends/select.js";
import { createWasmBackend } from "../../src/backends/wasm.js";

/** A named way to get a backend (created lazily, inside beforeAll). */
export interface BackendCase {
  name: string;
  create: () => Backend;
}

/** js; wasm as `useBackend("wasm")` gives it; wasm with size thresholds off (no JS fallbacks). */
export const backendCases: BackendCase[] = [
  { name: "js", create: () => jsBackend },
  {
    name: "wasm",
    create: () =>
      useBackend("wasm", (error) => {
        throw error;
      }),
  },
  { name: "wasm (every kernel)", create: () => createWasmBackend({ minElements: 0 }) },
];

/**
 * `b` as a backend whose arrays live outside its arena while it is active, so every kernel copies
 * its operands in and its result out: the reference the arena's in-place path is checked against.
 */
export function copying<B extends Backend>(b: B): B {
  return { ...b, name: `${b.name} (copying)`, arena: undefined };
}
