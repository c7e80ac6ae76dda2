/** The training loop on digits: learning, reproducibility, step limits, checkpoints and resume. */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Tensor } from "../../src/tensor/tensor.js";
import { loadDigits, randomSplit, standardize, type Dataset } from "../../src/train/data.js";
import { inProcessEngine } from "../../src/train/parallel/engine.js";
import { modelSpec } from "../../src/train/models.js";
import { loadParams, paramsHash, PARAMS_VERSION, saveParams } from "../../src/train/serialize.js";
import { accuracy } from "../../src/train/metrics.js";
import { train, type TrainerOptions } from "../../src/train/trainer.js";

const tmp = mkdtempSync(join(tmpdir(), "adjoint-trainer-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const split = standardize(randomSplit(loadDigits({ dtype: "float32" }), 0.2, 0));
const spec = modelSpec("logreg", 64, [], 10);
// 1437 training rows in batches of 32: 44 full batches and a short one of 29.
const BATCHES = 45;

function options(overrides: Partial<TrainerOptions> = {}): TrainerOptions {
  return {
    spec,
    split,
    dtype: "float32",
    batchSize: 32,
    epochs: 1,
    optimizer: { kind: "adam", lr: 0.01, weightDecay: 0.01 },
    seed: 0,
    shardCount: 4,
    createEngine: inProcessEngine,
    fingerprint: { batchSize: 32, seed: 0 },
    ...overrides,
  };
}

/** Stops once `n` steps have run in this call (counted through onStep). */
function stopAfter(n: number): Pick<TrainerOptions, "onStep" | "shouldStop"> {
  let steps = 0;
  return { onStep: () => void steps++, shouldStop: () => steps >= n };
}

/** Accuracy by a plain float64 loop: argmax of X W + b. */
function plainAccuracy(params: readonly Tensor[], data: Dataset): number {
  const [W, b] = params;
  const [n, features] = data.X.shape;
  const classes = b.size;
  let correct = 0;
  for (let r = 0; r < n; r++) {
    let best = -1;
    let bestValue = -Infinity;
    for (let c = 0; c < classes; c++) {
      let z = b.data[c];
      for (let f = 0; f < features; f++)
        z += data.X.data[r * features + f] * W.data[f * classes + c];
      if (z > bestValue) {
        bestValue = z;
        best = c;
      }
    }
    if (best === data.y[r]) correct++;
  }
  return correct / n;
}

/** Every tensor (parameters and optimizer state) of a checkpoint file, by name. */
function tensorsOf(path: string): Record<string, number[]> {
  const record = loadParams(path);
  return Object.fromEntries(record.params.map((p) => [p.name, Array.from(p.data)]));
}

describe("train (in-process engine, digits logreg)", () => {
  it("lowers the loss epoch by epoch and reports consistent figures", async () => {
    let stepCalls = 0;
    const epochs: number[] = [];
    const result = await train(
      options({
        epochs: 3,
        onStep: (info) => {
          stepCalls++;
          expect(info.batchesPerEpoch).toBe(BATCHES);
          expect(Number.isFinite(info.loss)).toBe(true);
        },
        onEpoch: (record) => epochs.push(record.epoch),
      }),
    );
    expect(result.steps).toBe(3 * BATCHES);
    expect(stepCalls).toBe(3 * BATCHES);
    expect(epochs).toEqual([1, 2, 3]);
    expect(result.epochsCompleted).toBe(3);
    expect(result.samples).toBe(3 * 1437);
    expect(result.stopped).toBe(false);
    expect(result.threads).toBe(1);
    const losses = result.history.map((h) => h.trainLoss);
    expect(losses[1]).toBeLessThan(losses[0]);
    expect(losses[2]).toBeLessThan(losses[1]);
    // Ten classes: chance loss is ln 10 = 2.30.
    expect(losses[2]).toBeLessThan(0.5);
    expect(result.trainLoss).toBe(losses[2]);
    expect(result.testAccuracy).toBe(result.history[2].testAccuracy);
    expect(result.testAccuracy).toBeGreaterThan(0.85);
    expect(result.params.map((p) => [p.dtype, p.shape])).toEqual([
      ["float32", [64, 10]],
      ["float32", [10]],
    ]);

    // accuracy() agrees with a plain argmax loop, whatever the chunk size.
    const wide = result.params.map((p) => p.clone({ dtype: "float64" }));
    const expected = plainAccuracy(wide, split.test);
    expect(accuracy(spec, wide, split.test)).toBe(expected);
    expect(accuracy(spec, wide, split.test, 7)).toBe(expected);
    expect(accuracy(spec, wide, split.train, 500)).toBe(plainAccuracy(wide, split.train));
    expect(accuracy(spec, result.params, split.test, 13)).toBe(result.testAccuracy);
  });

  it("same seed gives identical parameters; another seed does not", async () => {
    const a = await train(options());
    const b = await train(options());
    const c = await train(options({ seed: 1 }));
    expect(paramsHash(a.params)).toBe(paramsHash(b.params));
    expect(a.history).toEqual(b.history);
    expect(paramsHash(c.params)).not.toBe(paramsHash(a.params));
  });

  it("maxSteps stops after exactly that many optimizer steps", async () => {
    let calls = 0;
    const r = await train(options({ epochs: 3, maxSteps: 7, onStep: () => void calls++ }));
    expect(r.steps).toBe(7);
    expect(calls).toBe(7);
    expect(r.samples).toBe(7 * 32);
    expect(r.stopped).toBe(true);
    expect(r.epochsCompleted).toBe(0);
    expect(r.history).toEqual([]);
    expect(r.testAccuracy).toBe(accuracy(spec, r.params, split.test));

    const boundary = await train(options({ epochs: 3, maxSteps: BATCHES }));
    expect(boundary.steps).toBe(BATCHES);
    expect(boundary.epochsCompleted).toBe(1);
    expect(boundary.history).toHaveLength(1);

    const beyond = await train(options({ epochs: 1, maxSteps: 1000 }));
    expect(beyond.steps).toBe(BATCHES);
    expect(beyond.stopped).toBe(false);
  });

  describe("checkpoints and resume", () => {
    const full = join(tmp, "full.ckpt");
    let reference: Awaited<ReturnType<typeof train>>;

    it("an uninterrupted run writes a checkpoint every epoch", async () => {
      const epochsSeen: number[] = [];
      reference = await train(
        options({
          epochs: 3,
          checkpointPath: full,
          onEpoch: () =>
            epochsSeen.push((loadParams(full).extra!.position as { epoch: number }).epoch),
        }),
      );
      expect(epochsSeen).toEqual([1, 2, 3]);
      const record = loadParams(full);
      expect(record.model).toEqual({ kind: "logreg", sizes: [64, 10] });
      // Parameters plus Adam's two moments per parameter.
      expect(record.params.map((p) => p.name)).toEqual([
        "W1",
        "b1",
        "state0.W1",
        "state0.b1",
        "state1.W1",
        "state1.b1",
      ]);
      expect(paramsHash(record.params.slice(0, 2))).toBe(paramsHash(reference.params));
    });

    it("resuming a run stopped mid-epoch reaches bitwise the uninterrupted result", async () => {
      const path = join(tmp, "mid.ckpt");
      // Stop after 5 steps of the second epoch.
      const stopped = await train(
        options({ epochs: 3, checkpointPath: path, ...stopAfter(BATCHES + 5) }),
      );
      expect(stopped.stopped).toBe(true);
      expect(stopped.steps).toBe(BATCHES + 5);
      expect(stopped.epochsCompleted).toBe(1);
      const position = loadParams(path).extra!.position as Record<string, unknown>;
      expect(position).toMatchObject({ epoch: 1, batch: 5, t: BATCHES + 5 });

      const resumed = await train(options({ epochs: 3, checkpointPath: path, resume: true }));
      expect(resumed.steps).toBe(3 * BATCHES - (BATCHES + 5));
      expect(resumed.stopped).toBe(false);
      expect(resumed.epochsCompleted).toBe(3);
      expect(paramsHash(resumed.params)).toBe(paramsHash(reference.params));
      expect(resumed.history).toEqual(reference.history);
      expect(resumed.trainLoss).toBe(reference.trainLoss);
      // The optimizer state agrees too, so further epochs would as well.
      expect(tensorsOf(path)).toEqual(tensorsOf(full));
    });

    it("resuming a run stopped exactly at an epoch boundary reaches the same result", async () => {
      const path = join(tmp, "boundary.ckpt");
      const stopped = await train(
        options({ epochs: 3, checkpointPath: path, ...stopAfter(2 * BATCHES) }),
      );
      expect(stopped.steps).toBe(2 * BATCHES);
      expect(stopped.epochsCompleted).toBe(2);
      expect(loadParams(path).extra!.position).toMatchObject({ epoch: 2, batch: 0 });
      const resumed = await train(options({ epochs: 3, checkpointPath: path, resume: true }));
      expect(resumed.steps).toBe(BATCHES);
      expect(paramsHash(resumed.params)).toBe(paramsHash(reference.params));
      expect(resumed.history).toEqual(reference.history);
    });

    it("continues a finished shorter run to more epochs (and twice in a row)", async () => {
      const path = join(tmp, "short.ckpt");
      await train(options({ epochs: 1, checkpointPath: path }));
      await train(options({ epochs: 2, checkpointPath: path, resume: true }));
      const r = await train(options({ epochs: 3, checkpointPath: path, resume: true }));
      expect(r.steps).toBe(BATCHES);
      expect(paramsHash(r.params)).toBe(paramsHash(reference.params));
    });

    it("refuses a checkpoint written by another run configuration", async () => {
      const path = join(tmp, "mid.ckpt");
      await expect(
        train(
          options({
            epochs: 3,
            checkpointPath: path,
            resume: true,
            batchSize: 16,
            fingerprint: { batchSize: 16, seed: 0 },
          }),
        ),
      ).rejects.toThrow(
        "mid.ckpt: checkpoint was written by a run with other settings; batchSize: checkpoint 32, this run 16",
      );
    });

    it("refuses a plain parameter file as a checkpoint", async () => {
      const path = join(tmp, "plain.adj");
      saveParams(path, {
        format: "adjoint-params",
        version: PARAMS_VERSION,
        model: { ...spec },
        params: reference.params.map((t, i) => ({
          name: ["W1", "b1"][i],
          shape: [...t.shape],
          dtype: t.dtype,
          data: t.data,
        })),
      });
      await expect(
        train(options({ epochs: 3, checkpointPath: path, resume: true })),
      ).rejects.toThrow(/not a training checkpoint/);
    });

    it("writes checkpoints atomically: no temporary files are left behind", () => {
      const names = readdirSync(tmp).sort();
      expect(names).toEqual(["boundary.ckpt", "full.ckpt", "mid.ckpt", "plain.adj", "short.ckpt"]);
    });
  });
});
