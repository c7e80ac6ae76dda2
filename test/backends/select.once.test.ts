/** Every op case run on the js and wasm backends: forward values and gradients must agree. */
import { evaluateOn } from "../helpers/evaluate.js";
import { afterAll, describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";
import { createWasmBackend } from "../../src/backends/wasm.js";
import { assertClose } from "../helpers/gradcheck.js";
import { opCases } from "../helpers/op-cases.js";

/** The wasm backend with its size thresholds off, so every kernel it has runs in WASM. */
const wasmEverywhere = createWasmBackend({ minElements: 0 });
const wasmDefault = createWasmBackend();

afterAll(() => {
  adj.setBackend(adj.jsBackend);
});

describe.each([
  ["float64", 1e-12, 1e-12],
  ["float32", 1e-5, 1e-6],
] as const)("op cases on js and wasm agree in %s", (dtype, rtol, atol) => {
  it.each(opCases.map((c) => [c.name, c] as const))("%s", (_, c) => {
    const inputs = c.inputs.map((t) => t.clone({ dtype }));
    const reference = evaluateOn(adj.jsBackend, c.build, inputs);
    for (const wasm of [wasmDefault, wasmEverywhere]) {
      const got = evaluateOn(wasm, c.build, inputs);
      expect(got.length).toBe(reference.length);
      got.forEach((t, i) => {
        const what = i === 0 ? "value" : `gradient ${i - 1}`;
        expect([...t.shape], what).toEqual([...reference[i].shape]);
        expect(t.dtype, what).toBe(dtype);
        assertClose(t.data, reference[i].data, `${what} (${dtype})`, rtol, atol);
      });
    }
  });
});
