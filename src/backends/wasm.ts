/**
 * The WASM SIMD backend: matmul (f32x4 / f64x2, packed and register-blocked), same-shape and
 * row-broadcast add/sub/mul/div, relu, step and column sums run in build/kernels-shared.wasm (or
 * build/kernels-relaxed.wasm, whose matmul uses relaxed-SIMD multiply-adds, where the engine
 * accepts relaxed SIMD), compiled from asm/ by `npm run build:wasm`; every other kernel is the
 * reference jsBackend's. The module runs over its own growable shared memory and, while it is the
 * active backend, allocateArray places new arrays in that memory (a {@link WasmArena}): kernels
 * then read their inputs and write their output in place, and only arrays from elsewhere (feeds,
 * SharedArrayBuffer parameters, arrays made while another backend was active) are copied in.
 */
import { BinaryCode, UnaryCode } from "./wasm-codes.js";
import { packageRoot } from "../package.js";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { backend } from "../tensor/active.js";
import {
  type Backend,
  type BinaryKind,
  type ConvGeometry,
  type PoolGeometry,
  type ReduceKind,
  type UnaryKind,
} from "../tensor/backend.js";
import { broadcastShapes, reducedShape, sameShape, sizeOf } from "../tensor/shape.js";
import {
  allocate,
  releaseArray,
  resultDType,
  setArrayAllocator,
  type ArrayAllocator,
  type DType,
  type Tensor,
  type TypedArray,
} from "../tensor/tensor.js";
import { batchedMatmul } from "../tensor/kernels/js-matmul.js";
import { convOut, poolOut } from "../tensor/kernels/js-nn.js";
import { jsBackend } from "../tensor/kernels/js.js";
import { checkOptions, typeName } from "../tensor/options.js";

// NOTE: the project's lib (ES2022 + @types/node 20) has no WebAssembly types, so the few members
// used here are declared locally and the global is read through globalThis.
/** A WebAssembly.Memory, as far as adjoint uses one. */
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  grow(pages: number): number;
}
/** The WebAssembly namespace, as far as adjoint uses it. */
export interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: object };
  Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
}
const webAssembly = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;

/** This engine's WebAssembly namespace, or undefined where it has none. */
export const wasmApi = (): WasmApi | undefined => webAssembly;

/** op(A) @ op(B) into C (asm/kernels.ts); transA, transB and f32's `prepacked` as 0/1. */
type Matmul = (
  a: number,
  b: number,
  pack: number,
  c: number,
  m: number,
  n: number,
  k: number,
  transA: number,
  transB: number,
  prepacked?: number,
) => void;

/** The exports of the kernels module (see asm/kernels.ts); booleans are passed as 0/1. */
export interface KernelExports {
  heapBase(): number;
  paddedRowsF32(m: number): number;
  paddedColsF32(n: number): number;
  paddedRowsF64(m: number): number;
  paddedColsF64(n: number): number;
  packBytesF32(n: number, k: number): number;
  packBytesF64(n: number, k: number): number;
  matmulF32: Matmul;
  prepackBytesF32(n: number, k: number): number;
  prepackBF32(b: number, pack: number, n: number, k: number, transB: number): void;
  matmulF64: Matmul;
  compactRows(c: number, m: number, rowBytes: number, ldc: number): void;
  zeroBytes(ptr: number, bytes: number): void;
  binaryF32(op: number, x: number, y: number, out: number, n: number): void;
  binaryF64(op: number, x: number, y: number, out: number, n: number): void;
  unaryF32(op: number, x: number, out: number, n: number): void;
  unaryF64(op: number, x: number, out: number, n: number): void;
  rowBinaryF32(op: number, x: number, y: number, out: number, rows: number, cols: number): void;
  rowBinaryF64(op: number, x: number, y: number, out: number, rows: number, cols: number): void;
  columnSumF32(x: number, out: number, rows: number, cols: number): void;
  columnSumF64(x: number, out: number, rows: number, cols: number): void;
  /** (width, x, targets, loss, grad or 0, rows, n): softmax cross-entropy, the js kernels' bits. */
  crossEntropyOf(...args: [number, number, number, number, number, number, number]): void;
  /** (a, b, pack, c, m, n, k, transA, transB, count, strideA, strideB): stacked products. */
  matmulBatchF32: MatmulBatch;
  matmulBatchF64: MatmulBatch;
  /** (x, cols, dims, scatter): a convolution's patches as columns, or added back (col2im). */
  patchesF32(x: number, cols: number, dims: number, scatter: number): void;
  patchesF64(x: number, cols: number, dims: number, scatter: number): void;
  /** (op, x, y, out, outer, channels, inner): x (op) y[c] over [outer, channels, inner]. */
  channelBinaryF32(...args: [number, number, number, number, number, number, number]): void;
  channelBinaryF64(...args: [number, number, number, number, number, number, number]): void;
  /** (x, out, outer, channels, inner): per-channel sums in x's order. */
  channelSumF32(x: number, out: number, outer: number, channels: number, inner: number): void;
  channelSumF64(x: number, out: number, outer: number, channels: number, inner: number): void;
  /** (x, u, out, dims, scatter): max-pooling's select (u at each window's maximum) or gradient. */
  poolF32(x: number, u: number, out: number, dims: number, scatter: number): void;
  poolF64(x: number, u: number, out: number, dims: number, scatter: number): void;
  /** (src, dst, a, b, runBytes): [a, b, run] -> [b, a, run]. */
  swapLeading(src: number, dst: number, a: number, b: number, runBytes: number): void;
}

/** The batched product's signature: {@link Matmul}'s, then count and the two byte strides. */
type MatmulBatch = (
  ...args: [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ]
) => void;

/** The binary kernels in WASM by op code (wasm-codes.ts); null: the js kernel runs. */
export const BINARY_CODES: Record<BinaryKind, BinaryCode | null> = {
  add: BinaryCode.add,
  sub: BinaryCode.sub,
  mul: BinaryCode.mul,
  div: BinaryCode.div,
  minimum: null,
  maximum: null,
  greater: null,
};

/**
 * Below this many elements the JS loop is as fast as the WASM call (measured on arena arrays: at
 * 16 elements about even, from 64 on relu, row-broadcast add, column sum and mul 1.3-6x faster).
 */
const BINARY_MIN_SIZE = 64;

/** The unary kernels in WASM by op code (wasm-codes.ts); null: the js kernel runs. */
export const UNARY_CODES: Record<UnaryKind, UnaryCode | null> = {
  relu: UnaryCode.relu,
  step: UnaryCode.step,
  neg: null,
  exp: null,
  log: null,
  sqrt: null,
  sigmoid: null,
  tanh: null,
  abs: null,
};

const PAGE_BYTES = 65536;

/** Rounds a byte count up to a cache line, so every region starts 64-byte aligned. */
const align = (bytes: number): number => (bytes + 63) & ~63;

// NOTE: `(module (func (result v128) i32.const 0 i8x16.splat))`: validates only where the engine
// has fixed-width SIMD, without needing the built kernels.
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, 0x03,
  0x02, 0x01, 0x00, 0x0a, 0x08, 0x01, 0x06, 0x00, 0x41, 0x00, 0xfd, 0x0f, 0x0b,
]);

// NOTE: `(module (func (result v128) (f32x4.relaxed_madd (i8x16.splat (i32.const 0)) ...)))`:
// validates only where the engine accepts relaxed SIMD.
const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, 0x03,
  0x02, 0x01, 0x00, 0x0a, 0x13, 0x01, 0x11, 0x00, 0x41, 0x00, 0xfd, 0x0f, 0x41, 0x00, 0xfd, 0x0f,
  0x41, 0x00, 0xfd, 0x0f, 0xfd, 0x85, 0x02, 0x0b,
]);

/** The kernels module a wasm backend runs: relaxed SIMD (fused multiply-adds) or plain SIMD. */
export type WasmBuild = "relaxed" | "simd";

let relaxedSupported: boolean | undefined;

/**
 * True when this engine accepts relaxed SIMD. Node 20 does only behind V8's
 * `--experimental-wasm-relaxed-simd`, so where the probe fails this sets that flag (it is
 * process-wide: worker threads started later accept relaxed SIMD too) and probes again; false,
 * never a throw, when both fail. Example: `wasmRelaxedSimdSupported()` is true on Node 20.
 */
export function wasmRelaxedSimdSupported(): boolean {
  if (relaxedSupported !== undefined) return relaxedSupported;
  const probe = (): boolean => {
    try {
      return webAssembly !== undefined && webAssembly.validate(RELAXED_SIMD_PROBE);
    } catch {
      return false;
    }
  };
  relaxedSupported = probe();
  if (!relaxedSupported) {
    try {
      setFlagsFromString("--experimental-wasm-relaxed-simd");
      relaxedSupported = probe();
    } catch {
      relaxedSupported = false;
    }
  }
  return relaxedSupported;
}

/** True when this engine supports WebAssembly fixed-width (128-bit) SIMD. */
export function wasmSimdSupported(): boolean {
  try {
    return webAssembly !== undefined && webAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

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
    this.registry.register(data, address + bytes * 2 ** 32);
    this.stats.arrays++;
    this.stats.arrayBytes += bytes;
    return data;
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

/** Options of {@link createWasmBackend}. */
export interface WasmBackendOptions {
  /**
   * Element-wise calls on fewer elements than this stay in JS, where the copy into the linear
   * memory would cost more than it saves; 0 sends every supported call to WASM (for tests).
   */
  minElements?: number;
  /** Sizes of the shared linear memory the arrays live in. */
  arena?: WasmArenaOptions;
  /**
   * Which kernels module (default "auto": relaxed SIMD where the engine accepts it, else plain
   * SIMD); "relaxed" throws where the engine lacks it. "simd" names the backend "wasm-plain", so
   * worker threads select the same build.
   */
  build?: WasmBuild | "auto";
}

/** The wasm backend, with the arena its arrays live in when it has one. */
export interface WasmBackend extends Backend {
  readonly arena: WasmArena | undefined;
  /** The kernels module it runs, and its exports (for a caller that plans its own buffers). */
  readonly build: WasmBuild;
  readonly kernels: KernelExports;
  /** Element-wise calls below this size run the js kernels ({@link WasmBackendOptions}). */
  readonly minElements: number;
}

/**
 * allocateArray's hook: arrays go to the active backend's arena, if it has one (a wrapper that
 * copies the wasm backend's `arena`, e.g. a bench's timing wrapper, shares it).
 */
const arenaAllocator: ArrayAllocator = {
  allocate: (size, dtype) => (backend() as Partial<WasmBackend>).arena?.allocate(size, dtype),
  placing: () => (backend() as Partial<WasmBackend>).arena !== undefined,
  zero: (data) => (backend() as Partial<WasmBackend>).arena?.zero(data) ?? false,
};

/** Path of build/kernels-shared.wasm (or kernels-relaxed.wasm) under the package root. */
export function wasmSharedKernelsPath(build: WasmBuild = "simd"): string {
  const file = build === "relaxed" ? "kernels-relaxed.wasm" : "kernels-shared.wasm";
  return join(packageRoot(), "build", file);
}

/** The arena over a fresh shared memory running build/kernels-shared.wasm, or why not. */
function instantiateShared(
  api: WasmApi,
  options: WasmArenaOptions,
  build: WasmBuild,
): { kernels: KernelExports; arena: WasmArena } {
  const path = wasmSharedKernelsPath(build);
  if (!existsSync(path)) throw new Error(`${path} not found; run \`npm run build:wasm\` first`);
  const memory = new api.Memory({
    initial: options.initialPages ?? 16,
    maximum: options.maximumPages ?? 65536,
    shared: true,
  });
  if (!(memory.buffer instanceof SharedArrayBuffer)) throw new Error("memory is not shared");
  const module = new api.Module(readFileSync(path));
  // The cross-entropy kernel calls the host's Math.exp and Math.log: the js kernels' bits.
  const imports = { env: { memory }, kernels: { exp: Math.exp, log: Math.log } };
  const kernels = new api.Instance(module, imports).exports as KernelExports;
  const maximumBytes = (options.maximumPages ?? 65536) * PAGE_BYTES;
  return {
    kernels,
    arena: new WasmArena(memory, kernels.heapBase(), kernels.zeroBytes, maximumBytes),
  };
}

/**
 * A WASM SIMD backend over a fresh shared memory, instantiated synchronously; throws when the
 * engine lacks WASM SIMD or shared memory, or the built module is missing. Example:
 * `setBackend(createWasmBackend())` makes every op's matmul run in WASM.
 */
export function createWasmBackend(given?: WasmBackendOptions): WasmBackend {
  const example = 'createWasmBackend({ build: "simd" })';
  const options = checkOptions(
    "createWasmBackend",
    given,
    ["minElements", "arena", "build"],
    example,
  );
  if (options.build !== undefined && !["auto", "simd", "relaxed"].includes(options.build)) {
    throw new TypeError(
      `createWasmBackend: build must be "auto", "simd" or "relaxed"; got ${typeName(options.build)}`,
    );
  }
  checkOptions(
    "createWasmBackend: arena",
    options.arena,
    ["initialPages", "maximumPages"],
    example,
  );
  const minElements = options.minElements ?? BINARY_MIN_SIZE;
  if (!webAssembly || !wasmSimdSupported())
    throw new Error("wasm backend: this engine has no WebAssembly SIMD");
  const requested = options.build ?? "auto";
  if (requested === "relaxed" && !wasmRelaxedSimdSupported()) {
    throw new Error("wasm backend: this engine has no relaxed SIMD");
  }
  const build: WasmBuild =
    requested === "auto" ? (wasmRelaxedSimdSupported() ? "relaxed" : "simd") : requested;
  const { kernels: k, arena: h } = instantiateShared(webAssembly, options.arena ?? {}, build);

  /** `t`'s address when the kernel can read it in place as `dtype`, else -1. */
  const inPlace = (data: TypedArray, dtype: DType): number =>
    data instanceof Float32Array === (dtype === "float32") ? h.addressOf(data) : -1;

  function matmul(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
    // A stack times one matrix: one product of its rows (batchedMatmul reshapes, calls back).
    // Matrices, and stacks that pair up or broadcast a single matrix: one call of the batched
    // kernel. Any other broadcast, or an error to report: one product per matrix.
    const stackTimesMatrix = a.rank > 2 && b.rank === 2 && !transA;
    return (
      (stackTimesMatrix ? undefined : stacked(a, b, transA, transB)) ??
      batchedMatmul(a, b, transA, transB, matmul)
    );
  }

  // Operand addresses of the element-wise kernels below, reused so a call allocates nothing.
  const slots = [0, 0, 0];

  /**
   * Sets slots to the byte addresses of x, y (when given) and out, all `dtype`: arrays in the
   * linear memory in place, the others copied into scratch (out only reserved). Returns whether
   * out is written in place.
   */
  function place(dtype: DType, x: TypedArray, y: TypedArray | undefined, out: TypedArray): boolean {
    const elem = dtype === "float32" ? 4 : 8;
    slots[0] = inPlace(x, dtype);
    slots[1] = y ? inPlace(y, dtype) : 0;
    slots[2] = h.addressOf(out);
    const yRel = slots[0] < 0 ? align(x.length * elem) : 0;
    const outRel = yRel + (slots[1] < 0 ? align(y!.length * elem) : 0);
    const bytes = outRel + (slots[2] < 0 ? out.length * elem : 0);
    if (bytes === 0) return true;
    const base = h.scratch(bytes);
    const view = h.view(dtype);
    if (slots[0] < 0) {
      slots[0] = base;
      view.set(x, base / elem);
      wasmStats.elementsCopiedIn += x.length;
    }
    if (slots[1] < 0) {
      slots[1] = base + yRel;
      view.set(y!, slots[1] / elem);
      wasmStats.elementsCopiedIn += y!.length;
    }
    if (slots[2] >= 0) return true;
    slots[2] = base + outRel;
    return false;
  }

  /**
   * Runs `kernel(x, y, out addresses)` with x, y (optional) and `out`'s data placed in the
   * memory, brings a result written to scratch back into `out`, and returns it.
   */
  function launch(
    dtype: DType,
    x: TypedArray,
    y: TypedArray | undefined,
    out: Tensor,
    kernel: (x: number, y: number, out: number) => void,
  ): Tensor {
    const direct = place(dtype, x, y, out.data);
    kernel(slots[0], slots[1], slots[2]);
    wasmStats.calls++;
    if (!direct) {
      const start = slots[2] / (dtype === "float32" ? 4 : 8);
      out.data.set(h.view(dtype).subarray(start, start + out.size));
      wasmStats.elementsCopiedOut += out.size;
    }
    return out;
  }

  /** out = a (op) b where b is one row broadcast down a's last dim ((n,k) op (k,)). */
  function rowBinary(op: number, a: Tensor, b: Tensor): Tensor {
    const run = a.dtype === "float32" ? k.rowBinaryF32 : k.rowBinaryF64;
    return launch(a.dtype, a.data, b.data, allocate(a.shape, a.dtype), (x, y, o) =>
      run(op, x, y, o, a.size / b.size, b.size),
    );
  }

  function binary(kind: BinaryKind, a: Tensor, b: Tensor): Tensor {
    const op = BINARY_CODES[kind];
    if (op === null || Math.max(a.size, b.size) < minElements) return jsBackend.binary(kind, a, b);
    if (!sameShape(a.shape, b.shape)) {
      if (a.dtype === b.dtype) {
        if (isRowOf(b, a)) return rowBinary(op, a, b);
        if ((kind === "add" || kind === "mul") && isRowOf(a, b)) return rowBinary(op, b, a);
        const blocks = channelBlocks(a.shape, b.shape);
        if (blocks) {
          const run = a.dtype === "float32" ? k.channelBinaryF32 : k.channelBinaryF64;
          return launch(
            a.dtype,
            a.data,
            b.data,
            allocate(a.shape, a.dtype, false, false),
            (x, y, o) => run(op, x, y, o, ...blocks),
          );
        }
      }
      return jsBackend.binary(kind, a, b);
    }
    // An operand of the other dtype is converted by the copy into scratch.
    const dtype = resultDType(a.dtype, b.dtype);
    const run = dtype === "float32" ? k.binaryF32 : k.binaryF64;
    return launch(dtype, a.data, b.data, allocate(a.shape, dtype), (x, y, o) =>
      run(op, x, y, o, a.size),
    );
  }

  function unary(kind: UnaryKind, x: Tensor): Tensor {
    const op = UNARY_CODES[kind];
    if (op === null || x.size < minElements) return jsBackend.unary(kind, x);
    const run = x.dtype === "float32" ? k.unaryF32 : k.unaryF64;
    return launch(x.dtype, x.data, undefined, allocate(x.shape, x.dtype), (xa, _, o) =>
      run(op, xa, o, x.size),
    );
  }

  /** `x` summed over its leading `rows` (a rows x x.size/rows matrix) into a new `shape`. */
  function columnSum(x: Tensor, rows: number, shape: readonly number[]): Tensor {
    const run = x.dtype === "float32" ? k.columnSumF32 : k.columnSumF64;
    return launch(x.dtype, x.data, undefined, allocate(shape, x.dtype), (xa, _, o) =>
      run(xa, o, rows, x.size / rows),
    );
  }

  function sumTo(x: Tensor, shape: readonly number[]): Tensor {
    if (x.size >= minElements && !sameShape(x.shape, shape)) {
      const rows = leadingRows(x.shape, shape);
      if (rows > 0) return columnSum(x, rows, shape);
      const blocks = channelBlocks(x.shape, shape);
      if (blocks) {
        const run = x.dtype === "float32" ? k.channelSumF32 : k.channelSumF64;
        return launch(
          x.dtype,
          x.data,
          undefined,
          allocate(shape, x.dtype, false, false),
          (xa, _, o) => run(xa, o, ...blocks),
        );
      }
    }
    return jsBackend.sumTo(x, shape);
  }

  function reduce(kind: ReduceKind, x: Tensor, axes: readonly number[], keepdims: boolean): Tensor {
    if (kind === "sum" && x.size >= minElements) {
      const rows = leadingRows(x.shape, reducedShape(x.shape, axes, true));
      if (rows > 0) return columnSum(x, rows, reducedShape(x.shape, axes, keepdims));
    }
    return jsBackend.reduce(kind, x, axes, keepdims);
  }

  /**
   * op(a) @ op(b) in one call of the batched kernel when each operand's batch axes are the
   * result's or all 1 (a single matrix broadcast by a zero stride; two matrices: one product);
   * undefined for any other broadcast, or when the inner dimensions differ (the caller's path
   * then says so). Operands already in the memory are read in place, others copied to scratch;
   * C is written in place when the kernel's padded tile grid is exactly m x n (else into
   * scratch, compacted by the kernel and copied out).
   */
  function stacked(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor | undefined {
    if (a.rank < 2 || b.rank < 2) return undefined;
    // NOTE: matrices skip the batch bookkeeping: a layer's small products are called per step
    // (50x64 @ 64x10 took 1 us more, 18%, through the general path's arrays).
    const plain = a.rank === 2 && b.rank === 2;
    const batch = plain ? [] : broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
    if (batch === null) return undefined;
    const count = plain ? 1 : sizeOf(batch);
    const strideOf = (t: Tensor) => {
      const own = plain ? 1 : sizeOf(t.shape.slice(0, -2));
      return own === count ? 1 : own === 1 ? 0 : -1;
    };
    const [sa, sb] = [strideOf(a), strideOf(b)];
    if (sa < 0 || sb < 0) return undefined;
    const [ra, ca] = [a.shape[a.rank - 2], a.shape[a.rank - 1]];
    const [rb, cb] = [b.shape[b.rank - 2], b.shape[b.rank - 1]];
    const [m, kk, n] = [transA ? ca : ra, transA ? ra : ca, transB ? rb : cb];
    if (kk !== (transB ? cb : rb)) return undefined;
    const dtype = resultDType(a.dtype, b.dtype);
    // Not zero-filled: the kernel (or the copy out of scratch) writes every element.
    const out = allocate(plain ? [m, n] : [...batch, m, n], dtype, false, false);
    if (out.size === 0) return out;
    const f32 = dtype === "float32";
    const elem = f32 ? 4 : 8;
    const mPad = f32 ? k.paddedRowsF32(m) : k.paddedRowsF64(m);
    const nPad = f32 ? k.paddedColsF32(n) : k.paddedColsF64(n);
    let aAddress = inPlace(a.data, dtype);
    let bAddress = inPlace(b.data, dtype);
    let cAddress = mPad === m && nPad === n ? h.addressOf(out.data) : -1;
    // Scratch layout, relative to its base: [A copy] [B copy] pack [C].
    const bRel = aAddress < 0 ? align(a.size * elem) : 0;
    const packRel = bRel + (bAddress < 0 ? align(b.size * elem) : 0);
    const packBytes = f32 ? k.packBytesF32(n, kk) : k.packBytesF64(n, kk);
    const cRel = packRel + align(packBytes);
    const cSize = (count - 1) * m * n + mPad * nPad;
    const base = h.scratch(cRel + (cAddress < 0 ? cSize * elem : 0));
    const view = h.view(dtype);
    if (aAddress < 0) {
      aAddress = base;
      view.set(a.data, aAddress / elem);
      wasmStats.elementsCopiedIn += a.size;
    }
    if (bAddress < 0) {
      bAddress = base + bRel;
      view.set(b.data, bAddress / elem);
      wasmStats.elementsCopiedIn += b.size;
    }
    const direct = cAddress >= 0;
    if (!direct) cAddress = base + cRel;
    const run = f32 ? k.matmulBatchF32 : k.matmulBatchF64;
    const [ta, tb] = [transA ? 1 : 0, transB ? 1 : 0];
    const [strideA, strideB] = [sa * m * kk * elem, sb * kk * n * elem];
    run(aAddress, bAddress, base + packRel, cAddress, m, n, kk, ta, tb, count, strideA, strideB);
    wasmStats.calls++;
    if (!direct) {
      const cIndex = cAddress / elem;
      out.data.set(view.subarray(cIndex, cIndex + out.size));
      wasmStats.elementsCopiedOut += out.size;
    }
    return out;
  }

  // NOTE: convolution as matrix products on the SIMD kernel (im2col, channels first): the patches
  // of x as the columns of cols [C*kH*kW, N*H'*W'] (asm/kernels.ts patches), the filters' rows
  // times them giving [F, N, H'*W'], whose two leading axes swap into [N, F, H', W']. The adjoints
  // are the transposed products, the input's added back from its columns (col2im). Measured on
  // the MNIST CNN's shapes: the JS im2col loop this replaced took 61% of a conv layer's time.
  const geometryBlock = h.allocate(12, "float32")!;
  // NOTE: i32 words over the block. The arena frees a block when its array is collected, so the
  // block's own array must stay reachable as long as the view is used: setGeometry reads its
  // address through it on every call (an address taken once let V8 collect the array, and the
  // reused block was overwritten mid-step: found by a second in-process cnn run's other bits).
  const geometryWords = new Int32Array(geometryBlock.buffer, geometryBlock.byteOffset, 12);
  let geometryAt = 0;

  /** Writes the patches kernel's geometry words; returns [oh, ow]. */
  function setGeometry(
    xShape: readonly number[],
    wShape: readonly number[],
    geometry: ConvGeometry,
  ): [number, number] {
    const [oh, ow] = convOut(xShape, wShape, geometry);
    const { stride, padding } = geometry;
    writeGeometry([...xShape, ...wShape.slice(2), ...stride, ...padding, oh, ow]);
    return [oh, ow];
  }

  /** Writes a kernel's geometry words and sets geometryAt (read through the block's array). */
  function writeGeometry(words: readonly number[]): void {
    geometryWords.set(words);
    geometryAt = h.addressOf(geometryBlock);
  }

  /** x's patches as the columns [C*kH*kW, N*H'*W'] (geometry set by {@link setGeometry}). */
  function patchColumns(x: Tensor, dtype: DType, rows: number, columns: number): Tensor {
    const cols = allocate([rows, columns], dtype, false, false);
    const run = dtype === "float32" ? k.patchesF32 : k.patchesF64;
    return launch(dtype, x.data, undefined, cols, (px, _, pc) => run(px, pc, geometryAt, 0));
  }

  /** t [a, b, ...run] as [b, a, ...run]: `shape` is the result's. */
  function swapLeadingAxes(t: Tensor, dtype: DType, shape: readonly number[]): Tensor {
    const [a, b] = [t.shape[0], t.shape[1]];
    const runBytes = (t.size / (a * b)) * (dtype === "float32" ? 4 : 8);
    const out = allocate(shape, dtype, false, false);
    return launch(dtype, t.data, undefined, out, (ps, _, po) =>
      k.swapLeading(ps, po, a, b, runBytes),
    );
  }

  const filterRows = (w: Tensor) => w.reshapeView([w.shape[0], w.size / w.shape[0]]);

  function conv2d(x: Tensor, w: Tensor, geometry: ConvGeometry): Tensor {
    const dtype = resultDType(x.dtype, w.dtype);
    const [n, f] = [x.shape[0], w.shape[0]];
    const [oh, ow] = setGeometry(x.shape, w.shape, geometry);
    const cols = patchColumns(x, dtype, w.size / f, n * oh * ow);
    const rows = matmul(filterRows(w), cols, false, false);
    releaseArray(cols.data);
    const out = swapLeadingAxes(rows.reshapeView([f, n, oh * ow]), dtype, [n, f, oh, ow]);
    releaseArray(rows.data);
    return out;
  }

  function conv2dInputGrad(
    g: Tensor,
    w: Tensor,
    xShape: readonly number[],
    geometry: ConvGeometry,
  ): Tensor {
    const dtype = resultDType(g.dtype, w.dtype);
    const [n, f, oh, ow] = g.shape;
    const rows = swapLeadingAxes(g, dtype, [f, n * oh * ow]);
    const cols = matmul(filterRows(w), rows, true, false);
    releaseArray(rows.data);
    setGeometry(xShape, w.shape, geometry);
    const out = allocate(xShape, dtype, false, false);
    const run = dtype === "float32" ? k.patchesF32 : k.patchesF64;
    launch(dtype, cols.data, undefined, out, (pc, _, px) => run(px, pc, geometryAt, 1));
    releaseArray(cols.data);
    return out;
  }

  function conv2dFilterGrad(
    x: Tensor,
    g: Tensor,
    wShape: readonly number[],
    geometry: ConvGeometry,
  ): Tensor {
    const dtype = resultDType(x.dtype, g.dtype);
    const [n, f, oh, ow] = g.shape;
    setGeometry(x.shape, wShape, geometry);
    const cols = patchColumns(x, dtype, sizeOf(wShape) / f, n * oh * ow);
    const rows = swapLeadingAxes(g, dtype, [f, n * oh * ow]);
    const dw = matmul(rows, cols, false, true);
    releaseArray(rows.data);
    releaseArray(cols.data);
    return dw.reshapeView([...wShape]);
  }

  /**
   * Max-pooling on the WASM kernel: u at each window's first maximum of x (`scatter` false, the
   * pooled values when u is x), or u added back at them into x's shape (the gradient); both of
   * one dtype, else the js kernels run (a conversion could make two values tie).
   */
  function pooled(u: Tensor, x: Tensor, geometry: PoolGeometry, scatter: boolean): Tensor {
    const { size, stride } = geometry;
    const [n, c, hh, ww] = x.shape;
    const [oh, ow] = poolOut(x.shape, geometry);
    writeGeometry([n * c, hh, ww, oh, ow, ...size, ...stride]);
    const out = allocate(scatter ? x.shape : [n, c, oh, ow], u.dtype, false, false);
    const run = u.dtype === "float32" ? k.poolF32 : k.poolF64;
    const flag = scatter ? 1 : 0;
    return launch(u.dtype, x.data, u.data, out, (px, pu, po) => run(px, pu, po, geometryAt, flag));
  }

  const name = requested === "simd" ? "wasm-plain" : "wasm";
  const created: WasmBackend = {
    ...jsBackend,
    name,
    matmul,
    binary,
    unary,
    sumTo,
    reduce,
    conv2d,
    conv2dInputGrad,
    conv2dFilterGrad,
    maxPoolSelect: (u, x, geometry) =>
      u.dtype !== x.dtype || x.size === 0
        ? jsBackend.maxPoolSelect(u, x, geometry)
        : pooled(u, x, geometry, false),
    maxPoolGrad: (g, x, geometry) =>
      g.dtype !== x.dtype || x.size === 0
        ? jsBackend.maxPoolGrad(g, x, geometry)
        : pooled(g, x, geometry, true),
    arena: h,
    build,
    kernels: k,
    minElements,
  };
  setArrayAllocator(arenaAllocator);
  wasmBackends.add(created);
  return created;
}

/** Every WasmBackend made in this thread: what {@link isWasmBackend} checks against. */
const wasmBackends = new WeakSet<Backend>();

/** True when `b` is a WasmBackend (made by {@link createWasmBackend}). */
export function isWasmBackend(b: Backend): b is WasmBackend {
  return wasmBackends.has(b);
}

/**
 * [outer, channels, inner] when `small` (padded with leading 1s) is 1 everywhere but one run of
 * `big`'s dims with more than one element, and `big` has more than one element after it: a
 * per-channel value over an image batch ([F, 1, 1] against [N, F, H, W]); else undefined.
 */
function channelBlocks(
  big: readonly number[],
  small: readonly number[],
): [number, number, number] | undefined {
  if (small.length > big.length) return undefined;
  const padded = [...new Array<number>(big.length - small.length).fill(1), ...small];
  const kept = padded.flatMap((d, i) => (d === 1 ? [] : [i]));
  if (kept.length === 0) return undefined;
  const [first, last] = [kept[0], kept[kept.length - 1]];
  for (let i = first; i <= last; i++) if (padded[i] !== big[i]) return undefined;
  const [channels, inner] = [sizeOf(big.slice(first, last + 1)), sizeOf(big.slice(last + 1))];
  return channels > 1 && inner > 1 ? [sizeOf(big.slice(0, first)), channels, inner] : undefined;
}

/** True when `row` is one row of `x`'s last dim, so x (op) row has x's shape: (n,k) op (k,). */
function isRowOf(row: Tensor, x: Tensor): boolean {
  const cols = x.rank > 0 ? x.shape[x.rank - 1] : 0;
  return (
    row.rank <= x.rank &&
    row.rank > 0 &&
    row.size === cols &&
    row.shape[row.rank - 1] === cols &&
    x.size > cols
  );
}

/**
 * The rows of x summed when x (rank r) reduces to `shape` (rank r or lower, NumPy rules) by summing
 * over a leading run of its dims only (size-1 dims aside) with more than one element kept: the
 * bias gradient, (n,k) -> (k,). 0 for any other reduction, or shapes that do not match.
 */
function leadingRows(xShape: readonly number[], shape: readonly number[]): number {
  const offset = xShape.length - shape.length;
  if (offset < 0) return 0;
  let rows = 1;
  let cols = 1;
  for (let i = 0; i < xShape.length; i++) {
    const d = xShape[i];
    const target = i < offset ? 1 : shape[i - offset];
    if (d === 1) {
      if (target !== 1) return 0;
      continue;
    }
    if (target === 1) {
      if (cols > 1) return 0; // a reduced dim after a kept one
      rows *= d;
    } else if (target === d) cols *= d;
    else return 0;
  }
  return rows > 1 && cols > 1 ? rows : 0;
}

const cached = new Map<WasmBuild | "auto", WasmBackend>();

/**
 * This thread's WASM backend of a build (default "auto", see {@link WasmBackendOptions.build}),
 * created once; undefined (and `onFallback` told why) when WASM SIMD or the built module is
 * unavailable.
 */
export function tryWasmBackend(
  onFallback?: (error: Error) => void,
  build: WasmBuild | "auto" = "auto",
): WasmBackend | undefined {
  const known = cached.get(build);
  if (known) return known;
  try {
    const created = createWasmBackend({ build });
    cached.set(build, created);
    return created;
  } catch (error) {
    onFallback?.(error instanceof Error ? error : new Error(String(error)));
    return undefined;
  }
}

/**
 * {@link tryWasmBackend}, falling back to jsBackend. Example: `setBackend(loadWasmBackend())`.
 */
export function loadWasmBackend(
  onFallback?: (error: Error) => void,
  build: WasmBuild | "auto" = "auto",
): Backend {
  return tryWasmBackend(onFallback, build) ?? jsBackend;
}
