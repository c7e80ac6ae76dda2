/**
 * The WASM SIMD backend: matmul (f32x4 / f64x2, packed and register-blocked) and same-shape
 * element-wise add/sub/mul/div run in build/kernels.wasm (compiled from asm/ by
 * `npm run build:wasm`); every other kernel is the reference jsBackend's.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Backend, BinaryKind } from "../backend.js";
import { fmt, sameShape } from "../shape.js";
import { allocate, resultDType, type DType, type Tensor, type TypedArray } from "../tensor.js";
import { jsBackend } from "./js.js";

// NOTE: the project's lib (ES2022 + @types/node 20) has no WebAssembly types, so the few members
// used here are declared locally and the global is read through globalThis.
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: object };
}
const webAssembly = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;

/** The exports of build/kernels.wasm (see asm/kernels.ts); booleans are passed as 0/1. */
interface KernelExports {
  memory: WasmMemory;
  heapBase(): number;
  paddedRowsF32(m: number): number;
  paddedColsF32(n: number): number;
  paddedRowsF64(m: number): number;
  paddedColsF64(n: number): number;
  packBytesF32(n: number, k: number): number;
  packBytesF64(n: number, k: number): number;
  matmulF32(
    a: number,
    b: number,
    pack: number,
    c: number,
    m: number,
    n: number,
    k: number,
    transA: number,
    transB: number,
  ): void;
  matmulF64(
    a: number,
    b: number,
    pack: number,
    c: number,
    m: number,
    n: number,
    k: number,
    transA: number,
    transB: number,
  ): void;
  compactRows(c: number, m: number, rowBytes: number, ldc: number): void;
  binaryF32(op: number, x: number, y: number, out: number, n: number): void;
  binaryF64(op: number, x: number, y: number, out: number, n: number): void;
}

const binaryOps: Record<BinaryKind, number> = { add: 0, sub: 1, mul: 2, div: 3 };

/** Below this many elements the JS loop beats copying into and out of the linear memory. */
const BINARY_MIN_SIZE = 64;

const PAGE_BYTES = 65536;

/** Rounds a byte count up to a cache line, so every region starts 64-byte aligned. */
const align = (bytes: number): number => (bytes + 63) & ~63;

// NOTE: `(module (func (result v128) i32.const 0 i8x16.splat))`: validates only where the engine
// has fixed-width SIMD, without needing the built kernels.
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, 0x03,
  0x02, 0x01, 0x00, 0x0a, 0x08, 0x01, 0x06, 0x00, 0x41, 0x00, 0xfd, 0x0f, 0x0b,
]);

/** True when this engine supports WebAssembly fixed-width (128-bit) SIMD. */
export function wasmSimdSupported(): boolean {
  try {
    return webAssembly !== undefined && webAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

/** Path of build/kernels.wasm under the package root (the first folder up with package.json). */
export function wasmKernelsPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json"))) return join(dir, "build", "kernels.wasm");
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`wasm backend: no package.json above ${import.meta.url}`);
    dir = parent;
  }
}

/** The linear memory as typed views, re-created after the memory grows (growth detaches them). */
class Heap {
  private buffer: ArrayBuffer;
  f32: Float32Array;
  f64: Float64Array;

  constructor(
    private readonly memory: WasmMemory,
    readonly base: number,
  ) {
    this.buffer = memory.buffer;
    this.f32 = new Float32Array(this.buffer);
    this.f64 = new Float64Array(this.buffer);
  }

  /** Makes base .. base+bytes addressable and the views current. */
  reserve(bytes: number): void {
    const needed = this.base + bytes;
    const have = this.memory.buffer.byteLength;
    if (needed > have) this.memory.grow(Math.ceil((needed - have) / PAGE_BYTES));
    if (this.buffer !== this.memory.buffer) {
      this.buffer = this.memory.buffer;
      this.f32 = new Float32Array(this.buffer);
      this.f64 = new Float64Array(this.buffer);
    }
  }

  /** The view of the given dtype. */
  view(dtype: DType): TypedArray {
    return dtype === "float32" ? this.f32 : this.f64;
  }
}

/** Options of {@link createWasmBackend}. */
export interface WasmBackendOptions {
  /**
   * Element-wise calls on fewer elements than this stay in JS, where the copy into the linear
   * memory would cost more than it saves; 0 sends every supported call to WASM (for tests).
   */
  minElements?: number;
}

/**
 * A WASM SIMD backend instantiated synchronously from `bytes` (default: build/kernels.wasm);
 * throws when the module is missing or cannot be instantiated. Example:
 * `setBackend(createWasmBackend())` makes every op's matmul run in WASM.
 */
export function createWasmBackend(bytes?: Uint8Array, options: WasmBackendOptions = {}): Backend {
  const minElements = options.minElements ?? BINARY_MIN_SIZE;
  if (!webAssembly || !wasmSimdSupported())
    throw new Error("wasm backend: this engine has no WebAssembly SIMD");
  let source = bytes;
  if (!source) {
    const path = wasmKernelsPath();
    if (!existsSync(path)) {
      throw new Error(`wasm backend: ${path} not found; run \`npm run build:wasm\` first`);
    }
    source = readFileSync(path);
  }
  const module = new webAssembly.Module(source);
  const kernels = new webAssembly.Instance(module, {}).exports as KernelExports;
  const heap = new Heap(kernels.memory, align(kernels.heapBase()));

  function matmul(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
    if (a.rank !== 2 || b.rank !== 2) {
      throw new Error(`matmul: expects 2-D operands, got ${fmt(a.shape)} @ ${fmt(b.shape)}`);
    }
    const m = transA ? a.shape[1] : a.shape[0];
    const k = transA ? a.shape[0] : a.shape[1];
    const k2 = transB ? b.shape[1] : b.shape[0];
    const n = transB ? b.shape[0] : b.shape[1];
    if (k !== k2)
      throw new Error(`matmul: inner dimensions differ: ${fmt(a.shape)} @ ${fmt(b.shape)}`);
    const dtype = resultDType(a.dtype, b.dtype);
    const out = allocate([m, n], dtype);
    if (m === 0 || n === 0) return out;
    const f32 = dtype === "float32";
    const elem = f32 ? 4 : 8;
    const mPad = f32 ? kernels.paddedRowsF32(m) : kernels.paddedRowsF64(m);
    const nPad = f32 ? kernels.paddedColsF32(n) : kernels.paddedColsF64(n);
    const aOffset = heap.base;
    const bOffset = aOffset + align(m * k * elem);
    const packOffset = bOffset + align(k * n * elem);
    const packBytes = f32 ? kernels.packBytesF32(n, k) : kernels.packBytesF64(n, k);
    const cOffset = packOffset + align(packBytes);
    heap.reserve(cOffset + mPad * nPad * elem - heap.base);
    const view = heap.view(dtype);
    view.set(a.data, aOffset / elem);
    view.set(b.data, bOffset / elem);
    const run = f32 ? kernels.matmulF32 : kernels.matmulF64;
    run(aOffset, bOffset, packOffset, cOffset, m, n, k, transA ? 1 : 0, transB ? 1 : 0);
    kernels.compactRows(cOffset, m, n * elem, nPad * elem);
    const cIndex = cOffset / elem;
    out.data.set(view.subarray(cIndex, cIndex + m * n));
    return out;
  }

  function binary(kind: BinaryKind, a: Tensor, b: Tensor): Tensor {
    if (!sameShape(a.shape, b.shape) || a.size < minElements) {
      return jsBackend.binary(kind, a, b);
    }
    const dtype = resultDType(a.dtype, b.dtype);
    const elem = dtype === "float32" ? 4 : 8;
    const n = a.size;
    const bytes = align(n * elem);
    const xOffset = heap.base;
    const yOffset = xOffset + bytes;
    const outOffset = yOffset + bytes;
    heap.reserve(3 * bytes);
    const view = heap.view(dtype);
    view.set(a.data, xOffset / elem);
    view.set(b.data, yOffset / elem);
    const run = dtype === "float32" ? kernels.binaryF32 : kernels.binaryF64;
    run(binaryOps[kind], xOffset, yOffset, outOffset, n);
    const out = allocate(a.shape, dtype);
    out.data.set(view.subarray(outOffset / elem, outOffset / elem + n));
    return out;
  }

  return { ...jsBackend, name: "wasm", matmul, binary };
}

let cached: Backend | undefined;

/**
 * This thread's WASM backend, created once; falls back to jsBackend (and tells `onFallback` why)
 * when WASM SIMD or build/kernels.wasm is unavailable. Example: `setBackend(loadWasmBackend())`.
 */
export function loadWasmBackend(onFallback?: (error: Error) => void): Backend {
  if (cached) return cached;
  try {
    cached = createWasmBackend();
  } catch (error) {
    onFallback?.(error instanceof Error ? error : new Error(String(error)));
    return jsBackend;
  }
  return cached;
}
