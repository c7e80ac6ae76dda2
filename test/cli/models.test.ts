/**
 * The CLI's --model cnn and transformer: the same bits for 1 and 2 threads (and for a second run
 * in the same process), --save / --load / --export-onnx, bad input in one line with exit 2.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli, tempDirs } from "../helpers/cli.js";

const tempDir = tempDirs("adjoint-cli-models-");

describe("CLI: --model cnn and transformer", () => {
  const small = ["--dataset", "mnist", "--steps", "3", "--batch-size", "64", "--json"];
  const hashOf = (out: string[]) => JSON.parse(out[out.length - 1]).paramsHash as string;

  for (const [model, arch] of [
    ["cnn", "tutorial"],
    ["transformer", "course"],
  ] as const) {
    it(`${model} --arch ${arch}: 1 and 2 threads give the same bits; --save, --load and --export-onnx agree`, async () => {
      const dir = tempDir();
      const args = [...small, "--model", model, "--arch", arch];
      const one = await runCli([...args, "--threads", "1"]);
      const again = await runCli([...args, "--threads", "1"]);
      const save = join(dir, "m.safetensors");
      const onnx = join(dir, "m.onnx");
      const two = await runCli([...args, "--threads", "2", "--save", save, "--export-onnx", onnx]);
      expect(one.code, one.err.join("\n")).toBe(0);
      expect(two.code, two.err.join("\n")).toBe(0);
      expect(hashOf(two.out)).toBe(hashOf(one.out));
      expect(hashOf(again.out)).toBe(hashOf(one.out));
      const trained = JSON.parse(two.out[two.out.length - 1]);
      const loaded = await runCli([
        "--dataset",
        "mnist",
        "--model",
        model,
        "--arch",
        arch,
        "--load",
        save,
        "--epochs",
        "0",
        "--json",
      ]);
      expect(loaded.code, loaded.err.join("\n")).toBe(0);
      expect(JSON.parse(loaded.out[loaded.out.length - 1]).testAccuracy).toBe(trained.testAccuracy);
      expect(readFileSync(onnx).length).toBeGreaterThan(1000);
    });
  }

  it.each([
    [
      ["--model", "cnn", "--arch", "course"],
      /--arch course is not an architecture of --model cnn \(wide, tutorial\)/,
    ],
    [
      ["--model", "mlp", "--arch", "wide"],
      /--arch wide applies to --model cnn or transformer, not --model mlp/,
    ],
    [
      ["--model", "transformer", "--dataset", "digits"],
      /--model transformer reads 28x28 images; --dataset digits has 8x8/,
    ],
    [["--model", "cnn", "--hidden", "64"], /--hidden 64 applies to --model mlp, not --model cnn/],
  ])("refuses %j in one line, exit 2", async (args, message) => {
    const run = await runCli(args);
    expect(run.code).toBe(2);
    expect(run.err[0]).toMatch(message);
    expect(run.out).toEqual([]);
  });

  it("--load of another model's parameters names both models", async () => {
    const dir = tempDir();
    mkdirSync(dir, { recursive: true });
    const save = join(dir, "mlp.adj");
    const mlp = await runCli(["--dataset", "mnist", "--steps", "1", "--save", save]);
    expect(mlp.code, mlp.err.join("\n")).toBe(0);
    const run = await runCli([
      "--dataset",
      "mnist",
      "--model",
      "cnn",
      "--load",
      save,
      "--epochs",
      "0",
    ]);
    expect(run.code).toBe(2);
    expect(run.err.join("\n")).toMatch(/parameters are for --model mlp, this run builds cnn wide/);
  });
});
