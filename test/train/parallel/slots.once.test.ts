/** sumSlots: the slot-order sum, bitwise equal to a plain loop for any count and any slicing. */
import { describe, expect, it } from "vitest";
import { sumSlots } from "../../../src/train/parallel/slots.js";

describe("sumSlots", () => {
  it.each([1, 2, 3, 4, 5, 6, 7, 8, 9, 12])(
    "%i slots: equals ((g0 + g1) + ...) * scale",
    (count) => {
      const stride = 37;
      const slots = Float32Array.from(
        { length: count * stride },
        (_, i) => Math.sin(i * 1.7) * 1e3,
      );
      const expected = new Float32Array(stride);
      for (let i = 0; i < stride; i++) {
        let s = 0;
        for (let k = 0; k < count; k++) s += slots[k * stride + i];
        expected[i] = s * 0.03125;
      }
      const whole = new Float32Array(stride);
      sumSlots(slots, count, stride, 0, stride, 0.03125, whole);
      expect([...whole]).toEqual([...expected]);
      // Two slices (as two threads would take them) give the same bits.
      const split = new Float32Array(stride);
      sumSlots(slots, count, stride, 0, 11, 0.03125, split.subarray(0, 11));
      sumSlots(slots, count, stride, 11, stride, 0.03125, split.subarray(11));
      expect(Buffer.from(split.buffer).equals(Buffer.from(whole.buffer))).toBe(true);
    },
  );
});
