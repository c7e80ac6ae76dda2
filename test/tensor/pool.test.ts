/** The buffer pool: exact-length reuse, zero-filled hand-outs, what it refuses, the counters. */
import { afterEach, describe, expect, it } from "vitest";
import {
  allocate,
  allocateArray,
  clearPool,
  poolingEnabled,
  release,
  releaseArray,
  setPooling,
  tensorStats,
} from "../../src/tensor/tensor.js";

afterEach(() => {
  setPooling(true);
  clearPool();
});

describe("buffer pool", () => {
  it("hands a released array out again, zero-filled, for the same dtype and length only", () => {
    const a = allocateArray(7, "float32");
    a.fill(3);
    expect(releaseArray(a)).toBe(true);
    expect(allocateArray(7, "float64")).not.toBe(a);
    expect(allocateArray(8, "float32")).not.toBe(a);
    const b = allocateArray(7, "float32");
    expect(b).toBe(a);
    expect([...b]).toEqual(new Array(7).fill(0));
    expect(allocateArray(7, "float32")).not.toBe(a);
  });

  it("release(tensor) pools the tensor's data for allocate()", () => {
    const t = allocate([2, 3], "float64");
    t.data.fill(-1);
    expect(release(t)).toBe(true);
    const u = allocate([3, 2], "float64");
    expect(u.data).toBe(t.data);
    expect(u.toArray()).toEqual([
      [0, 0],
      [0, 0],
      [0, 0],
    ]);
  });

  it("refuses shared memory, views, arrays it did not create, and a second release", () => {
    const shared = allocateArray(4, "float32", true);
    expect(releaseArray(shared)).toBe(false);
    const whole = allocateArray(8, "float64");
    expect(releaseArray(whole.subarray(0, 4))).toBe(false);
    expect(releaseArray(whole.subarray(0, 8))).toBe(false);
    expect(releaseArray(new Float32Array(4))).toBe(false);
    expect(releaseArray(whole)).toBe(true);
    expect(releaseArray(whole)).toBe(false);
    // Pooled once, so handed out once.
    const first = allocateArray(8, "float64");
    const second = allocateArray(8, "float64");
    expect(first).toBe(whole);
    expect(second).not.toBe(whole);
    expect(allocateArray(4, "float32", true)).not.toBe(shared);
  });

  it("setPooling(false) empties the pool, refuses releases and reports the previous setting", () => {
    const a = allocateArray(5, "float32");
    releaseArray(a);
    expect(setPooling(false)).toBe(true);
    expect(poolingEnabled()).toBe(false);
    expect(allocateArray(5, "float32")).not.toBe(a);
    const b = allocateArray(5, "float32");
    expect(releaseArray(b)).toBe(false);
    expect(setPooling(true)).toBe(false);
    expect(allocateArray(5, "float32")).not.toBe(b);
  });

  it("counts fresh arrays (misses) and their elements, and reused arrays (hits)", () => {
    const before = { ...tensorStats };
    const a = allocateArray(10, "float64");
    releaseArray(a);
    allocateArray(10, "float64");
    allocateArray(10, "float64");
    expect(tensorStats.arraysAllocated - before.arraysAllocated).toBe(2);
    expect(tensorStats.elementsAllocated - before.elementsAllocated).toBe(20);
    expect(tensorStats.arraysReused - before.arraysReused).toBe(1);
  });
});
