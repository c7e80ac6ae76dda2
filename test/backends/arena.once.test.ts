/** The wasm backend's arena: arrays in its shared linear memory, bitwise equal to copying. */
import { evaluateOn } from "../helpers/evaluate.js";
import { copying } from "../helpers/backends.js";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";
import type { Tensor } from "../../src/index.js";
import { mulberry32, randomTensor } from "../helpers/gradcheck.js";
import {
  allocate,
  allocateArray,
  clearPool,
  placeInBackend,
  releaseArray,
  setPooling,
  tensorStats,
} from "../../src/tensor/tensor.js";
import { createWasmBackend, type WasmBackend } from "../../src/backends/wasm.js";
import { sizeClass, wasmStats } from "../../src/backends/wasm-arena.js";
import { loadDigits } from "../../src/train/data.js";
import { inProcessEngine } from "../../src/train/parallel/engine.js";
import { initParams, modelSpec } from "../../src/train/models.js";
import { Rng } from "../../src/train/random.js";
import { paramsHash } from "../../src/train/serialize.js";
import { prepareTraining } from "../../src/train/trainer.js";
import { runStep } from "../../src/train/parallel/state.js";

import { opCases } from "../helpers/op-cases.js";
import { randomGraph } from "../helpers/random-graph.js";

/**
 * Every supported kernel in WASM; with and without the arena. Both run the plain-SIMD build (the
 * relaxed one exists only with an arena), so results must be bitwise equal.
 */
const withArena = createWasmBackend({ minElements: 0, build: "simd" });
const withoutArena = copying(createWasmBackend({ minElements: 0, build: "simd" }));

afterEach(() => {
  adj.setBackend(adj.jsBackend);
  clearPool();
});
afterAll(() => {
  adj.setBackend(adj.jsBackend);
});

/** The bytes of a tensor's data, so NaN and -0 compare bitwise too. */
const bits = (t: Tensor): number[] => [...new Uint8Array(t.data.slice().buffer)];

function expectBitwiseEqual(got: Tensor[], want: Tensor[]): void {
  expect(got.length).toBe(want.length);
  got.forEach((t, i) => {
    expect([...t.shape]).toEqual([...want[i].shape]);
    expect(t.dtype).toBe(want[i].dtype);
    expect(bits(t)).toEqual(bits(want[i]));
  });
}

it("the arena is available here (shared WebAssembly memory, built kernels-shared.wasm)", () => {
  expect(withArena.arena).toBeDefined();
  expect(withoutArena.arena).toBeUndefined();
});

describe.each(["float64", "float32"] as const)("op cases, arena on vs off, %s", (dtype) => {
  it.each(opCases.map((c) => [c.name, c] as const))("%s", (_, c) => {
    const inputs = c.inputs.map((t) => t.clone({ dtype }));
    expectBitwiseEqual(
      evaluateOn(withArena, c.build, inputs),
      evaluateOn(withoutArena, c.build, inputs),
    );
  });
});

describe.each(["float64", "float32"] as const)("random graphs, arena on vs off, %s", (dtype) => {
  it.each(Array.from({ length: 12 }, (_, i) => 500 + 31 * i))("seed %i", (seed) => {
    const random = mulberry32(seed);
    const inputs = [randomTensor(random, [12, 8]), randomTensor(random, [8, 12])].map((t) =>
      t.clone({ dtype }),
    );
    const build = randomGraph(seed);
    const copiedBefore = wasmStats.elementsCopiedIn + wasmStats.elementsCopiedOut;
    const callsBefore = wasmStats.calls;
    const onArena = evaluateOn(withArena, build, inputs);
    const copiedOnArena = wasmStats.elementsCopiedIn + wasmStats.elementsCopiedOut - copiedBefore;
    expect(wasmStats.calls).toBeGreaterThan(callsBefore);
    const copying = wasmStats.elementsCopiedIn + wasmStats.elementsCopiedOut;
    expectBitwiseEqual(onArena, evaluateOn(withoutArena, build, inputs));
    const copiedWithout = wasmStats.elementsCopiedIn + wasmStats.elementsCopiedOut - copying;
    // Only the feeds (plain arrays) are copied in on the arena.
    expect(copiedOnArena).toBeLessThan(copiedWithout);
  });
});

describe("allocation in the arena", () => {
  it("release frees a block at once: the next array of its size class takes it; any other array is refused", () => {
    const arena = withArena.arena!;
    const a = arena.allocate(1000, "float32")!;
    const before = { ...arena.stats };
    expect(arena.release(a)).toBe(true);
    expect(arena.stats.arrays).toBe(before.arrays - 1);
    expect(arena.stats.arrayBytes).toBe(before.arrayBytes - sizeClass(4000));
    const b = arena.allocate(1000, "float32")!; // the same size class
    expect(b.byteOffset).toBe(a.byteOffset);
    expect([...b.subarray(0, 4)]).toEqual([0, 0, 0, 0]); // zeroed, as fresh memory
    expect(arena.release(a)).toBe(false); // released already (its block is b's now)
    expect(arena.release(new Float32Array(1000))).toBe(false); // not the arena's
    expect(arena.release(b)).toBe(true);
  });

  it("places arrays in the linear memory only while the arena backend is active", () => {
    placeInBackend(() => {
      adj.setBackend(withArena);
      const inside = allocateArray(100, "float32");
      expect(withArena.arena!.addressOf(inside)).toBeGreaterThan(0);
      expect(inside.buffer).toBeInstanceOf(SharedArrayBuffer);
      adj.setBackend(withoutArena);
      expect(withArena.arena!.addressOf(allocateArray(100, "float32"))).toBe(-1);
      adj.setBackend(adj.jsBackend);
      const plain = allocateArray(100, "float32");
      expect(plain.buffer).toBeInstanceOf(ArrayBuffer);
      expect(withArena.arena!.addressOf(plain)).toBe(-1);
    });
  });

  it("keeps zero-filled semantics, for fresh blocks and for pooled arrays", () => {
    placeInBackend(() => {
      adj.setBackend(withArena);
      const a = allocateArray(333, "float64");
      expect(a.every((v) => v === 0)).toBe(true);
      a.fill(7);
      expect(releaseArray(a)).toBe(true);
      const b = allocateArray(333, "float64");
      expect(b).toBe(a);
      expect(b.every((v) => v === 0)).toBe(true);
    });
  });

  it("is not used while pooling is off", () => {
    adj.setBackend(withArena);
    setPooling(false);
    try {
      expect(withArena.arena!.addressOf(allocateArray(100, "float32"))).toBe(-1);
    } finally {
      setPooling(true);
    }
  });

  it("rounds blocks to size classes", () => {
    expect(sizeClass(1)).toBe(64);
    expect(sizeClass(4096)).toBe(4096);
    expect(sizeClass(4097)).toBe(5120 + 192);
    expect(sizeClass(1 << 20)).toBe((1 << 20) + 192);
    expect(sizeClass((1 << 20) + 1)).toBe(1.25 * (1 << 20) + 192);
  });
});

describe("growth and exhaustion", () => {
  it("keeps earlier arrays valid (same bytes, same address) when the memory grows", () => {
    placeInBackend(() => {
      const small = createWasmBackend({
        minElements: 0,
        arena: { initialPages: 1 },
        build: "simd",
      });
      const arena = small.arena!;
      adj.setBackend(small);
      const first = allocate([16, 16], "float32");
      first.data.forEach((_, i) => (first.data[i] = i));
      const address = arena.addressOf(first.data);
      const before = arena.byteLength;
      const big = allocate([512, 512], "float32");
      expect(arena.byteLength).toBeGreaterThan(before);
      expect(arena.stats.grows).toBeGreaterThan(0);
      expect(first.data.length).toBe(256);
      expect(first.data[255]).toBe(255);
      expect(arena.addressOf(first.data)).toBe(address);
      expect(arena.addressOf(big.data)).toBeGreaterThan(address);
      // Both operands, one from before the growth, are read in place.
      const copied = wasmStats.elementsCopiedIn;
      const product = small.matmul(first, first, false, true);
      expect(wasmStats.elementsCopiedIn).toBe(copied);
      expect(bits(product)).toEqual(bits(withoutArena.matmul(first, first, false, true)));
    });
  });

  it("falls back to plain arrays when the memory cannot grow, with the same results", () => {
    placeInBackend(() => {
      const tiny = createWasmBackend({
        minElements: 0,
        arena: { initialPages: 2, maximumPages: 4 },
        build: "simd",
      });
      const arena = tiny.arena!;
      adj.setBackend(tiny);
      const held: Tensor[] = [];
      for (let i = 0; i < 8; i++) held.push(allocate([128, 128], "float32")); // 64 KiB each
      expect(arena.stats.fallbacks).toBeGreaterThan(0);
      expect(arena.byteLength).toBe(4 * 65536);
      const outside = held.filter((t) => arena.addressOf(t.data) < 0);
      expect(outside.length).toBeGreaterThan(0);
      const a = randomTensor(mulberry32(1), [64, 32]).clone({ dtype: "float32" });
      const b = randomTensor(mulberry32(2), [32, 16]).clone({ dtype: "float32" });
      const got = tiny.matmul(a, b, false, false);
      expect(bits(got)).toEqual(bits(withoutArena.matmul(a, b, false, false)));
    });
  });
});

describe("training on the arena", () => {
  /** Parameters' hash after `steps` digits steps (fp32, MLP 64-32-10, batch 50) on `b`. */
  async function train(b: WasmBackend, steps: number, probe?: (step: number) => void) {
    adj.setBackend(b);
    const spec = modelSpec("mlp", 64, [32], 10);
    const data = loadDigits({ dtype: "float32" });
    const rng = new Rng(0);
    const initial = initParams(spec, rng, "float32");
    const optimizer = { kind: "sgd", lr: 0.05 } as const;
    const { trainPlan, shared } = prepareTraining(spec, data, "float32", optimizer, 1, 50, initial);
    const engine = await inProcessEngine(shared, trainPlan, optimizer);
    const order = rng.permutation(data.X.shape[0]);
    for (let t = 1; t <= steps; t++) {
      const start = ((t - 1) * 50) % (order.length - 50);
      await runStep(engine, shared, order.subarray(start, start + 50), t);
      probe?.(t);
    }
    const cur = shared.control[0];
    const params = initial.map((p, i, all) => {
      const offset = all.slice(0, i).reduce((n, q) => n + q.size, 0);
      return new adj.Tensor(shared.params[cur].slice(offset, offset + p.size), p.shape);
    });
    await engine.close();
    adj.setBackend(adj.jsBackend);
    return paramsHash(params);
  }

  it("gives bitwise the parameters of the copying backend", async () => {
    expect(await train(withArena, 40)).toBe(await train(withoutArena, 40));
  });

  it("stays flat over 1000 steps: no fresh arrays, no arena growth", async () => {
    const own = createWasmBackend({ minElements: 0 });
    const arena = own.arena!;
    let highWater = 0;
    let arrays = 0;
    let allocated = 0;
    await train(own, 1000, (step) => {
      if (step === 20) {
        highWater = arena.highWater;
        arrays = arena.stats.arrays;
        allocated = tensorStats.arraysAllocated;
      }
    });
    expect(highWater).toBeGreaterThan(0);
    expect(arena.highWater).toBe(highWater);
    expect(arena.stats.arrays).toBeLessThanOrEqual(arrays);
    expect(tensorStats.arraysAllocated).toBe(allocated);
  });
});
