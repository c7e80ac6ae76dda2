/**
 * ONNX export checked on a second engine: every op-table case, its gradient graph, random
 * graphs and the MLP's training graph run in onnxruntime-node and agree with the Evaluator
 * (float64 within 1e-10, float32 within 1e-5 relative).
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { packageRoot } from "../../src/package.js";
import * as ort from "onnxruntime-node";
import * as adj from "../../src/index.js";
import type { Node, Tensor } from "../../src/index.js";
import { exportOnnx, onnxExportableOps, ONNX_OPSETS } from "../../src/interop/onnx.js";
import { registeredOps } from "../../src/graph/op.js";
import { opCases } from "../helpers/op-cases.js";
import { randomGraph } from "../helpers/random-graph.js";
import { mulberry32, randomTensor } from "../helpers/gradcheck.js";

/** Runs an exported model in onnxruntime on `feeds` (by input name); the outputs in order. */
async function runOrt(
  model: Uint8Array,
  feeds: Record<string, Tensor>,
  outputNames: string[],
): Promise<{ data: Float64Array; dims: number[] }[]> {
  const session = await ort.InferenceSession.create(model);
  const inputs: Record<string, ort.Tensor> = {};
  for (const [name, t] of Object.entries(feeds)) {
    inputs[name] = new ort.Tensor(t.dtype === "float32" ? "float32" : "float64", t.data.slice(), [
      ...t.shape,
    ]);
  }
  const result = await session.run(inputs);
  await session.release();
  return outputNames.map((name) => {
    const value = result[name];
    return { data: Float64Array.from(value.data as Float64Array), dims: [...value.dims] };
  });
}

/**
 * |got - want| <= tol * max(1, |want|) elementwise (or, `normwise`, tol * max(1, max |want|): the
 * float32 rounding of a deep chain scales with the tensor's largest value, not each element's),
 * same shape; NaN where NaN.
 */
function expectClose(
  got: { data: Float64Array; dims: number[] },
  want: Tensor,
  tol: number,
  normwise = false,
) {
  expect(got.dims).toEqual([...want.shape]);
  const scale = normwise ? Array.from(want.data).reduce((m, w) => Math.max(m, Math.abs(w)), 1) : 1;
  let worst = 0;
  want.data.forEach((w, i) => {
    const g = got.data[i];
    if (Number.isNaN(w)) expect(g).toBeNaN();
    else if (!Number.isFinite(w)) expect(g).toBe(w);
    else worst = Math.max(worst, Math.abs(g - w) / Math.max(scale, Math.abs(w)));
  });
  expect(worst).toBeLessThanOrEqual(tol);
}

/** Exports `outputs` with `xs` as inputs, runs both engines on `values`, compares. */
async function agree(
  outputs: Node[],
  xs: Node[],
  values: Tensor[],
  tol: number,
  opset: number = ONNX_OPSETS.default,
  normwise = false,
) {
  const names = outputs.map((_, i) => `out${i}`);
  const model = exportOnnx(outputs, { inputs: xs, opset, outputNames: names });
  const feeds = new Map(xs.map((x, i) => [x, values[i]] as const));
  const want = new adj.Evaluator(outputs).run(feeds);
  const got = await runOrt(model, Object.fromEntries(xs.map((x, i) => [x.name, values[i]])), names);
  got.forEach((g, i) => expectClose(g, want[i], tol, normwise));
}

describe("every op-table case in onnxruntime equals the Evaluator", () => {
  for (const [dtype, tol, opset] of [
    ["float64", 1e-10, ONNX_OPSETS.default],
    ["float32", 1e-5, ONNX_OPSETS.default],
    ["float64", 1e-10, ONNX_OPSETS.max],
  ] as const) {
    // NOTE: onnxruntime 1.30's CPU provider has no float64 Conv or ConvTranspose
    // (NOT_IMPLEMENTED): convolution graphs are checked there in float32.
    const cases = opCases.filter((c) => dtype === "float32" || c.builder !== "conv2d");
    it.each(cases.map((c) => [c.name, c] as const))(
      `%s, ${dtype}, opset ${opset}, value and gradients`,
      async (_, c) => {
        const values = c.inputs.map((t) => t.clone({ dtype }));
        // The leading dim unknown where there is one, so the export must not bake it in.
        const xs = values.map((t, i) =>
          adj.variable(`x${i}`, {
            shape: t.shape.map((d, k) => (k === 0 && t.rank > 1 ? null : d)),
            dtype,
          }),
        );
        const y = c.build(...xs);
        const feeds = new Map(xs.map((x, i) => [x, values[i]] as const));
        const [yValue] = new adj.Evaluator([y]).run(feeds);
        const uValue = randomTensor(mulberry32(7), [...yValue.shape]).clone({ dtype });
        const u = adj.variable("u", { shape: [...yValue.shape], dtype });
        const grads = adj.gradients(adj.sum(adj.mul(u, y)), xs);
        await agree([y, ...grads], [...xs, u], [...values, uValue], tol, opset);
      },
    );
  }
});

describe.each(["float64", "float32"] as const)("random graphs and their gradients, %s", (dtype) => {
  it.each(Array.from({ length: 8 }, (_, i) => 500 + 31 * i))("seed %i", async (seed) => {
    const random = mulberry32(seed);
    const values = [randomTensor(random, [12, 8]), randomTensor(random, [8, 12])].map((t) =>
      t.clone({ dtype }),
    );
    const xs = [
      adj.variable("a", { shape: [12, 8], dtype }),
      adj.variable("b", { shape: [8, 12], dtype }),
    ];
    const y = randomGraph(seed)(...xs);
    // Normwise: these chains reach 1e17, so float32 rounding is relative to the largest value.
    const tol = dtype === "float64" ? 1e-10 : 1e-5;
    const outputs = [y, ...adj.gradients(adj.sum(y), xs)];
    await agree(outputs, xs, values, tol, ONNX_OPSETS.default, true);
  });
});

it("the op table covers every op the exporter maps, and the exporter every built-in op", () => {
  const mapped = new Set(onnxExportableOps());
  const builtin = registeredOps().filter((name) => name !== "placeholder");
  expect(builtin.filter((name) => !mapped.has(name))).toEqual([]);
});

it("at opset 13, 17 and 26 (the newest onnxruntime 1.30 accepts), a reduction graph agrees", async () => {
  for (const opset of [13, 17, ONNX_OPSETS.max]) {
    const x = adj.variable("x", { shape: [null, 5], dtype: "float64" });
    const outputs = [
      adj.mean(x, { axis: 1 }),
      adj.max(x, { axis: 0, keepdims: true }),
      adj.logsumexp(x, { axis: -1 }),
      adj.softmax(x),
    ];
    const value = randomTensor(mulberry32(opset), [4, 5]);
    await agree(
      [...outputs, ...adj.gradients(adj.sum(adj.mul(outputs[3], outputs[3])), [x])],
      [x],
      [value],
      1e-10,
      opset,
    );
  }
});

it("the MLP's forward and training graph (loss and every parameter gradient) agree, float32", async () => {
  const spec = adj.modelSpec("mlp", 64, [32], 10);
  const params = adj.initParams(spec, new adj.Rng(3), "float32");
  const X = adj.variable("X", { shape: [null, 64], dtype: "float32" });
  const Y = adj.variable("Y", { shape: [null, 10], dtype: "float32" });
  const weights = params.map((p, i) =>
    adj.variable(`p${i}`, { shape: [...p.shape], dtype: "float32" }),
  );
  const logits = adj.forward(spec, X, weights);
  const loss = adj.softmaxCrossEntropy(logits, Y);
  const grads = adj.gradients(loss, weights);
  const x = randomTensor(mulberry32(1), [50, 64]).clone({ dtype: "float32" });
  const labels = Array.from({ length: 50 }, (_, i) => (i * 7) % 10);
  const y = adj.tensor(
    labels.flatMap((l) => Array.from({ length: 10 }, (_, k) => (k === l ? 1 : 0))),
    { shape: [50, 10], dtype: "float32" },
  );
  const outputs = [logits, loss, ...grads];
  const names = outputs.map((_, i) => `out${i}`);
  const model = exportOnnx(outputs, {
    inputs: [X, Y],
    initializers: new Map(weights.map((w, i) => [w, params[i]])),
    outputNames: names,
  });
  const feeds = new Map<Node, Tensor>([
    [X, x],
    [Y, y],
    ...weights.map((w, i) => [w, params[i]] as [Node, Tensor]),
  ]);
  const want = new adj.Evaluator(outputs).run(feeds);
  const got = await runOrt(model, { X: x, Y: y }, names);
  got.forEach((g, i) => expectClose(g, want[i], 1e-5));
  // The batch is symbolic: the same model on 7 rows agrees too.
  const x7 = x
    .reshapeView([50 * 64])
    .clone()
    .data.subarray(0, 7 * 64);
  const y7 = y.data.subarray(0, 70);
  const small = [
    adj.tensor(x7, { shape: [7, 64], dtype: "float32" }),
    adj.tensor(y7, { shape: [7, 10], dtype: "float32" }),
  ];
  const want7 = new adj.Evaluator(outputs).run(
    new Map<Node, Tensor>([
      [X, small[0]],
      [Y, small[1]],
      ...weights.map((w, i) => [w, params[i]] as [Node, Tensor]),
    ]),
  );
  const got7 = await runOrt(model, { X: small[0], Y: small[1] }, names);
  got7.forEach((g, i) => expectClose(g, want7[i], 1e-5));
});

describe("clear errors", () => {
  it("names a custom op that has no ONNX mapping", () => {
    const double = adj.defineOp({
      name: "doubleForOnnxTest",
      type: ([t]) => t,
      compute: (_node, [v]) => adj.backend().scalar("mul", v, 2),
      gradient: (_node, g) => [adj.mulByConst(g, 2)],
    });
    const x = adj.variable("x", { shape: [2], dtype: "float64" });
    const y = adj.apply(double, [x]);
    expect(() => exportOnnx([adj.exp(y)], { inputs: [x] })).toThrow(
      'exportOnnx: op "doubleForOnnxTest" (node "doubleForOnnxTest(x)") has no ONNX mapping',
    );
  });

  it("names a variable that is neither input nor initializer, and an input without dtype", () => {
    const x = adj.variable("x", { shape: [2], dtype: "float64" });
    const w = adj.variable("w", { shape: [2] });
    expect(() => exportOnnx([adj.mul(x, w)], { inputs: [x] })).toThrow(
      'exportOnnx: variable "w" is neither in inputs nor in initializers',
    );
    expect(() => exportOnnx([adj.mul(x, w)], { inputs: [x, w] })).toThrow(
      /exportOnnx: input "w" has no dtype; declare it/,
    );
    expect(() => exportOnnx([x], { inputs: [x], opset: 9 })).toThrow(
      /exportOnnx: opset must be an integer from 13 to 26, got 9/,
    );
  });
});

describe("the protobuf code", () => {
  it("the enum codes written as constants are onnx.proto's, as the generated code has them", async () => {
    const { onnx } = (await import("onnx-proto")).default;
    const { ELEM, BOOL, ATTRIBUTE_TYPE } = await import("../../src/interop/onnx-proto.js");
    expect(ELEM).toEqual({
      float32: onnx.TensorProto.DataType.FLOAT,
      float64: onnx.TensorProto.DataType.DOUBLE,
    });
    expect(BOOL).toBe(onnx.TensorProto.DataType.BOOL);
    const T = onnx.AttributeProto.AttributeType;
    expect(ATTRIBUTE_TYPE).toEqual({
      FLOAT: T.FLOAT,
      INT: T.INT,
      STRING: T.STRING,
      TENSOR: T.TENSOR,
      INTS: T.INTS,
    });
    // int64 tensors (Reshape's shapes) carry INT64's code.
    const { tensorProto } = await import("../../src/interop/onnx-proto.js");
    expect(tensorProto("s", [2, 3], [2], "int64").dataType).toBe(onnx.TensorProto.DataType.INT64);
  });

  it("is loaded at the first export, not by importing the package", () => {
    // A fresh process: the package's build imported, then an export written.
    const script = `
      import { createRequire } from "node:module";
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes("onnx-proto"));
      const adj = await import(${JSON.stringify(join(packageRoot(), "dist", "src", "index.js"))});
      const before = loaded();
      const x = adj.variable("x", { shape: [2], dtype: "float32" });
      adj.exportOnnx([adj.relu(x)], { inputs: [x] });
      console.log(JSON.stringify([before, loaded()]));
    `;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
      encoding: "utf8",
    });
    expect(JSON.parse(out)).toEqual([false, true]);
  });
});
