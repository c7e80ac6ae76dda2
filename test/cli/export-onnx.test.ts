/** `--export-onnx`: the trained model runs in onnxruntime and reproduces the accuracy the run printed. */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, expect, it } from "vitest";
import { main } from "../../src/cli/train.js";
import { loadSplit } from "../../src/train/config.js";

const tmp = mkdtempSync(join(tmpdir(), "adjoint-onnx-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

it.each([
  ["logreg", []],
  ["mlp", ["--hidden", "32"]],
] as const)(
  "digits %s: onnxruntime's test accuracy on raw pixels equals the run's",
  async (model, extra) => {
    const path = join(tmp, `${model}.onnx`);
    const out: string[] = [];
    const code = await main(
      ["--dataset", "digits", "--model", model, ...extra, "--epochs", "3", "--threads", "1"].concat(
        ["--export-onnx", path, "--json", "--seed", "4"],
      ),
      { out: (l) => out.push(l), err: () => {}, isTTY: false },
    );
    expect(code).toBe(0);
    const summary = JSON.parse(out[out.length - 1]) as { testAccuracy: number; sizes: number[] };
    // Unstandardized test images of the run's split: the model carries the standardization.
    const { test } = loadSplit("digits", "float32", 4, false);
    const session = await ort.InferenceSession.create(readFileSync(path));
    expect(session.inputNames).toEqual(["X"]);
    expect(session.outputNames).toEqual(["logits", "probabilities"]);
    const rows = test.X.shape[0];
    const result = await session.run({
      X: new ort.Tensor("float32", Float32Array.from(test.X.data), [rows, test.X.shape[1]]),
    });
    const probabilities = result.probabilities.data as Float32Array;
    const classes = summary.sizes[summary.sizes.length - 1];
    let correct = 0;
    for (let r = 0; r < rows; r++) {
      let best = 0;
      for (let k = 1; k < classes; k++) {
        if (probabilities[r * classes + k] > probabilities[r * classes + best]) best = k;
      }
      if (best === test.y[r]) correct++;
    }
    expect(correct / rows).toBeCloseTo(summary.testAccuracy, 10);
    expect(summary.testAccuracy).toBeGreaterThan(0.85);
    await session.release();
  },
);

it("refuses a file name that is not .onnx before training", async () => {
  const err: string[] = [];
  const code = await main(["--dataset", "digits", "--export-onnx", join(tmp, "m.bin")], {
    out: () => {},
    err: (l) => err.push(l),
    isTTY: false,
  });
  expect(code).toBe(2);
  expect(err.join("\n")).toContain("--export-onnx: expected a .onnx file name");
});
