/** Semantics of the public API: dtypes, 0-d tensors, stable softmax, op identity, input checks. */
import { describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";
import {
  add,
  addByConst,
  Evaluator,
  gradients,
  logSoftmax,
  logsumexp,
  matmul,
  mul,
  Node,
  softmax,
  sum,
  tensor,
  topoSort,
  variable,
  type Tensor,
} from "../../src/index.js";
import { assertClose, mulberry32, randomTensor } from "../helpers/gradcheck.js";
import { opCases } from "../helpers/op-cases.js";

function run(nodes: Node[], feeds: [Node, Tensor][]): Tensor[] {
  return new Evaluator(nodes).run(new Map(feeds));
}

const f32 = (t: Tensor) => t.clone({ dtype: "float32" });

describe("dtype rules", () => {
  it.each(opCases.map((c) => [c.name, c] as const))(
    "%s: float32 in gives float32 out, gradients and second-order gradients included",
    (_, c) => {
      const xs = c.inputs.map((_t, i) => variable(`x${i}`));
      const y = c.build(...xs);
      const u = variable("u");
      const loss = sum(mul(u, y));
      const grads = gradients(loss, xs);
      const second = gradients(
        grads.map((g) => sum(g)).reduce((a, b) => add(a, b)),
        xs,
      );
      const feeds: [Node, Tensor][] = xs.map((x, i) => [x, f32(c.inputs[i])]);
      const [yv] = run([y], feeds);
      const random = mulberry32(3);
      feeds.push([u, f32(randomTensor(random, yv.shape))]);
      const values = run([y, loss, ...grads, ...second], feeds);
      for (const v of values) expect(v.dtype).toBe("float32");
      // float32 values agree with the float64 ones to float32 precision.
      const [y64] = run(
        [y],
        xs.map((x, i) => [x, c.inputs[i]]),
      );
      assertClose(yv.data, y64.data, "float32 vs float64 value", 1e-5, 1e-5);
    },
  );

  it("zerosLike and onesLike keep the dtype", () => {
    const x = variable("x");
    for (const dtype of ["float32", "float64"] as const) {
      const [z, o] = run([adj.zerosLike(x), adj.onesLike(x)], [[x, adj.zeros([2, 3], dtype)]]);
      expect([z.dtype, o.dtype]).toEqual([dtype, dtype]);
      expect(z.toArray()).toEqual([
        [0, 0, 0],
        [0, 0, 0],
      ]);
      expect(o.toArray()).toEqual([
        [1, 1, 1],
        [1, 1, 1],
      ]);
    }
  });

  it("mixing float32 and float64 gives float64, in either order", () => {
    const a = variable("a");
    const b = variable("b");
    const a32 = tensor([[1.5, 2]], { dtype: "float32" });
    const b64 = tensor([[0.1], [0.2]]);
    const builders = [adj.add, adj.sub, adj.mul, adj.div];
    for (const build of builders) {
      const [ab, ba] = run(
        [build(a, b), build(b, a)],
        [
          [a, a32],
          [b, b64],
        ],
      );
      expect([ab.dtype, ba.dtype]).toEqual(["float64", "float64"]);
    }
    const [m1, m2] = run(
      [matmul(b, a), matmul(a, b)],
      [
        [a, a32],
        [b, b64],
      ],
    );
    expect([m1.dtype, m2.dtype]).toEqual(["float64", "float64"]);
    // 0.1 is not a float32 number: the float64 input keeps its precision.
    expect(m1.toArray()).toEqual([
      [0.1 * 1.5, 0.1 * 2],
      [0.2 * 1.5, 0.2 * 2],
    ]);
  });
});

describe("0-d tensors", () => {
  it("work in element-wise ops, with each other and with matrices", () => {
    const s = variable("s");
    const m = variable("m");
    const [ss, sm, ms] = run(
      [mul(s, s), add(s, m), adj.div(m, s)],
      [
        [s, tensor(2)],
        [m, tensor([[1, 2, 3]])],
      ],
    );
    expect(ss.shape).toEqual([]);
    expect(ss.toArray()).toBe(4);
    expect(sm.toArray()).toEqual([[3, 4, 5]]);
    expect(ms.toArray()).toEqual([[0.5, 1, 1.5]]);
  });

  it("reduce to and from 0-d", () => {
    const s = variable("s");
    const m = variable("m");
    const nodes = [
      sum(s),
      adj.mean(s),
      adj.max(s),
      logsumexp(s),
      sum(s, { keepdims: true }),
      sum(m),
      adj.mean(m),
      adj.max(m),
      sum(m, { keepdims: true }),
    ];
    const values = run(nodes, [
      [s, tensor(-1.5)],
      [
        m,
        tensor([
          [1, 2, 3],
          [4, 5, 9],
        ]),
      ],
    ]);
    expect(values.map((v) => v.shape)).toEqual([[], [], [], [], [], [], [], [], [1, 1]]);
    expect(values.map((v) => v.toArray())).toEqual([
      -1.5,
      -1.5,
      -1.5,
      -1.5,
      -1.5,
      24,
      4,
      9,
      [[24]],
    ]);
  });

  it("sum of a matrix has a 0-d gradient seed and a matrix gradient", () => {
    const m = variable("m");
    const [g] = gradients(sum(m), [m]);
    const [gv] = run(
      [g],
      [
        [
          m,
          tensor([
            [1, 2],
            [3, 4],
          ]),
        ],
      ],
    );
    expect(gv.toArray()).toEqual([
      [1, 1],
      [1, 1],
    ]);
  });
});

describe("stable logsumexp / logSoftmax / softmax", () => {
  const logits = [
    [1e4, -1e4, 0],
    [-1e4, -1e4, -1e4 + 1],
  ];
  it("are finite and correct for logits of ±1e4, gradients included", () => {
    const x = variable("x");
    const u = variable("u");
    const nodes = [logsumexp(x, { axis: 1 }), logSoftmax(x), softmax(x)];
    const uLse = variable("uLse");
    const grads = nodes.map((n, i) => gradients(sum(mul(i === 0 ? uLse : u, n)), [x])[0]);
    const uRow = tensor([
      [1, 2, 3],
      [-1, 0.5, 2],
    ]);
    const values = run(
      [...nodes, ...grads],
      [
        [x, tensor(logits)],
        [u, uRow],
        [uLse, tensor([1, -2])],
      ],
    );
    for (const v of values) expect(v.data.every(Number.isFinite)).toBe(true);
    const [lse, lsm, sm] = values;
    const e1 = Math.exp(-1);
    // Row 0: e^0 and e^-2e4 vanish beside e^1e4; row 1: -1e4 + 1 + log(1 + 2/e).
    const lse1 = -1e4 + 1 + Math.log(1 + 2 * e1);
    assertClose(lse.data, [1e4, lse1], "logsumexp", 1e-15, 0);
    assertClose(
      lsm.data,
      [0, -2e4, -1e4, -1e4 - lse1, -1e4 - lse1, -1e4 + 1 - lse1],
      "logSoftmax",
      1e-12,
      1e-12,
    );
    const p = 1 / (1 + 2 * e1); // softmax of the largest entry in row 1
    assertClose(sm.data, [1, 0, 0, e1 * p, e1 * p, p], "softmax", 1e-12, 1e-300);
    // d logsumexp / dx = softmax, scaled by the upstream [1, -2].
    assertClose(
      values[3].data,
      [1, 0, 0, -2 * e1 * p, -2 * e1 * p, -2 * p],
      "d lse",
      1e-12,
      1e-300,
    );
  });

  it("have gradients that are finite for ±1e4 logits", () => {
    const x = variable("x");
    const [g] = gradients(sum(logSoftmax(x)), [x]);
    const [gv] = run([g], [[x, tensor(logits)]]);
    // d/dx sum_j logSoftmax_j = 1 - n * softmax: row 0 -> [1-3, 1, 1].
    expect(gv.data.every(Number.isFinite)).toBe(true);
    assertClose(gv.data.slice(0, 3), [-2, 1, 1], "row 0", 1e-12, 1e-12);
  });
});

describe("op identity", () => {
  it("x.add(2).op === addByConst(y, 1).op", () => {
    const x = variable("x");
    const y = variable("y");
    expect(x.add(2).op).toBe(addByConst(y, 1).op);
    expect(x.mul(2).op).toBe(adj.mulByConst(y, 3).op);
    expect(x.div(2).op).toBe(adj.divByConst(y, 3).op);
    expect(x.add(y).op).toBe(add(y, x).op);
  });

  it.each(opCases.map((c) => [c.name, c] as const))(
    "%s: two builds share every op object",
    (_, c) => {
      const first = topoSort([c.build(...c.inputs.map((_t, i) => variable(`a${i}`)))]);
      const second = topoSort([c.build(...c.inputs.map((_t, i) => variable(`b${i}`)))]);
      expect(second.length).toBe(first.length);
      second.forEach((node, i) => expect(node.op).toBe(first[i].op));
      expect(new Set(first).size).toBe(first.length);
      expect(first.some((n) => second.includes(n))).toBe(false);
    },
  );

  it("a.sub(c) is addByConst with attrs.constant -c", () => {
    const a = variable("a");
    const node = a.sub(3);
    expect(node.op).toBe(addByConst(a, 1).op);
    expect(node.attrs.constant).toBe(-3);
    expect(node.inputs).toEqual([a]);
    expect(run([node], [[a, tensor([1, 5])]])[0].toArray()).toEqual([-2, 2]);
  });

  it("a number selects the byConst op with the constant in attrs", () => {
    const a = variable("a");
    expect(a.add(2).attrs.constant).toBe(2);
    expect(a.mul(-4).attrs.constant).toBe(-4);
    expect(a.div(8).attrs.constant).toBe(8);
  });
});

describe("Node methods reject non-nodes", () => {
  const a = variable("a");
  const bad: unknown[] = ["3", [1, 2], null, {}];
  it.each(["add", "sub", "mul", "div", "matmul"] as const)("Node.%s", (method) => {
    for (const value of bad) {
      const call = () => (a[method] as (other: unknown) => Node)(value);
      expect(call).toThrow(TypeError);
      expect(call).toThrow(`Node.${method}`);
    }
    const expected = method === "matmul" ? "a Node" : "a Node or a number";
    expect(() => (a[method] as (other: unknown) => Node)("3")).toThrow(
      `Node.${method}: expected ${expected}, got string`,
    );
    if (method === "matmul") {
      // A number is no matrix: matmul is the one method that takes none.
      expect(() => (a.matmul as (other: unknown) => Node)(3)).toThrow(
        "Node.matmul: expected a Node, got number 3",
      );
    }
    expect(() => (a[method] as (other: unknown) => Node)([1, 2])).toThrow("an array");
  });

  it("builders reject bad inputs and attrs where the graph is built", () => {
    const x = variable("x");
    expect(() => add(x, 3 as unknown as Node)).toThrow("add: input 1 must be a Node, got number");
    expect(() => addByConst(x, "1" as unknown as number)).toThrow(
      "addByConst: the constant must be a number, got string",
    );
    expect(() => adj.pow(x, [2] as unknown as number)).toThrow(TypeError);
    expect(() => sum(x, { axis: 1.5 })).toThrow(
      "sum: axis must be an integer or an array of integers",
    );
    expect(() => adj.max(x, { keepdims: 1 as unknown as boolean })).toThrow(
      "max: keepdims must be a boolean",
    );
    expect(() => adj.reshape(x, [-1, -1])).toThrow("reshape: at most one -1");
    expect(() => adj.reshape(x, [2.5])).toThrow("reshape: shape must be an array of integers");
    expect(() => adj.expandDims(x, 0.5)).toThrow("expandDims: axis must be an integer");
    expect(() => adj.transpose(x, [0, 1.5])).toThrow(
      "transpose: axes must be an array of integers",
    );
    expect(() => adj.broadcastTo(x, [2, -3])).toThrow("broadcastTo: target shape must be an array");
    expect(() => adj.broadcastTo(x, [2, 3], { axis: 0.5 })).toThrow(
      "broadcastTo: axis must be an integer",
    );
    expect(() => matmul(x, x, { transA: 1 as unknown as boolean })).toThrow(
      "matmul: transA and transB must be booleans",
    );
    expect(() => logSoftmax(x, { axis: 0.5 })).toThrow("logSoftmax: axis must be an integer");
    expect(() => variable(3 as unknown as string)).toThrow("variable: name must be a string");
  });
});

describe("tensor()", () => {
  it("rejects ragged nested arrays, saying so", () => {
    expect(() => tensor([[1, 2], [3]])).toThrow(
      "tensor: ragged nested array: element [1] has length 1, expected length 2",
    );
    expect(() => tensor([[1, 2], 3] as unknown as number[][])).toThrow("ragged nested array");
    expect(() => tensor([1, [2]] as unknown as number[])).toThrow(
      "ragged nested array: element [1] is an array, expected a number",
    );
    expect(() =>
      tensor([
        [[1], [2]],
        [[3], [4, 5]],
      ]),
    ).toThrow("element [1][1] has length 2");
  });

  it("rejects NaN and other invalid shapes, saying so", () => {
    expect(() => tensor(new Float64Array(3), { shape: [NaN] })).toThrow(
      "tensor: invalid shape [NaN]: dimensions must be non-negative integers",
    );
    expect(() => tensor(new Float32Array(3), { shape: [3, 1.5] })).toThrow("invalid shape [3,1.5]");
    expect(() => tensor(new Float32Array(3), { shape: [-3] })).toThrow("invalid shape [-3]");
    // With nested arrays the shape is still named in the message.
    expect(() => tensor([1, 2, 3], { shape: [NaN] })).toThrow("shape [NaN]");
    expect(() => adj.zeros([2, NaN])).toThrow("invalid shape [2,NaN]");
  });

  it("rejects a data length that does not match the shape, saying so", () => {
    expect(() => tensor(new Float64Array(3), { shape: [2, 2] })).toThrow(
      "tensor: data length 3 does not match shape [2,2] (size 4)",
    );
    expect(() => tensor([1, 2, 3], { shape: [2, 2] })).toThrow(
      "data length 3 does not match shape [2,2]",
    );
    expect(() => new adj.Tensor(new Float64Array(5), [2, 3])).toThrow(
      "data length 5 does not match shape [2,3]",
    );
  });

  it("accepts nested arrays with a matching opts.shape", () => {
    const t = tensor([1, 2, 3, 4, 5, 6], { shape: [2, 3] });
    expect(t.toArray()).toEqual([
      [1, 2, 3],
      [4, 5, 6],
    ]);
  });

  it("toArray() of a 0-d tensor is a number", () => {
    const t = tensor(2.5);
    expect(t.shape).toEqual([]);
    expect(t.size).toBe(1);
    expect(t.toArray()).toBe(2.5);
    expect(typeof tensor(new Float32Array([7]), { shape: [] }).toArray()).toBe("number");
  });

  it("opts.shared allocates on a SharedArrayBuffer", () => {
    const shared = tensor(
      [
        [1, 2],
        [3, 4],
      ],
      { shared: true },
    );
    expect(shared.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(shared.toArray()).toEqual([
      [1, 2],
      [3, 4],
    ]);
    const typed = tensor(new Float32Array([1, 2]), { shared: true });
    expect(typed.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(typed.dtype).toBe("float32");
    // Without opts.shared the data is a plain ArrayBuffer on either backend: a tensor a user
    // makes never lives in the wasm arena (where only a GC callback could free it).
    const plain = tensor([1, 2]).data.buffer;
    expect(plain).not.toBeInstanceOf(SharedArrayBuffer);
    expect(plain.byteLength).toBe(16);
  });

  it("dtype defaults: float64 for numbers, the array's own type for typed arrays", () => {
    expect(tensor(1).dtype).toBe("float64");
    expect(tensor([[1, 2]]).data).toBeInstanceOf(Float64Array);
    expect(tensor(new Float32Array(2)).dtype).toBe("float32");
    expect(tensor(new Float32Array(2)).data).toBeInstanceOf(Float32Array);
    expect(tensor(new Float64Array(2)).dtype).toBe("float64");
    expect(tensor([1, 2], { dtype: "float32" }).data).toBeInstanceOf(Float32Array);
    expect(tensor(new Float64Array([0.1]), { dtype: "float32" }).data[0]).toBe(Math.fround(0.1));
  });

  it("copies typed-array input rather than aliasing it", () => {
    const source = new Float64Array([1, 2, 3]);
    const t = tensor(source);
    source[0] = 99;
    expect(t.data[0]).toBe(1);
  });
});
