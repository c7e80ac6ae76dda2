/**
 * The reference kernels of the network ops: cross-entropy, slices, convolution, max-pooling and
 * layer normalization.
 */
import { aroundAxis } from "./js-walk.js";
import type { ConvGeometry, PoolGeometry } from "../backend.js";
import { fmt, sameShape } from "../shape.js";
import { allocate, resultDType, Tensor } from "../tensor.js";

// NOTE: messages without the kernel's name: the Evaluator prefixes the op and its inputs.
function checkCrossEntropy(logits: Tensor, targets: Tensor, axis: number): void {
  if (!sameShape(logits.shape, targets.shape)) {
    throw new Error(
      `logits and targets shapes differ: ${fmt(logits.shape)} vs ${fmt(targets.shape)}`,
    );
  }
  if (!Number.isInteger(axis) || axis < 0 || axis >= logits.rank) {
    throw new RangeError(`axis ${axis} out of range for shape ${fmt(logits.shape)}`);
  }
}

// NOTE: the two cross-entropy kernels walk the rows (every index but `axis`) in row-major order and
// each row in increasing index: max, then sum(exp(x - max)) so logits of ±1e4 stay finite. The
// loss is accumulated in float64 (a JS number) and rounded to the output dtype once.

/** Calls `row(first, end, stride, lse)` for each row along `axis` (first, first + stride, ...). */
function eachRow(
  logits: Tensor,
  axis: number,
  row: (first: number, end: number, stride: number, lse: number) => void,
): void {
  const [outer, n, inner] = aroundAxis(logits.shape, axis);
  const x = logits.data;
  for (let b = 0; b < outer; b++) {
    for (let j = 0; j < inner; j++) {
      const first = b * n * inner + j;
      const end = first + n * inner;
      let m = -Infinity;
      for (let p = first; p < end; p += inner) {
        const v = x[p];
        if (v > m || v !== v) m = v;
      }
      let s = 0;
      for (let p = first; p < end; p += inner) s += Math.exp(x[p] - m);
      row(first, end, inner, m + Math.log(s));
    }
  }
}

/** -sum(targets * logSoftmax(logits)) over all elements, softmax along `axis`; a 0-d tensor. */
export function softmaxCrossEntropy(logits: Tensor, targets: Tensor, axis: number): Tensor {
  checkCrossEntropy(logits, targets, axis);
  const [outer, n, inner] = aroundAxis(logits.shape, axis);
  if (n === 0 && outer * inner > 0) throw new Error("softmaxCrossEntropy of an empty axis");
  const [x, t] = [logits.data, targets.data];
  let total = 0;
  eachRow(logits, axis, (first, end, stride, lse) => {
    let row = 0;
    for (let p = first; p < end; p += stride) row += t[p] * (x[p] - lse);
    total -= row;
  });
  const out = allocate([], resultDType(logits.dtype, targets.dtype));
  out.data[0] = total;
  return out;
}

/** softmax(logits) * sum(targets) - targets along `axis`: the logits' cross-entropy gradient. */
export function softmaxCrossEntropyGrad(logits: Tensor, targets: Tensor, axis: number): Tensor {
  checkCrossEntropy(logits, targets, axis);
  const out = allocate(logits.shape, resultDType(logits.dtype, targets.dtype));
  const [x, t, o] = [logits.data, targets.data, out.data];
  eachRow(logits, axis, (first, end, stride, lse) => {
    let rowSum = 0;
    for (let p = first; p < end; p += stride) rowSum += t[p];
    for (let p = first; p < end; p += stride) o[p] = Math.exp(x[p] - lse) * rowSum - t[p];
  });
  return out;
}

/** The reference backend. */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const [outer, size, inner] = aroundAxis(x.shape, axis);
  const shape = [...x.shape];
  shape[axis] = end - start;
  const out = allocate(shape, x.dtype, false, false);
  const block = (end - start) * inner;
  for (let o = 0; o < outer; o++) {
    const from = (o * size + start) * inner;
    out.data.set(x.data.subarray(from, from + block), o * block);
  }
  return out;
}

export function unslice(g: Tensor, shape: readonly number[], axis: number, start: number): Tensor {
  const [outer, size, inner] = aroundAxis(shape, axis);
  const out = allocate(shape, g.dtype);
  const block = g.shape[axis] * inner;
  for (let o = 0; o < outer; o++) {
    out.data.set(g.data.subarray(o * block, (o + 1) * block), (o * size + start) * inner);
  }
  return out;
}

export function concat(xs: readonly Tensor[], axis: number): Tensor {
  const shape = [...xs[0].shape];
  shape[axis] = xs.reduce((total, x) => total + x.shape[axis], 0);
  const out = allocate(shape, resultDType(...xs.map((x) => x.dtype)), false, false);
  const [outer, size, inner] = aroundAxis(shape, axis);
  let before = 0;
  for (const x of xs) {
    const block = x.shape[axis] * inner;
    for (let o = 0; o < outer; o++) {
      out.data.set(x.data.subarray(o * block, (o + 1) * block), (o * size + before) * inner);
    }
    before += x.shape[axis];
  }
  return out;
}

/**
 * The one loop of the three convolution kernels: for every output position and kernel tap that
 * lands inside the (unpadded) image, `visit(xIndex, wIndex, yIndex)` with flat indices.
 */
function convTaps(
  [n, c, h, w]: readonly number[],
  [f, , kh, kw]: readonly number[],
  [oh, ow]: readonly number[],
  { stride, padding }: ConvGeometry,
  visit: (xi: number, wi: number, yi: number) => void,
): void {
  for (let b = 0; b < n; b++) {
    for (let o = 0; o < f; o++) {
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++) {
          const yi = ((b * f + o) * oh + i) * ow + j;
          for (let ch = 0; ch < c; ch++) {
            for (let p = 0; p < kh; p++) {
              const row = i * stride[0] - padding[0] + p;
              if (row < 0 || row >= h) continue;
              for (let q = 0; q < kw; q++) {
                const col = j * stride[1] - padding[1] + q;
                if (col < 0 || col >= w) continue;
                visit(((b * c + ch) * h + row) * w + col, ((o * c + ch) * kh + p) * kw + q, yi);
              }
            }
          }
        }
      }
    }
  }
}

/** The output's spatial size [H', W'] of a convolution of x [N,C,H,W] by w [F,C,kH,kW]. */
export function convOut(
  xShape: readonly number[],
  wShape: readonly number[],
  g: ConvGeometry,
): [number, number] {
  const out = (axis: 0 | 1) =>
    Math.floor((xShape[axis + 2] + 2 * g.padding[axis] - wShape[axis + 2]) / g.stride[axis]) + 1;
  return [out(0), out(1)];
}

export function conv2d(x: Tensor, w: Tensor, geometry: ConvGeometry): Tensor {
  const [oh, ow] = convOut(x.shape, w.shape, geometry);
  const out = allocate([x.shape[0], w.shape[0], oh, ow], resultDType(x.dtype, w.dtype));
  const [xd, wd, yd] = [x.data, w.data, out.data];
  convTaps(x.shape, w.shape, [oh, ow], geometry, (xi, wi, yi) => (yd[yi] += xd[xi] * wd[wi]));
  return out;
}

export function conv2dInputGrad(
  g: Tensor,
  w: Tensor,
  xShape: readonly number[],
  geometry: ConvGeometry,
): Tensor {
  const out = allocate(xShape, resultDType(g.dtype, w.dtype));
  const [gd, wd, dx] = [g.data, w.data, out.data];
  convTaps(
    xShape,
    w.shape,
    g.shape.slice(2),
    geometry,
    (xi, wi, yi) => (dx[xi] += gd[yi] * wd[wi]),
  );
  return out;
}

export function conv2dFilterGrad(
  x: Tensor,
  g: Tensor,
  wShape: readonly number[],
  geometry: ConvGeometry,
): Tensor {
  const out = allocate(wShape, resultDType(x.dtype, g.dtype));
  const [xd, gd, dw] = [x.data, g.data, out.data];
  convTaps(
    x.shape,
    wShape,
    g.shape.slice(2),
    geometry,
    (xi, wi, yi) => (dw[wi] += gd[yi] * xd[xi]),
  );
  return out;
}

/** The output's spatial size [H', W'] of max-pooling x [N,C,H,W] (windows inside the image). */
export function poolOut(
  xShape: readonly number[],
  { size, stride }: PoolGeometry,
): [number, number] {
  const out = (axis: 0 | 1) => Math.floor((xShape[axis + 2] - size[axis]) / stride[axis]) + 1;
  return [out(0), out(1)];
}

/** The flat index in x [N,C,H,W] of each pooling window's first maximum (a NaN's first). */
function poolArgmax(x: Tensor, geometry: PoolGeometry): { at: Int32Array; shape: number[] } {
  const { size, stride } = geometry;
  const [n, c, h, w] = x.shape;
  const [oh, ow] = poolOut(x.shape, geometry);
  const at = new Int32Array(n * c * oh * ow);
  const d = x.data;
  let k = 0;
  if (size[0] === 2 && size[1] === 2 && stride[0] === 2 && stride[1] === 2) {
    // The common 2x2 window at stride 2, unrolled: the same choice in the same order.
    for (let plane = 0; plane < n * c; plane++) {
      for (let i = 0; i < oh; i++) {
        const top = (plane * h + 2 * i) * w;
        for (let j = 0; j < ow; j++) {
          const first = top + 2 * j;
          let best = first;
          let v = d[first];
          for (let t = 1; t < 4; t++) {
            const index = first + (t & 1) + (t >> 1) * w;
            const u = d[index];
            if (u > v || (u !== u && v === v)) {
              best = index;
              v = u;
            }
          }
          at[k++] = best;
        }
      }
    }
    return { at, shape: [n, c, oh, ow] };
  }
  for (let plane = 0; plane < n * c; plane++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        let best = (plane * h + i * stride[0]) * w + j * stride[1];
        for (let p = 0; p < size[0]; p++) {
          for (let q = 0; q < size[1]; q++) {
            const index = (plane * h + i * stride[0] + p) * w + j * stride[1] + q;
            if (d[index] > d[best] || (d[index] !== d[index] && d[best] === d[best])) best = index;
          }
        }
        at[k++] = best;
      }
    }
  }
  return { at, shape: [n, c, oh, ow] };
}

export function maxPoolSelect(u: Tensor, x: Tensor, geometry: PoolGeometry): Tensor {
  const { at, shape } = poolArgmax(x, geometry);
  const out = allocate(shape, u.dtype, false, false);
  for (let k = 0; k < at.length; k++) out.data[k] = u.data[at[k]];
  return out;
}

export function maxPoolGrad(g: Tensor, x: Tensor, geometry: PoolGeometry): Tensor {
  const { at } = poolArgmax(x, geometry);
  const out = allocate(x.shape, resultDType(g.dtype, x.dtype));
  for (let k = 0; k < at.length; k++) out.data[at[k]] += g.data[k];
  return out;
}

// NOTE: layer normalization one row at a time: the row's statistics summed in double precision
// (JS numbers), each output rounded once to its dtype; with `g`, the adjoint in the same pass.
// Measured on the course's transformer: the composite's reductions and broadcast arithmetic took
// a third of a training step.
export function normalizeRows(x: Tensor, g: Tensor | undefined, size: number, eps: number): Tensor {
  const out = allocate(x.shape, g ? resultDType(x.dtype, g.dtype) : x.dtype, false, false);
  const [d, o, gd] = [x.data, out.data, g?.data];
  for (let start = 0; start < d.length; start += size) {
    const end = start + size;
    let total = 0;
    for (let i = start; i < end; i++) total += d[i];
    const mean = total / size;
    let squares = 0;
    for (let i = start; i < end; i++) squares += (d[i] - mean) * (d[i] - mean);
    const r = 1 / Math.sqrt(squares / size + eps);
    if (gd === undefined) {
      for (let i = start; i < end; i++) o[i] = (d[i] - mean) * r;
      continue;
    }
    let gSum = 0;
    let gySum = 0;
    for (let i = start; i < end; i++) {
      gSum += gd[i];
      gySum += gd[i] * (d[i] - mean) * r;
    }
    const [gMean, gyMean] = [gSum / size, gySum / size];
    for (let i = start; i < end; i++) o[i] = r * (gd[i] - gMean - (d[i] - mean) * r * gyMean);
  }
  return out;
}
