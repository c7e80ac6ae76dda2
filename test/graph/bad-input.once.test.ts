/** Inputs the Python way, or of the wrong kind, are TypeErrors naming the call and its form. */
import { describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";

const x = adj.variable("x");
const a = adj.variable("a");
const b = adj.variable("b");
// Calls as JavaScript lets them be made, whatever the TypeScript signature says.
const loose = adj as unknown as Record<string, (...args: unknown[]) => unknown>;

describe("tensors", () => {
  it.each([
    [
      "tensor([1,2], {dtype: 'int8'})",
      () => loose.tensor([1, 2], { dtype: "int8" }),
      /dtype must be "float32" or "float64", got "int8"/,
    ],
    [
      "zeros([2], 'float16')",
      () => loose.zeros([2], "float16"),
      /dtype must be "float32" or "float64"/,
    ],
    [
      "new Tensor(Int32Array)",
      () => new adj.Tensor(new Int32Array(3) as never, [3]),
      /new Tensor\(data, shape\): data must be a Float32Array or a Float64Array, got Int32Array/,
    ],
    [
      "new Tensor([1,2,3])",
      () => new adj.Tensor([1, 2, 3] as never, [3]),
      /data must be a Float32Array or a Float64Array, got an array/,
    ],
    [
      "tensor(Int32Array)",
      () => loose.tensor(new Int32Array(3)),
      /tensor: Int32Array is not supported: pass a Float32Array, a Float64Array or nested number arrays/,
    ],
    [
      "tensor('abc')",
      () => loose.tensor("abc"),
      /tensor: values must be a number, nested number arrays/,
    ],
    [
      "tensor(x, {axes})",
      () => loose.tensor([1], { axes: 1 }),
      /tensor\(values, options\): unknown option "axes"/,
    ],
    ["tensor(x, 'float32')", () => loose.tensor([1], "float32"), /options must be an object/],
    ["zeros([1e200, 1e200])", () => adj.zeros([1e200, 1e200]), /invalid shape/],
    ["zeros([2**31, 4])", () => adj.zeros([2 ** 31, 4]), /8589934592 elements, more than/],
  ])("%s throws a clear error", (_what, call, message) => {
    expect(call).toThrow(message);
  });

  it("a valid tensor still has the dtype asked for", () => {
    expect(adj.tensor([1, 2], { dtype: "float32" }).data).toBeInstanceOf(Float32Array);
    expect(new adj.Tensor(new Float64Array(3), [3]).dtype).toBe("float64");
  });
});

describe("builders called the Python way", () => {
  it.each([
    [
      "sum(x, 1)",
      () => loose.sum(x, 1),
      "sum(x, options): options must be an object, as in sum(x, { axis: 1 }); got number 1",
    ],
    [
      "mean(x, 0, true)",
      () => loose.mean(x, 0, true),
      "mean(x, options): takes at most 2 arguments, got 3; write mean(x, { axis: 1 })",
    ],
    [
      "max(x, {axes: 1})",
      () => loose.max(x, { axes: 1 }),
      'max(x, options): unknown option "axes" (expected axis, keepdims), as in max(x, { axis: 1 })',
    ],
    [
      "logsumexp(x, [0])",
      () => loose.logsumexp(x, [0]),
      "logsumexp(x, options): options must be an object, as in logsumexp(x, { axis: 1 }); got an array",
    ],
    [
      "matmul(a, b, true, false)",
      () => loose.matmul(a, b, true, false),
      "matmul(a, b, options): takes at most 3 arguments, got 4; write matmul(a, b, { transA: true, transB: false })",
    ],
    [
      "matmul(a, b, true)",
      () => loose.matmul(a, b, true),
      "matmul(a, b, options): options must be an object, as in matmul(a, b, { transA: true, transB: false }); got boolean true",
    ],
    [
      "a.matmul(b, {transposeB})",
      () => a.matmul(b, { transposeB: true } as never),
      'matmul(a, b, options): unknown option "transposeB"',
    ],
    [
      "broadcastTo(x, t, 0)",
      () => loose.broadcastTo(x, b, 0),
      "broadcastTo(x, target, options): options must be an object, as in broadcastTo(x, target, { axis: 0 }); got number 0",
    ],
    [
      "logSoftmax(x, 1)",
      () => loose.logSoftmax(x, 1),
      "logSoftmax(x, options): options must be an object, as in logSoftmax(x, { axis: -1 }); got number 1",
    ],
    [
      "softmax(x, {dim: 1})",
      () => loose.softmax(x, { dim: 1 }),
      'softmax(x, options): unknown option "dim" (expected axis)',
    ],
    [
      "softmaxCrossEntropy(a, b, 1)",
      () => loose.softmaxCrossEntropy(a, b, 1),
      "softmaxCrossEntropy(logits, targets, options): options must be an object",
    ],
  ])("%s is a TypeError naming the expected form", (_what, call, message) => {
    expect(call).toThrow(TypeError);
    expect(call).toThrow(message);
  });

  it("the forms they name build the intended nodes", () => {
    expect(adj.sum(x, { axis: 1 }).attrs).toEqual({ axis: 1, keepdims: false });
    expect(adj.matmul(a, b, { transA: true }).attrs).toEqual({ transA: true, transB: false });
    expect(adj.broadcastTo(x, b, { axis: 0 }).attrs.axis).toBe(0);
    expect(adj.sum(x, undefined).attrs.axis).toBeUndefined();
  });
});

describe("graph entry points", () => {
  it.each([
    [
      "new Evaluator([1, 2])",
      () => new adj.Evaluator([1, 2] as never),
      "new Evaluator(nodes): nodes[0] must be a Node, got the number 1",
    ],
    [
      "new Evaluator(x)",
      () => new adj.Evaluator(x as never),
      "new Evaluator(nodes): nodes must be an array of Nodes, got the Node x (wrap a single node in an array",
    ],
    [
      "gradients(5, [x])",
      () => adj.gradients(5 as never, [x]),
      "gradients(output, nodes): output must be a Node, got the number 5",
    ],
    [
      "gradients(sum(x), x)",
      () => adj.gradients(adj.sum(x), x as never),
      "gradients(output, nodes): nodes must be an array of Nodes, got the Node x (wrap a single node in an array: gradients(y, [x]))",
    ],
    [
      "gradients(y, [x, 'b'])",
      () => adj.gradients(x, [x, "b"] as never),
      "gradients(output, nodes): nodes[1] must be a Node, got string",
    ],
  ])("%s says what is wrong", (_what, call, message) => {
    expect(call).toThrow(TypeError);
    expect(call).toThrow(message);
  });
});
