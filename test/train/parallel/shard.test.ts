/** Micro-shard helpers: the image-shift augmentation is exact and thread-independent. */
import { describe, expect, it } from "vitest";
import { shiftFor, shiftImage, type ShiftAugment } from "../../../src/train/parallel/augment.js";

describe("shift augmentation", () => {
  const image = Float32Array.from({ length: 12 }, (_, i) => i + 1); // 4 wide, 3 high
  const size = { width: 4, height: 3 };

  it("equals the per-pixel definition for every shift, read from any offset", () => {
    const [width, height] = [5, 4];
    const data = Float64Array.from({ length: 3 * width * height }, (_, i) => i + 0.5);
    for (let dx = -6; dx <= 6; dx++) {
      for (let dy = -5; dy <= 5; dy++) {
        const out = new Float64Array(width * height + 3).fill(-1);
        shiftImage(data, width * height, out, 3, { width, height }, dx, dy);
        const want: number[] = [-1, -1, -1];
        for (let y = 0; y < height; y++) {
          for (let x = 0; x < width; x++) {
            const [sx, sy] = [x - dx, y - dy];
            const inside = sx >= 0 && sx < width && sy >= 0 && sy < height;
            want.push(inside ? data[width * height + sy * width + sx] : 0);
          }
        }
        expect([...out], `shift (${dx}, ${dy})`).toEqual(want);
      }
    }
  });

  it("moves pixels by (dx, dy) and fills uncovered pixels with zeros", () => {
    const out = new Float32Array(12);
    shiftImage(image, 0, out, 0, size, 1, -1);
    // Row y of the output is row y+1 of the input, moved right by one.
    expect([...out]).toEqual([0, 5, 6, 7, 0, 9, 10, 11, 0, 0, 0, 0]);
    shiftImage(image, 0, out, 0, size, 0, 0);
    expect([...out]).toEqual([...image]);
  });

  it("writes at the given offset only", () => {
    const out = new Float32Array(24).fill(-1);
    shiftImage(image, 0, out, 12, size, -2, 0);
    expect([...out.subarray(0, 12)]).toEqual(new Array(12).fill(-1));
    expect([...out.subarray(12, 16)]).toEqual([3, 4, 0, 0]);
  });

  it("draws every shift in range, depends only on (seed, step, row)", () => {
    const augment: ShiftAugment = { width: 28, height: 28, maxShift: 2, seed: 7 };
    const seen = new Set<string>();
    for (let row = 0; row < 2000; row++) {
      const [dx, dy] = shiftFor(augment, 3, row);
      expect(Math.abs(dx)).toBeLessThanOrEqual(2);
      expect(Math.abs(dy)).toBeLessThanOrEqual(2);
      seen.add(`${dx},${dy}`);
      expect(shiftFor(augment, 3, row)).toEqual([dx, dy]);
    }
    expect(seen.size).toBe(25);
    const differs = [0, 1, 2, 3, 4, 5, 6, 7].some(
      (row) => shiftFor(augment, 3, row).join() !== shiftFor(augment, 4, row).join(),
    );
    expect(differs).toBe(true);
  });
});
