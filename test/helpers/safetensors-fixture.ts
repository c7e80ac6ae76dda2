/**
 * The record of the safetensors fixture pair (test/fixtures/safetensors/): the tensors of
 * scripts/safetensors-fixtures.py, built with the same exactly representable formulas so both
 * languages compute the same values. Used by test/train/safetensors-python.once.test.ts and, from
 * dist/, by scripts/safetensors-fixtures.mjs.
 */
import type { ParamsRecord } from "../../src/train/serialize.js";

/** The fixture tensors W1 (3x4 f32), b1 (4 f32) and W2 (4x2 f64) as an adjoint parameter record. */
export function fixtureRecord(): ParamsRecord {
  const W1 = Float32Array.from({ length: 12 }, (_, i) => i * 0.25 - 1.5);
  const b1 = Float32Array.from([0.5, -0.25, 0.125, 1 / 1024]);
  const W2 = Float64Array.from({ length: 8 }, (_, i) => ((i % 4) - Math.floor(i / 4)) / 3);
  return {
    format: "adjoint-params",
    version: 2,
    model: { kind: "mlp", sizes: [3, 4, 2] },
    params: [
      { name: "W1", shape: [3, 4], dtype: "float32", data: W1 },
      { name: "b1", shape: [4], dtype: "float32", data: b1 },
      { name: "W2", shape: [4, 2], dtype: "float64", data: W2 },
    ],
  };
}
