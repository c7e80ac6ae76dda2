/** Batched matmul, slice, concat, argmax and stopGradient: semantics beyond the op table, bad input. */
import { describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";

const run = (nodes: adj.Node[], feeds: Record<string, adj.Tensor>) =>
  new adj.Evaluator(nodes).run(feeds).map((t) => t.toArray());

/**
 * Trains `loss` over the rows of `x` (for X) with alternating two-class labels (for Y) on 1 and 2
 * threads: the same bits on both, and a loss that falls over 3 epochs.
 */
async function sameBitsOnOneAndTwoThreads(
  loss: adj.Node,
  params: Map<adj.Node, adj.Tensor>,
  [X, x]: [adj.Node, adj.Tensor],
  Y: adj.Node,
  batchSize: number,
): Promise<void> {
  const rows = x.shape[0];
  const labels = Float32Array.from({ length: rows * 2 }, (_, i) => Number(i % 2 === (i >> 1) % 2));
  const options = {
    loss,
    params,
    data: new Map([
      [X, x],
      [Y, adj.tensor(labels, { shape: [rows, 2] })],
    ]),
    batchSize,
    epochs: 3,
    optimizer: { kind: "adam" as const, lr: 0.05 },
  };
  const one = await adj.fit({ ...options, threads: 1 });
  const two = await adj.fit({ ...options, threads: 2 });
  expect(two.paramsHash).toBe(one.paramsHash);
  expect(one.history[2].loss).toBeLessThan(one.history[0].loss);
}

describe("batched matmul", () => {
  it("types at build time, as NumPy's matmul: batch axes broadcast, the last two multiply", () => {
    const X = adj.variable("X", { shape: [null, 28, 28] });
    const Wq = adj.variable("Wq", { shape: [28, 128] });
    expect(adj.matmul(X, Wq).shape).toEqual([null, 28, 128]);
    const Q = adj.variable("Q", { shape: [null, 28, 128] });
    expect(adj.matmul(Q, Q, { transB: true }).shape).toEqual([null, 28, 28]);
    const a = adj.variable("a", { shape: [3, 1, 2, 4] });
    const b = adj.variable("b", { shape: [2, 4, 3] });
    expect(adj.matmul(a, b).shape).toEqual([3, 2, 2, 3]);
  });
  it("refuses batch axes that do not broadcast and inner sizes that differ, naming the shapes", () => {
    const a = adj.variable("a", { shape: [2, 3, 4] });
    expect(() => adj.matmul(a, adj.variable("b", { shape: [3, 4, 5] }))).toThrow(
      "batch dimensions do not broadcast: [2,3,4] @ [3,4,5]",
    );
    expect(() => adj.matmul(a, adj.variable("c", { shape: [2, 5, 4] }))).toThrow(
      "inner dimensions differ: [2,3,4] @ [2,5,4]",
    );
    expect(() => adj.matmul(adj.variable("v", { shape: [4] }), a)).toThrow(
      "expects inputs of rank 2 or more, got [4] @ [2,3,4]",
    );
  });
});

describe("a stack times one matrix", () => {
  it("differentiates b as one product over the stack's rows: the per-matrix sum, by loops", () => {
    // a [2, 3, 4] @ b [4, 5] and a @ bt^T with bt [5, 4]; g fixed by the loss sum(C * G).
    const wave = (n: number, seed: number) =>
      Float64Array.from({ length: n }, (_, i) => Math.sin(seed * 1.7 + i * 0.9));
    const [av, bv, gv] = [wave(24, 1), wave(20, 2), wave(30, 3)];
    const a = adj.variable("a", { shape: [2, 3, 4] });
    const G = adj.variable("G", { shape: [2, 3, 5] });
    for (const transB of [false, true]) {
      const b = adj.variable("b", { shape: transB ? [5, 4] : [4, 5] });
      const loss = adj.sum(adj.mul(adj.matmul(a, b, { transB }), G));
      const [da, db] = adj.gradients(loss, [a, b]);
      // b's gradient is a 2-D product (no [2, 4, 5] stack summed afterwards).
      expect(db.op.name).toBe("matmul");
      expect(db.inputs.map((i) => i.shape)).toEqual(
        transB
          ? [
              [6, 5],
              [6, 4],
            ]
          : [
              [6, 4],
              [6, 5],
            ],
      );
      const feeds = {
        a: adj.tensor(av, { shape: [2, 3, 4] }),
        b: adj.tensor(bv, { shape: transB ? [5, 4] : [4, 5] }),
        G: adj.tensor(gv, { shape: [2, 3, 5] }),
      };
      const [gotA, gotB] = new adj.Evaluator([da, db]).run(feeds);
      // By loops: dB[k][n] = sum over s, m of a[s][m][k] G[s][m][n] (transposed for a @ bt^T);
      // dA[s][m][k] = sum over n of G[s][m][n] B[k][n].
      const B = (k: number, n: number) => (transB ? bv[n * 4 + k] : bv[k * 5 + n]);
      for (let k = 0; k < 4; k++)
        for (let n = 0; n < 5; n++) {
          let want = 0;
          for (let sm = 0; sm < 6; sm++) want += av[sm * 4 + k] * gv[sm * 5 + n];
          const at = transB ? n * 4 + k : k * 5 + n;
          expect(gotB.data[at]).toBeCloseTo(want, 12);
        }
      for (let sm = 0; sm < 6; sm++)
        for (let k = 0; k < 4; k++) {
          let want = 0;
          for (let n = 0; n < 5; n++) want += gv[sm * 5 + n] * B(k, n);
          expect(gotA.data[sm * 4 + k]).toBeCloseTo(want, 12);
        }
    }
  });
});

describe("conv2d", () => {
  it("types at build time and refuses bad geometry, naming the shapes", () => {
    const x = adj.variable("x", { shape: [null, 1, 28, 28] });
    const w = adj.variable("w", { shape: [8, 1, 5, 5] });
    expect(adj.conv2d(x, w).shape).toEqual([null, 8, 24, 24]);
    expect(adj.conv2d(x, w, { stride: 2, padding: 2 }).shape).toEqual([null, 8, 14, 14]);
    const w3 = adj.variable("w3", { shape: [8, 3, 5, 5] });
    expect(() => adj.conv2d(x, w3)).toThrow("channels differ: [null,1,28,28] * [8,3,5,5]");
    const big = adj.variable("big", { shape: [8, 1, 31, 31] });
    expect(() => adj.conv2d(x, big)).toThrow(
      /the kernel \(31x31\) is larger than the padded image/,
    );
    expect(() => adj.conv2d(x, w, { stride: 0 })).toThrow("conv2d: stride must be an integer >= 1");
    expect(() => adj.conv2d(x, adj.variable("v", { shape: [5, 5] }))).toThrow(
      "expects x [N,C,H,W] and w [F,C,kH,kW], got [null,1,28,28] * [5,5]",
    );
  });
});

describe("maxPool2d", () => {
  it("types at build time, refuses a window larger than the image, routes ties to the first", () => {
    const x = adj.variable("x", { shape: [null, 8, 24, 24] });
    expect(adj.maxPool2d(x, { size: 2 }).shape).toEqual([null, 8, 12, 12]);
    const small = adj.variable("small", { shape: [1, 1, 3, 3] });
    expect(() => adj.maxPool2d(small, { size: 4 })).toThrow(
      "the window (4x4) is larger than the image [1,1,3,3]",
    );
    expect(() => adj.maxPool2d(small, { size: 0 })).toThrow(
      "maxPool2d: size must be an integer >= 1",
    );
    // A window of equal values: the whole gradient goes to its first element, as PyTorch's.
    const v = adj.variable("v");
    const [dv] = adj.gradients(adj.sum(adj.maxPool2d(v, { size: 2 })), [v]);
    const [g] = new adj.Evaluator([dv]).run({
      v: adj.tensor([
        [
          [
            [1, 1],
            [1, 1],
          ],
        ],
      ]),
    });
    expect(g.toArray()).toEqual([
      [
        [
          [1, 0],
          [0, 0],
        ],
      ],
    ]);
  });
  it("a small CNN (conv, relu, pool, dense) trains through fit() with the same bits on 1 and 2 threads", async () => {
    const rows = 16;
    const X = adj.variable("X", { shape: [null, 1, 6, 6], dtype: "float32" });
    const Y = adj.variable("Y", { shape: [null, 2], dtype: "float32" });
    const K = adj.variable("K", { shape: [2, 1, 3, 3], dtype: "float32" });
    const D = adj.variable("D", { shape: [8, 2], dtype: "float32" });
    const pooled = adj.maxPool2d(adj.relu(adj.conv2d(X, K)), { size: 2 });
    const logits = adj.matmul(adj.reshape(pooled, [-1, 8]), D);
    const loss = adj.softmaxCrossEntropy(logits, Y);
    const wave = (n: number, seed: number) =>
      Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 3.1 + i * 0.7));
    const params = new Map([
      [K, adj.tensor(wave(18, 1), { shape: [2, 1, 3, 3] })],
      [D, adj.tensor(wave(16, 2), { shape: [8, 2] })],
    ]);
    const x = adj.tensor(wave(rows * 36, 3), { shape: [rows, 1, 6, 6] });
    await sameBitsOnOneAndTwoThreads(loss, params, [X, x], Y, 8);
  });
});

describe("layerNorm", () => {
  it("refuses axes that are not trailing, and a bad eps, naming them", () => {
    const x = adj.variable("x", { shape: [2, 3, 4] });
    expect(() => adj.layerNorm(x, { axis: 1 })).toThrow(
      "layerNorm: axis [1] must name trailing axes of rank 3 (as PyTorch's normalized_shape)",
    );
    expect(() => adj.layerNorm(x, { eps: 0 })).toThrow(
      "layerNorm: eps must be a positive finite number, got 0",
    );
    expect(adj.layerNorm(x, { axis: [1, 2] }).shape).toEqual([2, 3, 4]);
  });
});

describe("slice and concat", () => {
  it("refuse out-of-bounds slices and mismatched shapes where the graph is built, naming them", () => {
    const x = adj.variable("x", { shape: [null, 6] });
    expect(() => adj.slice(x, { axis: 1, start: 4, end: 9 })).toThrow(
      "slice: start 4, end 9 out of bounds for axis 1 of size 6 ([null,6])",
    );
    expect(() => adj.slice(x, { axis: 2, start: 0 })).toThrow(/axis 2/);
    expect(() => adj.slice(x, { axis: 1.5 } as never)).toThrow(
      "slice: axis must be an integer, got 1.5",
    );
    const a = adj.variable("a", { shape: [2, 3] });
    const b = adj.variable("b", { shape: [4, 3] });
    expect(() => adj.concat([a, b], { axis: 1 })).toThrow(
      "concat: shapes differ off axis 1: [2,3], [4,3]",
    );
    expect(adj.concat([a, b], { axis: 0 }).shape).toEqual([6, 3]);
    expect(() => adj.concat([], { axis: 0 })).toThrow("concat: needs at least one node");
  });
  it("check at run time what was unknown when built", () => {
    const x = adj.variable("x");
    expect(() => run([adj.slice(x, { axis: 0, start: 1, end: 5 })], { x: adj.zeros([3]) })).toThrow(
      /slice: start 1, end 5 out of bounds for axis 0 of size 3/,
    );
  });
  it("concat's gradient splits by the run-time sizes: an unknown batch needs no declaration", () => {
    const a = adj.variable("a");
    const b = adj.variable("b");
    const y = adj.sum(
      adj.concat([a, b], { axis: 0 }).mul(adj.constant(adj.tensor([[1], [2], [3]]))),
    );
    const [da, db] = adj.gradients(y, [a, b]);
    expect(
      run([da, db], {
        a: adj.tensor([[5, 5]]),
        b: adj.tensor([
          [7, 7],
          [8, 8],
        ]),
      }),
    ).toEqual([
      [[1, 1]],
      [
        [2, 2],
        [3, 3],
      ],
    ]);
  });
});

describe("argmax and stopGradient", () => {
  it("argmax takes the first maximum on ties and a NaN over any number, as NumPy", () => {
    const x = adj.variable("x");
    const out = run([adj.argmax(x, { axis: 1 })], {
      x: adj.tensor([
        [1, 3, 3, 0],
        [2, NaN, 5, NaN],
        [-Infinity, -Infinity, -Infinity, -Infinity],
      ]),
    });
    expect(out).toEqual([[1, 1, 0]]);
  });
  it("stopGradient passes the value and stops the gradient (JAX's stop_gradient)", () => {
    const x = adj.variable("x");
    const y = adj.sum(x.mul(adj.stopGradient(x)));
    const [dx] = adj.gradients(y, [x]);
    const [yv, dxv] = run([y, dx], { x: adj.tensor([1, 2, 3]) });
    expect(yv).toBe(14);
    expect(dxv).toEqual([1, 2, 3]); // d/dx x * c with c = x held still: c, not 2x
    const [tangent] = adj.jvp([adj.stopGradient(x)], [x], [adj.onesLike(x)]);
    expect(run([tangent], { x: adj.tensor([1, 2, 3]) })).toEqual([[0, 0, 0]]);
  });
});

describe("in fit(): the same bits on 1 and 2 threads", () => {
  it("a model that slices its input and concatenates two branches", async () => {
    const rows = 32;
    const X = adj.variable("X", { shape: [null, 4], dtype: "float32" });
    const Y = adj.variable("Y", { shape: [null, 2], dtype: "float32" });
    const W1 = adj.variable("W1", { shape: [2, 3], dtype: "float32" });
    const W2 = adj.variable("W2", { shape: [2, 3], dtype: "float32" });
    const W3 = adj.variable("W3", { shape: [6, 2], dtype: "float32" });
    const left = adj.tanh(adj.matmul(adj.slice(X, { axis: 1, start: 0, end: 2 }), W1));
    const right = adj.tanh(adj.matmul(adj.slice(X, { axis: 1, start: 2 }), W2));
    const logits = adj.matmul(adj.concat([left, right], { axis: 1 }), W3);
    const loss = adj.softmaxCrossEntropy(logits, Y);
    const value = (n: number, seed: number) =>
      adj.tensor(Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 7.3 + i * 1.9)));
    const params = new Map([
      [W1, value(6, 1).reshapeView([2, 3])],
      [W2, value(6, 2).reshapeView([2, 3])],
      [W3, value(12, 3).reshapeView([6, 2])],
    ]);
    await sameBitsOnOneAndTwoThreads(
      loss,
      params,
      [X, value(rows * 4, 4).reshapeView([rows, 4])],
      Y,
      16,
    );
  });
});
