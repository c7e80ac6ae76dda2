/** Random shifts of training images, chosen from (seed, step, row) alone: the same in every thread. */
import type { TypedArray } from "../../tensor/tensor.js";

/** Shift each training image by up to `maxShift` pixels, chosen from (seed, step, row) alone. */
export interface ShiftAugment {
  width: number;
  height: number;
  maxShift: number;
  seed: number;
}

/** A 32-bit hash of three integers (murmur3's finaliser over a mix): cheap and well spread. */
function hash3(a: number, b: number, c: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x632be5ab, 0xc2b2ae35) ^ c;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The (dx, dy) shift of `row` at optimizer step `step`: the same in every thread. */
export function shiftFor(augment: ShiftAugment, step: number, row: number): [number, number] {
  const span = 2 * augment.maxShift + 1;
  const h = hash3(augment.seed, step, row);
  return [(h % span) - augment.maxShift, (Math.floor(h / span) % span) - augment.maxShift];
}

/**
 * Writes the image at `data[from..]` shifted by (dx, dy) into `out[to..]`, zeros where the shift
 * uncovers pixels: per output row, the uncovered ends zeroed and the covered span copied.
 */
export function shiftImage(
  data: TypedArray,
  from: number,
  out: TypedArray,
  to: number,
  size: { width: number; height: number },
  dx: number,
  dy: number,
): void {
  const { width, height } = size;
  const x0 = Math.max(0, dx);
  const x1 = Math.min(width, width + dx);
  for (let y = 0; y < height; y++) {
    const o = to + y * width;
    const sy = y - dy;
    if (sy < 0 || sy >= height || x0 >= x1) {
      out.fill(0, o, o + width);
      continue;
    }
    const s = from + sy * width - dx;
    for (let x = 0; x < x0; x++) out[o + x] = 0;
    for (let x = x0; x < x1; x++) out[o + x] = data[s + x];
    for (let x = x1; x < width; x++) out[o + x] = 0;
  }
}
