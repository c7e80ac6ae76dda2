/**
 * The WASM reduce-and-update (build/train.wasm) is bitwise the JS reference (sumSlots, then
 * applyUpdate on the rounded sum) for every rule, dtype, slot count and slicing.
 */
import { describe, expect, it } from "vitest";
import { sumSlots } from "../../../src/train/parallel/slots.js";
import {
  applyUpdate,
  wasmRule,
  stateCount,
  type OptimizerConfig,
} from "../../../src/train/parallel/optimizer-kernels.js";
import { allocateInMemory, updateKernels } from "../../../src/backends/wasm-training/update.js";
import { allocateShared } from "../../../src/train/parallel/state.js";
import type { DType, TypedArray } from "../../../src/tensor/tensor.js";

const configs: [string, OptimizerConfig][] = [
  ["sgd", { kind: "sgd", lr: 0.05 }],
  [
    "sgd, weight decay, cosine",
    { kind: "sgd", lr: 0.3, weightDecay: 0.01, schedule: { kind: "cosine", totalSteps: 20 } },
  ],
  ["momentum", { kind: "momentum", lr: 0.1, momentum: 0.8, weightDecay: 0.001 }],
  ["nesterov", { kind: "momentum", lr: 0.1, nesterov: true }],
  ["adam", { kind: "adam", lr: 0.001 }],
  ["adamw", { kind: "adam", lr: 0.01, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.1 }],
];

/** Bit patterns, so -0, NaN payloads and last-bit differences all count. */
const bits = (a: TypedArray): number[] => [
  ...(a instanceof Float32Array
    ? new Uint32Array(a.buffer, a.byteOffset, a.length)
    : new Uint32Array(a.buffer, a.byteOffset, 2 * a.length)),
];

describe.each(["float32", "float64"] as DType[])("reduce and update in WASM, %s", (dtype) => {
  it.each(configs)("%s: bitwise the JS reference for 1-9 slots and any slicing", (_, config) => {
    const P = 1001; // odd: the last element takes the scalar path
    const states = stateCount(config.kind);
    for (const count of [1, 2, 3, 4, 9]) {
      const sizes = [...new Array<number>(2 + 2 * states).fill(P), count * P];
      const placed = allocateInMemory(dtype, sizes);
      expect(placed, "this engine has shared WebAssembly memory").toBeDefined();
      const arrays = placed!.arrays;
      let seed = 12345 + count;
      const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
      const [params, next] = [arrays[0], arrays[1]];
      const state = Array.from({ length: states }, (_, k) => arrays[2 + 2 * k]);
      const nextState = Array.from({ length: states }, (_, k) => arrays[3 + 2 * k]);
      const slots = arrays[2 + 2 * states];
      params.forEach((_, i) => (params[i] = random() * 3));
      slots.forEach((_, i) => (slots[i] = random() * 40));
      state.forEach((s, k) =>
        s.forEach((_, i) => (s[i] = k === 1 ? Math.abs(random()) : random())),
      );
      const t = 7;
      const scale = 1 / 96;
      // The JS reference: the rounded sum in a scratch array of the dtype, then the update.
      const reduced = dtype === "float32" ? new Float32Array(P) : new Float64Array(P);
      sumSlots(slots, count, P, 0, P, scale, reduced);
      const want = reduced.constructor === Float32Array ? new Float32Array(P) : new Float64Array(P);
      const wantState = state.map(() =>
        dtype === "float32" ? new Float32Array(P) : new Float64Array(P),
      );
      applyUpdate(config, t, params, reduced, state, want, wantState);
      // The kernel, over three slices (as three threads would take them), odd bounds included.
      const kernels = updateKernels(placed!.memory);
      const a = { slots, count, stride: P, params, next, state, nextState };
      const constants = new Float64Array(10);
      const rule = wasmRule(config, t, constants);
      for (const [lo, hi] of [
        [0, 333],
        [333, 334],
        [334, P],
      ])
        kernels.run(a, lo, hi, scale, rule, constants);
      expect(bits(next), `params, ${count} slots`).toEqual(bits(want));
      nextState.forEach((s, k) =>
        expect(bits(s), `state ${k}, ${count} slots`).toEqual(bits(wantState[k])),
      );
      // And against the closed form for plain SGD: p - lr * scale * sum of the slots.
      if (config.kind === "sgd" && config.weightDecay === undefined) {
        for (const i of [0, 500, P - 1]) {
          let s = 0;
          for (let k = 0; k < count; k++) s += slots[k * P + i];
          expect(next[i]).toBeCloseTo(params[i] - 0.05 * s * scale, dtype === "float32" ? 5 : 12);
        }
      }
    }
  });
});

describe("the trainer's shared state", () => {
  it("places params, optimizer state and slots in one shared WebAssembly memory", () => {
    const options = {
      dtype: "float32" as const,
      columns: [{ data: new Float32Array(6), rowShape: [3] }],
      paramShapes: [[3, 2], [2]],
      optimizer: { kind: "adam" as const, lr: 0.01 },
      shardCount: 3,
      maxBatch: 2,
    };
    const shared = allocateShared(options);
    expect(shared.memory).toBeDefined();
    const buffer = shared.memory!.buffer;
    for (const a of [...shared.params, ...shared.state.flat(), shared.grads])
      expect(a.buffer).toBe(buffer);
    expect(shared.grads.length).toBe(3 * 8);
    // Opting out gives SharedArrayBuffers and the JS update.
    const plain = allocateShared({ ...options, wasmUpdate: false });
    expect(plain.memory).toBeUndefined();
    expect(plain.params[0].buffer).toBeInstanceOf(SharedArrayBuffer);
  });
});
