/**
 * The compiled step's image ops: conv2d (keeping x's patches for its filter gradient), its two
 * adjoints, max-pooling and its gradient, each a few WASM calls by address into buffers the
 * program holds: the wasm backend's kernels in its order (wasm-image.ts), so the same bits,
 * without a Tensor, a pooled array or a copy of the result per step.
 */
import type { Node } from "../../graph/node.js";
import { sameShape } from "../../tensor/shape.js";
import { Tensor, type DType, type TypedArray } from "../../tensor/tensor.js";
import type { KernelExports } from "../wasm-module.js";
import { convWords, poolWords } from "../wasm-image.js";
import type { ConvGeometry } from "../../tensor/backend.js";
import {
  hold,
  planned,
  productCall,
  productOut,
  type Like,
  type ProductDims,
  type Step,
} from "./held.js";

/** What the image steps share with the compiler for one program. */
export interface ImageContext {
  k: KernelExports;
  at: (data: TypedArray) => number;
  order: readonly Node[];
  values: Map<Node, Tensor>;
  probe: ReadonlyMap<Node, Like>;
  /** Steps an earlier node's case builds for a later node (conv2d's filter gradient). */
  deferred: Map<Node, (inputs: Tensor[]) => Step | undefined>;
  /** Output gradients' rows [F, N*H'*W'], swapped by the first step that needs them. */
  swapped: Map<TypedArray, TypedArray>;
}

/** The step of an image op, or undefined (it then runs through its compute). */
export function imageStep(
  ctx: ImageContext,
  node: Node,
  inputs: Tensor[],
  like: Like,
): Step | undefined {
  if (like.size === 0 || inputs.some((t) => t.dtype !== like.dtype || ctx.at(t.data) < 0))
    return undefined;
  switch (node.op.name) {
    case "conv2d":
      return convStep(ctx, node, inputs, like);
    case "conv2dInputGrad":
      return inputGradStep(ctx, node, inputs, like);
    case "conv2dFilterGrad": {
      const [x, g] = inputs;
      const cols = patchesCall(ctx, node, x, like.shape, like.dtype);
      return filterGradStep(ctx, cols.data, g, like, cols.run);
    }
    case "maxPool2d":
      return poolStep(ctx, node, inputs[0], inputs[0], like, false);
    case "maxPoolSelect":
      return poolStep(ctx, node, inputs[0], inputs[1], like, false);
    case "maxPoolGrad":
      return poolStep(ctx, node, inputs[0], inputs[1], like, true);
    default:
      return undefined;
  }
}

/** A geometry block of i32 words in the kernels' memory, held by the program; its address. */
function geometryAt(ctx: ImageContext, words: readonly number[]): number {
  const block = hold(words.length, "float32");
  new Int32Array(block.buffer, block.byteOffset, words.length).set(words);
  return ctx.at(block);
}

/**
 * x's patches as the columns [C*kH*kW, N*H'*W'] into a held buffer (asm/kernels.ts patches) for
 * filters of `wShape`, at the conv node's stride and padding.
 */
function patchesCall(
  ctx: ImageContext,
  node: Node,
  x: Tensor,
  wShape: readonly number[],
  dtype: DType,
): { data: TypedArray; run: () => void; oh: number; ow: number } {
  const { oh, ow, words } = convWords(x.shape, wShape, convAt(node));
  const data = hold(x.shape[0] * oh * ow * wShape[1] * wShape[2] * wShape[3], dtype);
  const [px, pc, pg] = [ctx.at(x.data), ctx.at(data), geometryAt(ctx, words)];
  const kernel = dtype === "float32" ? ctx.k.patchesF32 : ctx.k.patchesF64;
  return { data, run: () => kernel(px, pc, pg, 0), oh, ow };
}

/** A conv node's stride and padding. */
const convAt = (node: Node): ConvGeometry => ({
  stride: node.attrs.stride as [number, number],
  padding: node.attrs.padding as [number, number],
});

/**
 * conv2d(x, w): the patches, the filters' rows times them ([F, N, H'*W']), whose two leading axes
 * swap into [N, F, H', W']; the patches are kept for the plan's filter gradient of the same x
 * and geometry, if any (its step is deferred to its place in the order).
 */
function convStep(ctx: ImageContext, node: Node, [x, w]: Tensor[], like: Like): Step | undefined {
  const { k, at } = ctx;
  const dtype = like.dtype;
  const [n, f] = [x.shape[0], w.shape[0]];
  const cols = patchesCall(ctx, node, x, w.shape, dtype);
  const dims: ProductDims = {
    m: f,
    n: n * cols.oh * cols.ow,
    k: w.size / f,
    transA: false,
    transB: false,
  };
  const rows = productOut(k, dims, [f, dims.n], dtype);
  const product = productCall(k, at, dtype, dims, [at(w.data), at(cols.data), at(rows.data)]);
  const { out } = planned(like);
  const [pr, po] = [at(rows.data), at(out.data)];
  if (product === undefined || po < 0) return undefined;
  const runBytes = cols.oh * cols.ow * (dtype === "float32" ? 4 : 8);
  const grad = ctx.order.find(
    (c) =>
      c.op.name === "conv2dFilterGrad" &&
      !ctx.values.has(c) &&
      !ctx.deferred.has(c) &&
      c.inputs[0] === node.inputs[0] &&
      sameShape(c.attrs.stride as number[], node.attrs.stride as number[]) &&
      sameShape(c.attrs.padding as number[], node.attrs.padding as number[]) &&
      sameShape(ctx.probe.get(c)!.shape, w.shape),
  );
  // Undefined there (g of another dtype): it runs through its compute, patches and all.
  if (grad !== undefined)
    ctx.deferred.set(grad, ([, g]) => filterGradStep(ctx, cols.data, g, ctx.probe.get(grad)!));
  return {
    out,
    label: grad ? "conv2d (patches kept)" : undefined,
    run: () => {
      cols.run();
      product();
      k.swapLeading(pr, po, f, n, runBytes);
    },
  };
}

/**
 * g [N, F, H', W'] as the rows [F, N*H'*W'] in a held buffer: the swap runs in the first step
 * that needs them (`keep()` records them once that step is built), later ones read them.
 */
function gradientRows(
  ctx: ImageContext,
  g: Tensor,
): { rows: TypedArray; swap?: () => void; keep: () => void } {
  const known = ctx.swapped.get(g.data);
  if (known) return { rows: known, keep: () => {} };
  const [n, f, oh, ow] = g.shape;
  const rows = hold(g.size, g.dtype);
  const [pg, pr] = [ctx.at(g.data), ctx.at(rows)];
  const runBytes = oh * ow * (g.dtype === "float32" ? 4 : 8);
  const swap = () => ctx.k.swapLeading(pg, pr, n, f, runBytes);
  return { rows, swap, keep: () => ctx.swapped.set(g.data, rows) };
}

/** conv2dFilterGrad from x's patches: g's rows times the patches' transpose, [F, C*kH*kW]. */
function filterGradStep(
  ctx: ImageContext,
  cols: TypedArray,
  g: Tensor,
  like: Like,
  patches?: () => void,
): Step | undefined {
  const { k, at } = ctx;
  if (g.dtype !== like.dtype || at(g.data) < 0) return undefined;
  const f = like.shape[0];
  const { rows, swap, keep } = gradientRows(ctx, g);
  const dims: ProductDims = { m: f, n: like.size / f, k: g.size / f, transA: false, transB: true };
  const dw = productOut(k, dims, like.shape, like.dtype);
  const product = productCall(k, at, like.dtype, dims, [at(rows), at(cols), at(dw.data)]);
  if (product === undefined) return undefined;
  keep();
  return {
    out: dw.out,
    label: patches ? undefined : "conv2dFilterGrad (patches kept)",
    run: () => {
      patches?.();
      swap?.();
      product();
    },
  };
}

/** conv2dInputGrad(g, w): the filters' transpose times g's rows, added back into x's shape. */
function inputGradStep(
  ctx: ImageContext,
  node: Node,
  [g, w]: Tensor[],
  like: Like,
): Step | undefined {
  const { k, at } = ctx;
  const dtype = like.dtype;
  const f = w.shape[0];
  const { rows, swap, keep } = gradientRows(ctx, g);
  const dims: ProductDims = { m: w.size / f, n: g.size / f, k: f, transA: true, transB: false };
  const cols = productOut(k, dims, [dims.m, dims.n], dtype);
  const product = productCall(k, at, dtype, dims, [at(w.data), at(rows), at(cols.data)]);
  const { out } = planned(like);
  const { words } = convWords(like.shape, w.shape, convAt(node));
  const [pc, po, pg] = [at(cols.data), at(out.data), geometryAt(ctx, words)];
  if (product === undefined || po < 0) return undefined;
  keep();
  const scatter = dtype === "float32" ? k.patchesF32 : k.patchesF64;
  return {
    out,
    run: () => {
      swap?.();
      product();
      scatter(po, pc, pg, 1);
    },
  };
}

/**
 * Max-pooling of x's windows: u at each window's first maximum (`scatter` false: maxPool2d is
 * u = x), or u added back at them into x's shape (the gradient).
 */
function poolStep(
  ctx: ImageContext,
  node: Node,
  u: Tensor,
  x: Tensor,
  like: Like,
  scatter: boolean,
): Step | undefined {
  const { words } = poolWords(x.shape, {
    size: node.attrs.size as [number, number],
    stride: node.attrs.stride as [number, number],
  });
  const { out } = planned(like);
  const pg = geometryAt(ctx, words);
  const [px, pu, po] = [x, u, out].map((t) => ctx.at(t.data));
  if (po < 0) return undefined;
  const kernel = like.dtype === "float32" ? ctx.k.poolF32 : ctx.k.poolF64;
  const flag = scatter ? 1 : 0;
  return { out, run: () => kernel(px, pu, po, pg, flag) };
}
