/**
 * planFlops counts a training plan's products and convolutions at the step's shapes: checked
 * against the multiply-adds written out by hand for a logistic regression and an MLP.
 */
import { describe, expect, it } from "vitest";
import { buildTrainPlan, modelSpec } from "../../src/train/models.js";
import { planFlops, planRowBytes } from "../../src/train/step-cost.js";

describe("planFlops", () => {
  it("logreg 64-10, 50 rows: X W forward and X^T G for W (no gradient for X)", () => {
    const plan = buildTrainPlan(modelSpec("logreg", 64, [], 10));
    expect(planFlops(plan, [[64], [10]], 50, "float64")).toBe(2 * 2 * 50 * 64 * 10);
  });

  it("mlp 64-32-10, 50 rows: two products forward, two weight gradients, one hidden gradient", () => {
    const plan = buildTrainPlan(modelSpec("mlp", 64, [32], 10));
    const forward = 2 * 50 * (64 * 32 + 32 * 10);
    const backward = 2 * 50 * 64 * 32 + 2 * 50 * 32 * 10 + 2 * 50 * 32 * 10;
    expect(planFlops(plan, [[64], [10]], 50, "float32")).toBe(forward + backward);
    // Linear in the rows.
    expect(planFlops(plan, [[64], [10]], 100, "float32")).toBe(2 * (forward + backward));
  });
});

describe("planRowBytes", () => {
  it("counts every value a row adds: f64 twice f32; the cnn's conv layer alone sets a floor", () => {
    const mlp = buildTrainPlan(modelSpec("mlp", 64, [32], 10));
    const f32 = planRowBytes(mlp, [[64], [10]], "float32")!;
    expect(planRowBytes(mlp, [[64], [10]], "float64")).toBe(2 * f32);
    // At least the hidden layer's product, bias add, relu and mask, their gradients, the logits.
    expect(f32).toBeGreaterThanOrEqual(4 * (6 * 32 + 10));
    const cnn = buildTrainPlan(modelSpec("cnn", 784, [], 10, "tutorial"));
    const conv1 = 8 * 24 * 24 * 4; // one 8x24x24 float32 map per row
    const bytes = planRowBytes(cnn, [[784], [10]], "float32")!;
    // Its output, bias add, relu, mask and their three gradients, each one map.
    expect(bytes).toBeGreaterThanOrEqual(7 * conv1);
    expect(bytes).toBeLessThan(40 * conv1);
  });
});
