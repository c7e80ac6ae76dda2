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
import { backend } from "../tensor/active.js";
import {
  type Backend,
  type BinaryKind,
  type ReduceKind,
  type UnaryKind,
} from "../tensor/backend.js";
import { broadcastShapes, productDims, reducedShape, sameShape, sizeOf } from "../tensor/shape.js";
import {
  allocate,
  resultDType,
  setArrayAllocator,
  type ArrayAllocator,
  type DType,
  type Tensor,
  type TypedArray,
} from "../tensor/tensor.js";
import { batchedMatmul } from "../tensor/kernels/js-matmul.js";
import { jsBackend } from "../tensor/kernels/js.js";
import { checkOptions, typeName } from "../tensor/options.js";
import { PAGE_BYTES, align, wasmStats, WasmArena, type WasmArenaOptions } from "./wasm-arena.js";
import { imageKernels } from "./wasm-image.js";
import {
  WasmApi,
  webAssembly,
  KernelExports,
  WasmBuild,
  wasmRelaxedSimdSupported,
  wasmSimdSupported,
} from "./wasm-module.js";
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
  // The cross-entropy kernel calls the host's Math.log once per row (its exp is its own).
  const imports = { env: { memory }, kernels: { log: Math.log } };
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
    const stack = plain ? MATRICES : productStack(a.shape, b.shape);
    if (stack === undefined) return undefined;
    const { batch, count } = stack;
    const [m, kk, n] = productDims(a.shape, b.shape, transA, transB);
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
    const strideA = stack.stackA ? m * kk * elem : 0;
    const strideB = stack.stackB ? kk * n * elem : 0;
    run(aAddress, bAddress, base + packRel, cAddress, m, n, kk, ta, tb, count, strideA, strideB);
    wasmStats.calls++;
    if (!direct) {
      const cIndex = cAddress / elem;
      out.data.set(view.subarray(cIndex, cIndex + out.size));
      wasmStats.elementsCopiedOut += out.size;
    }
    return out;
  }

  /**
   * softmax cross-entropy over the last axis in one WASM pass (asm/kernels.ts crossEntropyOf, its
   * own exp): the loss into a 0-d tensor, or (`gradient`) the logits' gradient; other axes, and
   * inputs the js kernel rejects (it says why), run the js kernels.
   */
  function crossEntropy(logits: Tensor, targets: Tensor, axis: number, gradient: boolean): Tensor {
    const n = logits.rank > 0 ? logits.shape[logits.rank - 1] : 0;
    const fits =
      axis === logits.rank - 1 && logits.size > 0 && sameShape(logits.shape, targets.shape);
    if (!fits) {
      return gradient
        ? jsBackend.softmaxCrossEntropyGrad(logits, targets, axis)
        : jsBackend.softmaxCrossEntropy(logits, targets, axis);
    }
    const dtype = resultDType(logits.dtype, targets.dtype);
    const width = dtype === "float32" ? 4 : 8;
    const rows = logits.size / n;
    const out = allocate(gradient ? logits.shape : [], dtype, false, false);
    return launch(dtype, logits.data, targets.data, out, (x, t, o) =>
      k.crossEntropyOf(width, x, t, gradient ? 0 : o, gradient ? o : 0, rows, n, 1),
    );
  }

  const images = imageKernels(k, h, launch, matmul);

  const name = requested === "simd" ? "wasm-plain" : "wasm";
  const created: WasmBackend = {
    ...jsBackend,
    name,
    matmul,
    binary,
    unary,
    sumTo,
    reduce,
    softmaxCrossEntropy: (logits, targets, axis) => crossEntropy(logits, targets, axis, false),
    softmaxCrossEntropyGrad: (logits, targets, axis) => crossEntropy(logits, targets, axis, true),
    ...images,
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
export function channelBlocks(
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

/**
 * How the batched kernel runs a product ({@link productStack}): the result's batch dims, the
 * products (their size), and whether each operand's matrices advance with them (false: one, broadcast).
 */
type ProductStack = { batch: number[]; count: number; stackA: boolean; stackB: boolean };

/** Two matrices: one product. */
const MATRICES: ProductStack = { batch: [], count: 1, stackA: false, stackB: false };

/**
 * The batched kernel's layout of op(a) @ op(b) for operands of shapes `a` and `b` (rank 2 or
 * more): stacks that pair up, or one matrix broadcast against a stack; undefined for any other
 * broadcast of the batch dims (one product per matrix then).
 */
export function productStack(a: readonly number[], b: readonly number[]): ProductStack | undefined {
  const batch = broadcastShapes(a.slice(0, -2), b.slice(0, -2));
  if (batch === null) return undefined;
  const count = sizeOf(batch);
  const [ownA, ownB] = [a, b].map((s) => sizeOf(s.slice(0, -2)));
  if ((ownA !== count && ownA !== 1) || (ownB !== count && ownB !== 1)) return undefined;
  return { batch, count, stackA: ownA === count && count > 1, stackB: ownB === count && count > 1 };
}

/** True when `row` is one row of `x`'s trailing dims: (n,k) op (k,), (n,t,k) op (t,k). */
function isRowOf(row: Tensor, x: Tensor): boolean {
  return isTrailingBlock(row.shape, x.shape) && x.size > row.size;
}

/**
 * True when `small`, its leading 1s aside (not its last dim), is `big`'s trailing dims: x (op) y
 * then pairs element i of x with element i mod y.size of y, one row of y per row of x.
 */
export function isTrailingBlock(small: readonly number[], big: readonly number[]): boolean {
  let first = 0;
  while (first < small.length - 1 && small[first] === 1) first++;
  const kept = small.length - first;
  if (kept === 0 || kept > big.length) return false;
  for (let i = 0; i < kept; i++)
    if (small[small.length - 1 - i] !== big[big.length - 1 - i]) return false;
  return small.length <= big.length;
}

/**
 * The rows of x summed when x (rank r) reduces to `shape` (rank r or lower, NumPy rules) by summing
 * over a leading run of its dims only (size-1 dims aside) with more than one element kept: the
 * bias gradient, (n,k) -> (k,). 0 for any other reduction, or shapes that do not match.
 */
export function leadingRows(xShape: readonly number[], shape: readonly number[]): number {
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
