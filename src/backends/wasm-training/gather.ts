/**
 * A shard's rows gathered in WASM: the data column copied once into this thread's kernel memory,
 * then each shard's rows in one call (asm/kernels.ts gatherRows) instead of a subarray and a
 * copy per row from JS (11.6 of the exercise's 46 µs a step; one call: about 1 µs).
 */
import type { TypedArray } from "../../tensor/tensor.js";
import type { RowGather } from "../training.js";
import type { WasmBackend } from "../wasm.js";
import type { WasmArena } from "../wasm-arena.js";

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
  return new WasmRowGather(wasm, arena, table, rowSize);
}

/**
 * The gather over one column's copy. NOTE: it holds `table` and the index block as fields: the
 * arena hands a block back (to any later allocation) once its array is garbage collected, so a
 * gather that kept only their addresses read other arrays' bytes after a collection (a run's
 * targets turned to garbage in its second epoch; the test collects and gathers again).
 */
class WasmRowGather implements RowGather {
  /** The batch's indices as i32 in the arena: a float32 block of the same bytes, viewed as i32. */
  private block: TypedArray | undefined;
  private indices: Int32Array = new Int32Array(0);

  constructor(
    private readonly wasm: WasmBackend,
    private readonly arena: WasmArena,
    private readonly table: TypedArray,
    private readonly rowSize: number,
  ) {}

  dispose(): void {
    this.arena.release(this.table);
    if (this.block) this.arena.release(this.block);
    this.block = undefined;
    this.indices = new Int32Array(0);
  }

  gather(batch: Int32Array, lo: number, hi: number, into: TypedArray): boolean {
    const { arena, table, rowSize } = this;
    const count = hi - lo;
    const dst = arena.addressOf(into);
    if (dst < 0 || into.BYTES_PER_ELEMENT !== table.BYTES_PER_ELEMENT) return false;
    if (into.length < count * rowSize) throw new RangeError("gather: the buffer is too small");
    if (this.indices.length < count) {
      const block = arena.allocate(Math.max(count, 64), "float32");
      if (block === undefined) return false;
      this.block = block;
      this.indices = new Int32Array(block.buffer, block.byteOffset, block.length);
    }
    const indices = this.indices;
    for (let i = 0; i < count; i++) indices[i] = batch[lo + i];
    const rowBytes = rowSize * table.BYTES_PER_ELEMENT;
    const [src, rows] = [arena.addressOf(table), arena.addressOf(this.block!)];
    this.wasm.kernels.gatherRows(src, rows, dst, count, rowBytes);
    return true;
  }
}
