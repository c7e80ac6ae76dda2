/**
 * The trainer's update kernels (AssemblyScript, compiled to build/train.wasm over an imported
 * shared memory that holds the trainer's parameters, optimizer state and gradient slots, mapped by
 * every thread): the index-order sum of the micro-shards' gradient slots fused with the optimizer
 * update, for elements [start, end) of the flat parameter vector.
 *
 * Bitwise the same as the JS reference (src/train/parallel/slots.ts and optimizer-kernels.ts): the
 * same IEEE operations in the same order in f64 (no fused multiply-add; sqrt and division are
 * exact), the reduced gradient rounded to the element type before the update reads it, and every
 * stored value rounded once. The host computes the per-step constants (learning rate, bias
 * corrections) as the JS path does and passes them in.
 */
import { UpdateRule } from "../src/backends/wasm-codes";

/** First free byte of the memory: the host places the trainer's arrays from here on. */
export function heapBase(): usize {
  return (__heap_base + 15) & ~(<usize>15);
}

/** Two elements of T at `at` as f64x2 (an f32 pair promoted exactly; Binaryen inlines it). */
function loadPair<T>(at: usize): v128 {
  if (sizeof<T>() == 4) return f64x2.promote_low_f32x4(v128.load64_zero(at));
  return v128.load(at);
}

/** Stores an f64x2 as two elements of T (rounded to f32 once, as a Float32Array store). */
function storePair<T>(at: usize, v: v128): void {
  if (sizeof<T>() == 4) v128.store64_lane(at, f32x4.demote_f64x2_zero(v), 0);
  else v128.store(at, v);
}

/**
 * Sums `count` slots of `stride` elements at `slots` in slot order, scales, rounds to T, then
 * applies rule `kind` reading params/state at `params`/`s0`/`s1` and writing `next`/`s0next`/
 * `s1next` (byte addresses). Two elements per step in f64x2 lanes (each lane the same IEEE
 * operations as the scalar reference), a scalar last element. Constants: c0 lr, c1 weight decay;
 * momentum: c2 mu, c3 nesterov (0/1); adam: c2 b1, c3 b2, c4 eps, c5 1-b1, c6 1-b2,
 * c7 lr/(1-b1^t), c8 1/(1-b2^t), c9 1-lr*wd.
 */
function reduceUpdate<T>(
  kind: i32,
  slots: usize,
  count: i32,
  stride: i32,
  start: i32,
  end: i32,
  scale: f64,
  params: usize,
  next: usize,
  s0: usize,
  s0next: usize,
  s1: usize,
  s1next: usize,
  c0: f64,
  c1: f64,
  c2: f64,
  c3: f64,
  c4: f64,
  c5: f64,
  c6: f64,
  c7: f64,
  c8: f64,
  c9: f64,
): void {
  if (<u32>kind > 2) unreachable();
  const size = <usize>sizeof<T>();
  const slotBytes = <usize>stride * size;
  const vLr = f64x2.splat(c0);
  const vWd = f64x2.splat(c1);
  const v2 = f64x2.splat(c2);
  const v3 = f64x2.splat(c3);
  const v4 = f64x2.splat(c4);
  const v5 = f64x2.splat(c5);
  const v6 = f64x2.splat(c6);
  const v7 = f64x2.splat(c7);
  const v8 = f64x2.splat(c8);
  const v9 = f64x2.splat(c9);
  const vScale = f64x2.splat(scale);
  const nesterov = c3 != 0;
  let i = start;
  for (; i + 2 <= end; i += 2) {
    const o = <usize>i * size;
    let s = loadPair<T>(slots + o);
    for (let k = 1; k < count; k++) s = f64x2.add(s, loadPair<T>(slots + <usize>k * slotBytes + o));
    // The reduced gradient, rounded to T as the JS reference's scratch array stores it.
    const g =
      sizeof<T>() == 4
        ? f64x2.promote_low_f32x4(f32x4.demote_f64x2_zero(f64x2.mul(s, vScale)))
        : f64x2.mul(s, vScale);
    const p = loadPair<T>(params + o);
    if (kind == UpdateRule.sgd) {
      const d = f64x2.add(g, f64x2.mul(vWd, p));
      storePair<T>(next + o, f64x2.sub(p, f64x2.mul(vLr, d)));
    } else if (kind == UpdateRule.momentum) {
      const d = f64x2.add(g, f64x2.mul(vWd, p));
      const b = f64x2.add(f64x2.mul(v2, loadPair<T>(s0 + o)), d);
      storePair<T>(s0next + o, b);
      const step = nesterov ? f64x2.add(d, f64x2.mul(v2, b)) : b;
      storePair<T>(next + o, f64x2.sub(p, f64x2.mul(vLr, step)));
    } else {
      const m = f64x2.add(f64x2.mul(v2, loadPair<T>(s0 + o)), f64x2.mul(v5, g));
      const v = f64x2.add(f64x2.mul(v3, loadPair<T>(s1 + o)), f64x2.mul(v6, f64x2.mul(g, g)));
      storePair<T>(s0next + o, m);
      storePair<T>(s1next + o, v);
      const denom = f64x2.add(f64x2.sqrt(f64x2.mul(v, v8)), v4);
      storePair<T>(next + o, f64x2.sub(f64x2.mul(p, v9), f64x2.div(f64x2.mul(v7, m), denom)));
    }
  }
  for (; i < end; i++) {
    const o = <usize>i * size;
    let s = <f64>load<T>(slots + o);
    for (let k = 1; k < count; k++) s += <f64>load<T>(slots + <usize>k * slotBytes + o);
    const g = <f64>(<T>(s * scale));
    const p = <f64>load<T>(params + o);
    if (kind == UpdateRule.sgd) {
      const d = g + c1 * p;
      store<T>(next + o, <T>(p - c0 * d));
    } else if (kind == UpdateRule.momentum) {
      const d = g + c1 * p;
      const b = c2 * <f64>load<T>(s0 + o) + d;
      store<T>(s0next + o, <T>b);
      store<T>(next + o, <T>(p - c0 * (nesterov ? d + c2 * b : b)));
    } else {
      const m = c2 * <f64>load<T>(s0 + o) + c5 * g;
      const v = c3 * <f64>load<T>(s1 + o) + c6 * (g * g);
      store<T>(s0next + o, <T>m);
      store<T>(s1next + o, <T>v);
      store<T>(next + o, <T>(p * c9 - (c7 * m) / (Math.sqrt(v * c8) + c4)));
    }
  }
}

/** {@link reduceUpdate} over arrays of f32 (`width` 4) or f64 (`width` 8). */
export function reduceUpdateOf(
  width: i32,
  kind: i32,
  slots: usize,
  count: i32,
  stride: i32,
  start: i32,
  end: i32,
  scale: f64,
  params: usize,
  next: usize,
  s0: usize,
  s0next: usize,
  s1: usize,
  s1next: usize,
  c0: f64,
  c1: f64,
  c2: f64,
  c3: f64,
  c4: f64,
  c5: f64,
  c6: f64,
  c7: f64,
  c8: f64,
  c9: f64,
): void {
  // prettier-ignore
  if (width == 4) reduceUpdate<f32>(kind, slots, count, stride, start, end, scale, params, next, s0, s0next, s1, s1next, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9);
  // prettier-ignore
  else reduceUpdate<f64>(kind, slots, count, stride, start, end, scale, params, next, s0, s0next, s1, s1next, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9);
}
