/** Every op case run on the js and wasm backends: forward values and gradients must agree. */
import { afterAll, describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";
import type { Backend, Node, Tensor } from "../../src/index.js";
import { createWasmBackend } from "../../src/tensor/kernels/wasm.js";
import { assertClose, mulberry32, randomTensor } from "../helpers/gradcheck.js";
import { opCases } from "../helpers/op-cases.js";

/** The wasm backend with its size thresholds off, so every kernel it has runs in WASM. */
const wasmEverywhere = createWasmBackend(undefined, { minElements: 0 });
const wasmDefault = createWasmBackend();

/** y and the gradients of sum(u * y) wrt every input, evaluated on `backend`. */
function evaluate(backend: Backend, build: (...xs: Node[]) => Node, inputs: Tensor[]): Tensor[] {
  const previous = adj.setBackend(backend);
  try {
    const xs = inputs.map((_, i) => adj.variable(`x${i}`));
    const y = build(...xs);
    const feeds = new Map<Node, Tensor>(xs.map((x, i) => [x, inputs[i]]));
    const [value] = new adj.Evaluator([y]).run(feeds);
    const u = adj.variable("u");
    const uValue = randomTensor(mulberry32(5), value.shape).clone({ dtype: value.dtype });
    feeds.set(u, uValue);
    const grads = adj.gradients(adj.sum(adj.mul(u, y)), xs);
    return [value, ...new adj.Evaluator(grads).run(feeds)];
  } finally {
    adj.setBackend(previous);
  }
}

afterAll(() => {
  adj.setBackend(adj.jsBackend);
});

describe.each([
  ["float64", 1e-12, 1e-12],
  ["float32", 1e-5, 1e-6],
] as const)("op cases on js and wasm agree in %s", (dtype, rtol, atol) => {
  it.each(opCases.map((c) => [c.name, c] as const))("%s", (_, c) => {
    const inputs = c.inputs.map((t) => t.clone({ dtype }));
    const reference = evaluate(adj.jsBackend, c.build, inputs);
    for (const wasm of [wasmDefault, wasmEverywhere]) {
      const got = evaluate(wasm, c.build, inputs);
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
