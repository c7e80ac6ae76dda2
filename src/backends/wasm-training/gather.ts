/**
 * A shard's rows gathered in WASM: the data column copied once into this thread's kernel memory,
 * then each shard's rows in one call (asm/kernels.ts gatherRows) instead of a subarray and a
 * copy per row from JS (11.6 of the exercise's 46 µs a step; one call: about 1 µs).
 */
import type { TypedArray } from "../../tensor/tensor.js";
import type { RowGather } from "../training.js";
import type { WasmBackend } from "../wasm.js";

/**
 * Columns up to this many bytes are copied into each thread's memory (the digits: 0.9 MB); a
 * larger one (MNIST's 60,000 images: 188 MB) would be copied per thread, and its rows are long
 * enough that a copy per row costs little over the copy itself: those stay row by row.
 */
export const GATHER_COPY_BYTES = 8 * 1024 * 1024;

/** {@link RowGather} over a copy of `column` in `wasm`'s memory, or undefined (too large). */
export function wasmRowGather(
  wasm: WasmBackend,
  column: TypedArray,
  rowSize: number,
): RowGather | undefined {
  const arena = wasm.arena;
  if (arena === undefined || column.byteLength > GATHER_COPY_BYTES || rowSize === 0) {
    return undefined;
  }
  const dtype = column instanceof Float32Array ? "float32" : "float64";
  const table = arena.allocate(column.length, dtype);
  if (table === undefined) return undefined;
  table.set(column);
  const src = arena.addressOf(table);
  const rowBytes = rowSize * column.BYTES_PER_ELEMENT;
  // The batch's indices as i32 in the arena: a float32 block of the same bytes, viewed as i32
  // (held here with `table`: the arena frees a block only when its array is garbage collected).
  let block: TypedArray = table;
  let indices: Int32Array = new Int32Array(0);
  return {
    gather(batch, lo, hi, into) {
      const count = hi - lo;
      const dst = arena.addressOf(into);
      if (dst < 0 || into.BYTES_PER_ELEMENT !== column.BYTES_PER_ELEMENT) return false;
      if (into.length < count * rowSize) throw new RangeError("gather: the buffer is too small");
      if (indices.length < count) {
        const grown = arena.allocate(Math.max(count, 64), "float32");
        if (grown === undefined) return false;
        block = grown;
        indices = new Int32Array(block.buffer, block.byteOffset, block.length);
      }
      for (let i = 0; i < count; i++) indices[i] = batch[lo + i];
      wasm.kernels.gatherRows(src, arena.addressOf(block), dst, count, rowBytes);
      return true;
    },
  };
}
