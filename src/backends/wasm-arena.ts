/** The wasm backend's arena: one WebAssembly memory carved into size classes, with O(1) frees. */
import type { DType, TypedArray } from "../tensor/tensor.js";
import type { WasmMemory } from "./wasm-module.js";

export const PAGE_BYTES = 65536;

/** Rounds a byte count up to a cache line, so every region starts 64-byte aligned. */
export const align = (bytes: number): number => (bytes + 63) & ~63;

/** Counters of the data the wasm backend moves (read by `npm run bench:train`), per thread. */
export const wasmStats = {
  /** Kernel calls that ran in WASM. */
  calls: 0,
  /** Elements copied into the linear memory (inputs that were not already there). */
  elementsCopiedIn: 0,
  /** Elements copied out of it (results the kernel could not write in place). */
  elementsCopiedOut: 0,
};

/** Sizes of {@link WasmArena}'s memory, in 64 KiB pages. */
export interface WasmArenaOptions {
  /** Pages at start (default 16: 1 MiB). */
  initialPages?: number;
  /** Pages it may grow to (default 65536: 4 GiB, the wasm32 limit); reserved, not committed. */
  maximumPages?: number;
}

/** Rounds a block request up to its size class: 64-byte steps to 4 KiB, then quarter powers of 2. */
export function sizeClass(bytes: number): number {
  if (bytes <= 4096) return Math.max(64, align(bytes));
  const quarter = 2 ** Math.floor(Math.log2(bytes)) / 4;
  // NOTE: plus 3 cache lines, so that large blocks side by side (a matmul's A, B and C) do not
  // start at the same offset modulo 4 KiB and evict one another from the same L1 sets.
  return Math.ceil(bytes / quarter) * quarter + 192;
}

/**
 * Typed arrays and kernel scratch in one shared WebAssembly.Memory: blocks are bump-allocated
 * from heapBase up (growing the memory when full) and reused by size class once freed. A shared
 * memory's views stay valid when it grows (a plain memory would detach them all), so arrays handed
 * out never move. An array's block is freed when the array is garbage collected, which is safe as
 * long as nothing views its bytes through another object (`new Float32Array(a.buffer, ...)`, or a
 * `subarray` outliving `a`); the buffer pool keeps the arrays of a training step alive and reused.
 */
export class WasmArena {
  /** Every buffer object the memory has had: each growth hands out a new, longer one. */
  private readonly buffers: (ArrayBuffer | SharedArrayBuffer)[] = [];
  private buffer: ArrayBuffer | SharedArrayBuffer;
  private f32: Float32Array;
  private f64: Float64Array;
  /** First byte never handed out. */
  private top: number;
  /** Freed blocks by size class (bytes): their addresses. */
  private readonly free = new Map<number, number[]>();
  private scratchAddress = 0;
  private scratchBytes = 0;
  // NOTE: the held value packs (address, class) into one number: both are below 2^32.
  private readonly registry = new FinalizationRegistry<number>((held) => {
    this.freeBlock(held % 2 ** 32, Math.floor(held / 2 ** 32));
  });
  /** Block counters, for tests and benches: live arrays, their bytes, and memory growths. */
  readonly stats = { arrays: 0, arrayBytes: 0, grows: 0, fallbacks: 0 };

  constructor(
    readonly memory: WasmMemory,
    base: number,
    private readonly zeroBytes: (ptr: number, bytes: number) => void,
    /** The most bytes the memory may grow to (its maximum pages). */
    readonly maximumBytes: number = 65536 * PAGE_BYTES,
  ) {
    this.top = align(base);
    this.buffer = memory.buffer;
    this.buffers.push(this.buffer);
    this.f32 = new Float32Array(this.buffer);
    this.f64 = new Float64Array(this.buffer);
  }

  /** Bytes of linear memory now addressable. */
  get byteLength(): number {
    return this.buffer.byteLength;
  }

  /** First byte past every block handed out so far. */
  get highWater(): number {
    return this.top;
  }

  addressOf(data: TypedArray): number {
    const buffer = data.buffer;
    return buffer === this.buffer || this.buffers.includes(buffer) ? data.byteOffset : -1;
  }

  view(dtype: DType): TypedArray {
    return dtype === "float32" ? this.f32 : this.f64;
  }

  /** Zeroes `data` in place when it lies in this memory (a bulk fill); false when it does not. */
  zero(data: TypedArray): boolean {
    const address = this.addressOf(data);
    if (address < 0) return false;
    this.zeroBytes(address, data.byteLength);
    return true;
  }

  /**
   * A zero-filled array of `size` elements in the memory, or undefined when the memory cannot
   * grow to hold it (the caller then allocates a plain array).
   */
  allocate(size: number, dtype: DType): TypedArray | undefined {
    // NOTE: a size that is not a safe positive count (NaN, Infinity, 2^53) must change nothing:
    // its size class would be NaN and poison `top` for every later block.
    if (!Number.isSafeInteger(size) || size <= 0) return undefined;
    const elem = dtype === "float32" ? 4 : 8;
    const bytes = sizeClass(size * elem);
    const address = this.takeBlock(bytes);
    if (address < 0) {
      this.stats.fallbacks++;
      return undefined;
    }
    const data =
      dtype === "float32"
        ? new Float32Array(this.buffer, address, size)
        : new Float64Array(this.buffer, address, size);
    this.registry.register(data, address + bytes * 2 ** 32, data);
    this.stats.arrays++;
    this.stats.arrayBytes += bytes;
    return data;
  }

  /**
   * Frees the block of an array {@link allocate} gave, now rather than when it is collected (a
   * run's buffers, at its end); the array must not be used again. False for any other array.
   */
  release(data: TypedArray): boolean {
    if (this.addressOf(data) < 0 || !this.registry.unregister(data)) return false;
    this.freeBlock(data.byteOffset, sizeClass(data.byteLength));
    return true;
  }

  scratch(bytes: number): number {
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      throw new RangeError(`wasm backend: invalid scratch size ${bytes} bytes`);
    }
    if (bytes <= this.scratchBytes) return this.scratchAddress;
    // Grown geometrically, so a run of growing calls re-allocates it a few times only.
    const size = sizeClass(Math.max(bytes, 2 * this.scratchBytes));
    const address = this.takeBlock(size);
    if (address < 0) {
      throw new RangeError(`wasm backend: cannot grow the linear memory to ${bytes} scratch bytes`);
    }
    if (this.scratchBytes > 0) this.freeBlock(this.scratchAddress, this.scratchBytes, false);
    this.scratchAddress = address;
    this.scratchBytes = size;
    return address;
  }

  /** A block of exactly `bytes` (a size class), zero-filled; -1 when the memory cannot grow. */
  private takeBlock(bytes: number): number {
    // Validated before any state changes: a failed request leaves the arena exactly as it was.
    if (!Number.isSafeInteger(bytes) || bytes <= 0 || this.top + bytes > this.maximumBytes) {
      return -1;
    }
    const list = this.free.get(bytes);
    if (list !== undefined && list.length > 0) {
      const address = list.pop()!;
      // Freed blocks held data: zero them, as fresh memory is.
      this.zeroBytes(address, bytes);
      return address;
    }
    const end = this.top + bytes;
    if (end > this.buffer.byteLength && !this.grow(end)) return -1;
    const address = this.top;
    this.top = end;
    return address;
  }

  private freeBlock(address: number, bytes: number, array = true): void {
    if (array) {
      this.stats.arrays--;
      this.stats.arrayBytes -= bytes;
    }
    const list = this.free.get(bytes);
    if (list === undefined) this.free.set(bytes, [address]);
    else list.push(address);
  }

  /** Grows the memory to at least `end` bytes (doubling); false when it cannot. */
  private grow(end: number): boolean {
    const have = this.buffer.byteLength;
    const want = Math.max(end, 2 * have);
    try {
      this.memory.grow(Math.ceil((want - have) / PAGE_BYTES));
    } catch {
      try {
        this.memory.grow(Math.ceil((end - have) / PAGE_BYTES));
      } catch {
        return false;
      }
    }
    this.stats.grows++;
    this.buffer = this.memory.buffer;
    this.buffers.push(this.buffer);
    this.f32 = new Float32Array(this.buffer);
    this.f64 = new Float64Array(this.buffer);
    return true;
  }
}
