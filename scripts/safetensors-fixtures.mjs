// Writes the adjoint side of the safetensors fixture pair (test/fixtures/safetensors/): the file
// adjoint writes for the record below, with the public saveParams. Run by
// scripts/safetensors-fixtures.py (which then reads it with Python's safetensors); needs
// `npm run build` first. The record is also built by test/train/safetensors-python.test.ts.
import { join } from "node:path";
import { saveParams } from "../dist/src/train/serialize.js";

/** The fixture tensors: exactly representable formulas, so both languages compute the same. */
export function fixtureRecord() {
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

if (import.meta.url === `file://${process.argv[1]}`) {
  const out = process.argv[2] ?? join("test", "fixtures", "safetensors", "adjoint.safetensors");
  saveParams(out, fixtureRecord());
  console.log(`wrote ${out}`);
}
