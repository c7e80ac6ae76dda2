/** A failed allocation leaves the wasm arena exactly as it was: later arrays and ops stay right. */
import { afterEach, describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";
import type { Node, Tensor } from "../../src/index.js";
import { allocateArray, clearPool } from "../../src/tensor/tensor.js";
import { createWasmBackend } from "../../src/backends/wasm.js";
import { evaluateOn, uniformValues } from "../helpers/evaluate.js";

// A small arena (64 pages, 4 MiB), so "larger than the arena" is cheap to ask for.
const wasm = createWasmBackend({
  minElements: 0,
  build: "simd",
  arena: { initialPages: 16, maximumPages: 64 },
});

afterEach(() => {
  adj.setBackend(adj.jsBackend);
  clearPool();
});

const BAD_SIZES: [string, number][] = [
  ["Infinity", Infinity],
  ["NaN", NaN],
  ["negative", -5],
  ["2^53", 2 ** 53],
  ["a fraction", 2.5],
  ["larger than the arena", 5 * 2 ** 20],
];

/** A random chain of element-wise, matmul and reduction ops over two inputs, seeded. */
function randomGraph(seed: number): (a: Node, b: Node) => Node {
  const steps = uniformValues(6, seed).map((v) => Math.floor((v + 1) * 3.5));
  return (a, b) => {
    let y = adj.add(a, b);
    for (const k of steps) {
      if (k === 0) y = adj.mul(y, b);
      else if (k === 1) y = adj.tanh(y);
      else if (k === 2) y = adj.sub(y, a);
      else if (k === 3) y = adj.matmul(y, b, { transB: true }).matmul(a);
      else if (k === 4) y = adj.exp(adj.mulByConst(y, 0.1));
      else if (k === 5) y = adj.add(y, adj.sum(y, { axis: 0, keepdims: true }));
      else y = adj.relu(y);
    }
    return y;
  };
}

const inputs = (seed: number): Tensor[] => [
  adj.tensor(uniformValues(12, seed), { shape: [3, 4] }),
  adj.tensor(uniformValues(12, seed + 1), { shape: [3, 4] }),
];

describe.each(BAD_SIZES)("after an allocation of %s elements", (_what, size) => {
  it("the arena's state is unchanged and the wasm backend agrees with js", () => {
    const arena = wasm.arena!;
    adj.setBackend(wasm);
    const before = { top: arena.highWater, bytes: arena.byteLength, arrays: arena.stats.arrays };
    expect(arena.allocate(size, "float32")).toBeUndefined();
    expect(arena.allocate(size, "float64")).toBeUndefined();
    if (Number.isSafeInteger(size) && size > 0) {
      // A valid size the arena cannot hold is a plain array outside it, zero-filled.
      const plain = allocateArray(size, "float32");
      expect(wasm.arena!.addressOf(plain)).toBe(-1);
      expect(plain.every((v) => v === 0)).toBe(true);
    } else {
      expect(() => allocateArray(size, "float32")).toThrow(RangeError);
      expect(() => adj.zeros([size])).toThrow(RangeError);
    }
    expect(() => adj.zeros([size, size])).toThrow(RangeError);
    expect({
      top: arena.highWater,
      bytes: arena.byteLength,
      arrays: arena.stats.arrays,
    }).toEqual(before);
    // Fresh tensors read back what was written, and ops agree with the js kernels.
    expect(adj.tensor([1, 2, 3]).toArray()).toEqual([1, 2, 3]);
    for (let seed = 1; seed <= 8; seed++) {
      const got = evaluateOn(wasm, randomGraph(seed), inputs(seed));
      const want = evaluateOn(adj.jsBackend, randomGraph(seed), inputs(seed));
      got.forEach((t, i) => {
        expect(t.shape).toEqual(want[i].shape);
        const w = want[i].data;
        t.data.forEach((v, j) => expect(v).toBeCloseTo(w[j], 12));
      });
    }
  });
});

it("the issue's case: zeros([1e200, 1e200]) throws, then a + b is still right on wasm", () => {
  adj.setBackend(wasm);
  expect(() => adj.zeros([1e200, 1e200])).toThrow(/invalid shape/);
  const x = adj.variable("x");
  const y = adj.variable("y");
  const [sum] = new adj.Evaluator([adj.add(x, y)]).run(
    new Map([
      [x, adj.tensor([1, 2, 3])],
      [y, adj.tensor([10, 20, 30])],
    ]),
  );
  expect(sum.toArray()).toEqual([11, 22, 33]);
});
