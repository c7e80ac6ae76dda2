/**
 * The WebAssembly engine as adjoint uses it: its API, the SIMD and relaxed-SIMD probes, and the
 * kernels' exports.
 */
import { setFlagsFromString } from "node:v8";

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
export const webAssembly = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;

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
  /**
   * (width, x, targets, loss or 0, grad or 0, rows, n, divisor): softmax cross-entropy over rows
   * with the kernels' own exp, each stored value divided by divisor (the mean's row count, or 1).
   */
  crossEntropyOf(...args: [number, number, number, number, number, number, number, number]): void;
  /** (src, rows, dst, count, rowBytes): rows[i] of a table of rows into row i of dst. */
  gatherRows(src: number, rows: number, dst: number, count: number, rowBytes: number): void;
  /** (x, out, n): exp of n f64 values, the cross-entropy's exp (for its tests). */
  expF64(x: number, out: number, n: number): void;
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
