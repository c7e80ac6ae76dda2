/**
 * Sums gradient slots in slot order: out[i] = scale * (((g0[i] + g1[i]) + g2[i]) + ...), in
 * float64, for elements [start, end). The order per element never depends on how the range is
 * split between threads, so any slicing gives bitwise the same result.
 */
import type { TypedArray } from "../../tensor/tensor.js";

/**
 * `slots` holds `count` vectors of `stride` elements back to back; `out[i - start]` receives the
 * scaled sum of element i. Up to 8 slots are summed in one pass with the partial sum in a register
 * (much faster under V8 than slot-by-slot passes over an accumulator array: no store and reload
 * of the partial sum per slot).
 */
export function sumSlots(
  slots: TypedArray,
  count: number,
  stride: number,
  start: number,
  end: number,
  scale: number,
  out: TypedArray,
): void {
  const g = slots;
  const [o1, o2, o3, o4, o5, o6, o7] = [1, 2, 3, 4, 5, 6, 7].map((k) => k * stride);
  switch (count) {
    case 1:
      for (let i = start; i < end; i++) out[i - start] = g[i] * scale;
      return;
    case 2:
      for (let i = start; i < end; i++) out[i - start] = (g[i] + g[o1 + i]) * scale;
      return;
    case 3:
      for (let i = start; i < end; i++) out[i - start] = (g[i] + g[o1 + i] + g[o2 + i]) * scale;
      return;
    case 4:
      for (let i = start; i < end; i++) {
        out[i - start] = (g[i] + g[o1 + i] + g[o2 + i] + g[o3 + i]) * scale;
      }
      return;
    case 5:
      for (let i = start; i < end; i++) {
        out[i - start] = (g[i] + g[o1 + i] + g[o2 + i] + g[o3 + i] + g[o4 + i]) * scale;
      }
      return;
    case 6:
      for (let i = start; i < end; i++) {
        out[i - start] = (g[i] + g[o1 + i] + g[o2 + i] + g[o3 + i] + g[o4 + i] + g[o5 + i]) * scale;
      }
      return;
    case 7:
      for (let i = start; i < end; i++) {
        const s = g[i] + g[o1 + i] + g[o2 + i] + g[o3 + i] + g[o4 + i] + g[o5 + i] + g[o6 + i];
        out[i - start] = s * scale;
      }
      return;
    case 8:
      for (let i = start; i < end; i++) {
        const s = g[i] + g[o1 + i] + g[o2 + i] + g[o3 + i] + g[o4 + i] + g[o5 + i] + g[o6 + i];
        out[i - start] = (s + g[o7 + i]) * scale;
      }
      return;
    default:
      for (let i = start; i < end; i++) {
        let s = g[i];
        for (let k = 1; k < count; k++) s += g[k * stride + i];
        out[i - start] = s * scale;
      }
  }
}
