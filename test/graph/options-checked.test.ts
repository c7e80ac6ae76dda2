/** Every options object is checked: unknown keys and bad values are errors naming the option. */
import { describe, expect, it } from "vitest";
import onnxProto from "onnx-proto";
import * as adj from "../../src/index.js";
import { useBackend } from "../../src/backends/select.js";

const x = adj.variable("x");
const y = adj.sum(adj.tanh(x));
const feeds = new Map([[x, adj.tensor([0.1, -0.4, 0.7])]]);

describe("checkGradients", () => {
  it.each([
    ["order 3", { order: 3 }, "order must be 1 or 2, got 3"],
    [
      "an unknown mode",
      { modes: ["bogus"] },
      'modes must be a non-empty array of "fwd" and "rev", got ["bogus"]',
    ],
    ["no modes", { modes: [] }, "modes must be a non-empty array"],
    ["a misspelt key", { tolerance: 1 }, 'unknown option "tolerance"'],
    ["eps 0", { eps: 0 }, "eps must be a positive finite number, got 0"],
    ["eps NaN", { eps: NaN }, "eps must be a positive finite number, got NaN"],
    ["atol -1", { atol: -1 }, "atol must be a non-negative finite number, got -1"],
  ])("refuses %s", (_what, options, message) => {
    expect(() => adj.checkGradients(y, feeds, [x], options as never)).toThrow(message);
  });
  it("says float32 feeds need float64 instead of blaming a correct rule", () => {
    const f32 = new Map([[x, adj.tensor([0.1, -0.4, 0.7], { dtype: "float32" })]]);
    expect(() => adj.checkGradients(y, f32, [x])).toThrow(
      'the feed for "x" is float32: finite differences need float64 feeds',
    );
  });
  it("names a wrt that is not fed (an intermediate, or a variable left out)", () => {
    const h = adj.tanh(x);
    expect(() => adj.checkGradients(adj.sum(h), feeds, [h])).toThrow(
      /wrt "tanh\(x\)" has no value in feeds/,
    );
  });
  it("takes feeds keyed by name, as the Evaluator does", () => {
    const report = adj.checkGradients(y, { x: adj.tensor([0.1, -0.4, 0.7]) }, [x]);
    expect(report.map((r) => r.mode).sort()).toEqual(["fwd", "rev"]);
    expect(() => adj.checkGradients(y, { z: adj.tensor([1]) }, [x])).toThrow(
      'checkGradients: no variable named "z" in this graph (it has "x")',
    );
  });
});

describe("jacobian, useBackend", () => {
  it("jacobian refuses an unknown mode or key", () => {
    const v = adj.variable("v", { shape: [2] });
    const out = adj.tanh(v);
    expect(() => adj.jacobian(out, v, { mode: "sideways" as never })).toThrow(
      'jacobian: mode must be "fwd" or "rev", got "sideways"',
    );
    expect(() => adj.jacobian(out, v, { modes: "fwd" } as never)).toThrow('unknown option "modes"');
  });
  it("useBackend refuses a name it does not know, or none", () => {
    expect(() => useBackend("bogus" as never)).toThrow(
      'useBackend: unknown backend "bogus" (expected "js", "wasm" or "wasm-plain")',
    );
    expect(() => (useBackend as (n?: string) => unknown)()).toThrow("unknown backend undefined");
  });
});

describe("exportOnnx", () => {
  const X = adj.variable("X", { shape: [null, 3], dtype: "float32" });
  const W = adj.variable("W", { shape: [3, 2], dtype: "float32" });
  const logits = adj.matmul(X, W);
  const w = adj.zeros([3, 2], "float32");
  const base = { inputs: [X], initializers: new Map([[W, w]]) };
  it.each([
    ["a misspelt key", { opsetVersion: 17 }, 'unknown option "opsetVersion"'],
    ["a repeated output name", { outputNames: ["a", "a"] }, 'output name "a" is given twice'],
    [
      "an output named like an input",
      { outputNames: ["X", "b"] },
      'output name "X" is already the name of an input',
    ],
    [
      "a float64 weight for a float32 variable",
      { initializers: new Map([[W, adj.zeros([3, 2], "float64")]]) },
      "exportOnnx: initializer W: fed dtype float64, declared float32",
    ],
    [
      "a weight of the wrong shape",
      { initializers: new Map([[W, adj.zeros([2, 3], "float32")]]) },
      "exportOnnx: initializer W: fed shape [2,3], declared [3,2]",
    ],
  ])("refuses %s", (_what, extra, message) => {
    expect(() =>
      adj.exportOnnx([logits, adj.relu(logits)], { ...base, ...extra } as never),
    ).toThrow(message);
  });
  it("names outputs by their node names where plain and unique, else output_k", () => {
    const named = adj.relu(logits);
    const bytes = adj.exportOnnx([logits, adj.mean(named), X], base);
    const model = onnxProto.onnx.ModelProto.decode(bytes);
    const names = model.graph!.output!.map((o) => o.name);
    // matmul(X,W) and mean(...) are not plain names; X is an input's name.
    expect(names).toEqual(["output_0", "output_1", "output_2"]);
    const y2 = adj.variable("y2", { shape: [null, 2], dtype: "float32" });
    const renamed = adj.exportOnnx([y2], { inputs: [y2] });
    expect(onnxProto.onnx.ModelProto.decode(renamed).graph!.output![0].name).toBe("output_0");
  });
});

describe("messages name the real value", () => {
  it("sum's axis NaN and a shape holding a string", () => {
    expect(() => adj.sum(x, { axis: NaN })).toThrow(
      "sum: axis must be an integer or an array of integers, got NaN",
    );
    expect(() => adj.tensor([1, 2, 3, 4], { shape: [2, "2"] as never })).toThrow(
      'tensor: invalid shape [2,"2"]: dimensions must be non-negative integers',
    );
  });
});
