/**
 * The wasm backend's image kernels: convolution as products on the SIMD matmul (im2col, channels
 * first) and max-pooling, over the instance's kernels and arena.
 */
import type { Backend, ConvGeometry, PoolGeometry } from "../tensor/backend.js";
import { sizeOf } from "../tensor/shape.js";
import {
  allocate,
  releaseArray,
  resultDType,
  type DType,
  type Tensor,
  type TypedArray,
} from "../tensor/tensor.js";
import { convOut, poolOut } from "../tensor/kernels/js-nn.js";
import { jsBackend } from "../tensor/kernels/js.js";
import type { WasmArena } from "./wasm-arena.js";
import type { KernelExports } from "./wasm-module.js";

/**
 * The patches kernel's geometry words (asm/kernels.ts patches): x's [N, C, H, W], the window,
 * stride and padding, and the output's H' and W' (returned too).
 */
export function convWords(
  xShape: readonly number[],
  wShape: readonly number[],
  geometry: ConvGeometry,
): { oh: number; ow: number; words: number[] } {
  const [oh, ow] = convOut(xShape, wShape, geometry);
  const { stride, padding } = geometry;
  return { oh, ow, words: [...xShape, ...wShape.slice(2), ...stride, ...padding, oh, ow] };
}

/**
 * The pooling kernel's geometry words (asm/kernels.ts pool): x's images (N*C), their H and W, the
 * output's H' and W' (returned too), the window and the stride.
 */
export function poolWords(
  xShape: readonly number[],
  geometry: PoolGeometry,
): { oh: number; ow: number; words: number[] } {
  const [n, c, hh, ww] = xShape;
  const [oh, ow] = poolOut(xShape, geometry);
  return { oh, ow, words: [n * c, hh, ww, oh, ow, ...geometry.size, ...geometry.stride] };
}

/** How the backend runs a kernel on placed data (wasm.ts's launch). */
type Launch = (
  dtype: DType,
  x: TypedArray,
  y: TypedArray | undefined,
  out: Tensor,
  kernel: (x: number, y: number, out: number) => void,
) => Tensor;

/** The conv2d and max-pooling kernels of one wasm backend instance. */
export function imageKernels(
  k: KernelExports,
  h: WasmArena,
  launch: Launch,
  matmul: Backend["matmul"],
): Pick<
  Backend,
  "conv2d" | "conv2dInputGrad" | "conv2dFilterGrad" | "maxPoolSelect" | "maxPoolGrad"
> {
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
    const { oh, ow, words } = convWords(xShape, wShape, geometry);
    writeGeometry(words);
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

  /** x's patches as the columns [C*kH*kW, N*H'*W'] for filters of `wShape` (release them). */
  function patches(
    x: Tensor,
    wShape: readonly number[],
    geometry: ConvGeometry,
    dtype: DType,
  ): Tensor {
    const [oh, ow] = setGeometry(x.shape, wShape, geometry);
    return patchColumns(x, dtype, sizeOf(wShape) / wShape[0], x.shape[0] * oh * ow);
  }

  /** conv2d of an x of `xShape` by w, from x's {@link patches}. */
  function fromPatches(
    cols: Tensor,
    w: Tensor,
    xShape: readonly number[],
    geometry: ConvGeometry,
    dtype: DType,
  ): Tensor {
    const [n, f] = [xShape[0], w.shape[0]];
    const [oh, ow] = convOut(xShape, w.shape, geometry);
    const rows = matmul(filterRows(w), cols, false, false);
    const out = swapLeadingAxes(rows.reshapeView([f, n, oh * ow]), dtype, [n, f, oh, ow]);
    releaseArray(rows.data);
    return out;
  }

  function conv2d(x: Tensor, w: Tensor, geometry: ConvGeometry): Tensor {
    const dtype = resultDType(x.dtype, w.dtype);
    const cols = patches(x, w.shape, geometry, dtype);
    const out = fromPatches(cols, w, x.shape, geometry, dtype);
    releaseArray(cols.data);
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

  /** conv2dFilterGrad for the output gradient g, from x's {@link patches}. */
  function filterGradFromPatches(
    cols: Tensor,
    g: Tensor,
    wShape: readonly number[],
    dtype: DType,
  ): Tensor {
    const [n, f, oh, ow] = g.shape;
    const rows = swapLeadingAxes(g, dtype, [f, n * oh * ow]);
    const dw = matmul(rows, cols, false, true);
    releaseArray(rows.data);
    return dw.reshapeView([...wShape]);
  }

  function conv2dFilterGrad(
    x: Tensor,
    g: Tensor,
    wShape: readonly number[],
    geometry: ConvGeometry,
  ): Tensor {
    const dtype = resultDType(x.dtype, g.dtype);
    const cols = patches(x, wShape, geometry, dtype);
    const dw = filterGradFromPatches(cols, g, wShape, dtype);
    releaseArray(cols.data);
    return dw;
  }

  /**
   * Max-pooling on the WASM kernel: u at each window's first maximum of x (`scatter` false, the
   * pooled values when u is x), or u added back at them into x's shape (the gradient); both of
   * one dtype, else the js kernels run (a conversion could make two values tie).
   */
  function pooled(u: Tensor, x: Tensor, geometry: PoolGeometry, scatter: boolean): Tensor {
    const [n, c] = x.shape;
    const { oh, ow, words } = poolWords(x.shape, geometry);
    writeGeometry(words);
    const out = allocate(scatter ? x.shape : [n, c, oh, ow], u.dtype, false, false);
    const run = u.dtype === "float32" ? k.poolF32 : k.poolF64;
    const flag = scatter ? 1 : 0;
    return launch(u.dtype, x.data, u.data, out, (px, pu, po) => run(px, pu, po, geometryAt, flag));
  }

  return {
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
  };
}
