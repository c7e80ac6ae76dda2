/**
 * A shard's rows gathered in one WASM call (wasm-training/gather.ts) are the rows a copy per row
 * gives, for both dtypes, any index order and repeats, and shards of several sizes; columns over
 * the copy limit, and buffers outside the kernels' memory, are left to the caller.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { createWasmBackend } from "../../../src/backends/wasm.js";
import { GATHER_COPY_BYTES, wasmRowGather } from "../../../src/backends/wasm-training/gather.js";
import { setBackend } from "../../../src/tensor/active.js";
import { allocateArray, placeInBackend } from "../../../src/tensor/tensor.js";
import { uniformValues } from "../../helpers/evaluate.js";

const wasm = createWasmBackend();

describe("wasmRowGather", () => {
  for (const dtype of ["float32", "float64"] as const) {
    it(`gathers batch[lo..hi) rows of a ${dtype} column as a copy per row does`, () => {
      const [n, rowSize] = [37, 11];
      const values = uniformValues(n * rowSize, 5);
      const column = dtype === "float32" ? new Float32Array(values) : new Float64Array(values);
      const gather = wasmRowGather(wasm, column, rowSize)!;
      expect(gather).toBeDefined();
      // A permutation with a repeat (a resumed run's batch may repeat nothing, but the kernel must
      // not care), read at three offsets and sizes, the last short.
      const batch = Int32Array.from([5, 0, 36, 12, 12, 7, 30, 1, 2, 3, 35, 18]);
      const previous = setBackend(wasm);
      try {
        for (const [lo, hi] of [
          [0, 5],
          [5, 12],
          [11, 12],
        ]) {
          const into = placeInBackend(() => allocateArray((hi - lo) * rowSize, dtype));
          into.fill(-1);
          expect(gather.gather(batch, lo, hi, into)).toBe(true);
          const want = new Float64Array((hi - lo) * rowSize);
          for (let r = lo; r < hi; r++) {
            for (let k = 0; k < rowSize; k++) {
              want[(r - lo) * rowSize + k] = column[batch[r] * rowSize + k];
            }
          }
          expect(Array.from(into)).toEqual(Array.from(want));
        }
        // A buffer outside the kernels' memory, or of the other dtype: not done, nothing written.
        const outside = new Float64Array(5 * rowSize).fill(7);
        const other = placeInBackend(() =>
          allocateArray(5 * rowSize, dtype === "float32" ? "float64" : "float32"),
        );
        expect(gather.gather(batch, 0, 5, dtype === "float64" ? outside : other)).toBe(false);
        if (dtype === "float64") expect(outside.every((v) => v === 7)).toBe(true);
      } finally {
        setBackend(previous);
      }
    });
  }

  it("keeps its copy alive: after garbage collection and new arrays, it still gathers the column", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const [n, rowSize] = [50, 10];
    const column = new Float32Array(uniformValues(n * rowSize, 8));
    const gather = wasmRowGather(wasm, column, rowSize)!;
    const batch = Int32Array.from({ length: 20 }, (_, i) => (i * 7) % n);
    const previous = setBackend(wasm);
    try {
      const into = placeInBackend(() => allocateArray(20 * rowSize, "float32"));
      expect(gather.gather(batch, 0, 20, into)).toBe(true);
      const first = Array.from(into);
      // A collected array's block goes back to the arena (a FinalizationRegistry): collect, then
      // fill new arrays, which take the freed blocks if the gather's copy was among them.
      for (let round = 0; round < 3; round++) {
        gc();
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const fills = Array.from({ length: 8 }, () =>
        placeInBackend(() => allocateArray(n * rowSize, "float32")).fill(-5),
      );
      into.fill(0);
      expect(gather.gather(batch, 0, 20, into)).toBe(true);
      expect(Array.from(into)).toEqual(first);
      expect(fills.length).toBe(8);
    } finally {
      setBackend(previous);
    }
  });

  it("leaves a column over GATHER_COPY_BYTES (copied per thread otherwise) to the caller", () => {
    const large = new Float32Array(GATHER_COPY_BYTES / 4 + 1);
    expect(wasmRowGather(wasm, large, 1)).toBeUndefined();
    expect(wasmRowGather(wasm, new Float32Array(GATHER_COPY_BYTES / 4), 1)).toBeDefined();
  });
});
