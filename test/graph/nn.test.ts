/** The fused softmax cross-entropy: stability, agreement with its composite, errors, plan size. */
import { describe, expect, it } from "vitest";
import {
  Evaluator,
  gradients,
  logSoftmax,
  mul,
  neg,
  sum,
  softmaxCrossEntropy,
  tensor,
  variable,
  type Node,
  type Tensor,
} from "../../src/index.js";
import { countNodes, simplify, type NodeCounts } from "../../src/autodiff/simplify.js";
import { forward, modelSpec, paramSpecs, type ModelSpec } from "../../src/train/models.js";
import { assertClose, mulberry32, randomTensor } from "../helpers/gradcheck.js";

function run(nodes: Node[], feeds: [Node, Tensor][]): Tensor[] {
  return new Evaluator(nodes).run(new Map(feeds));
}

const composite = (z: Node, y: Node, axis = -1) => neg(sum(mul(y, logSoftmax(z, { axis }))));

describe("softmaxCrossEntropy", () => {
  it("is finite and exact for logits of ±1e4, first and second derivatives included", () => {
    const z = variable("z");
    const y = variable("y");
    const loss = softmaxCrossEntropy(z, y, { reduction: "sum" });
    const [dz, dy] = gradients(loss, [z, y]);
    const [dzz] = gradients(sum(mul(dz, dz)), [z]);
    const logits = tensor([
      [1e4, -1e4, 0],
      [-1e4, -1e4, -1e4 + 1],
    ]);
    const targets = tensor([
      [0, 1, 0],
      [0.25, 0.25, 0.5],
    ]);
    const values = run(
      [loss, dz, dy, dzz],
      [
        [z, logits],
        [y, targets],
      ],
    );
    for (const v of values) expect(v.data.every(Number.isFinite)).toBe(true);
    const e1 = Math.exp(-1);
    const lse1 = -1e4 + 1 + Math.log(1 + 2 * e1);
    // Row 0: logSoftmax = [0, -2e4, -1e4], target on -2e4; row 1 against lse1.
    const expected = 2e4 - (0.25 * (-1e4 - lse1) * 2 + 0.5 * (-1e4 + 1 - lse1));
    assertClose(values[0].data, [expected], "loss", 1e-12, 0);
    const p = 1 / (1 + 2 * e1);
    assertClose(
      values[1].data,
      [1, -1, 0, e1 * p - 0.25, e1 * p - 0.25, p - 0.5],
      "dz",
      1e-12,
      1e-300,
    );
  });

  it("matches its composite -sum(y * logSoftmax(z)) in value and gradients, both dtypes", () => {
    const random = mulberry32(11);
    for (const dtype of ["float64", "float32"] as const) {
      for (const [shape, axis] of [
        [[5, 7], -1],
        [[4, 3, 2], 1],
        [[3, 4], 0],
      ] as const) {
        const z = variable("z");
        const y = variable("y");
        const fused = softmaxCrossEntropy(z, y, { axis, reduction: "sum" });
        const plain = composite(z, y, axis);
        // The mean (the default) is the sum over the row count: every element but the class axis.
        const rows =
          shape.reduce((a, b) => a * b, 1) / shape[axis < 0 ? shape.length + axis : axis];
        const fusedMean = softmaxCrossEntropy(z, y, { axis });
        const plainMean = plain.div(rows);
        const nodes = [fused, ...gradients(fused, [z, y]), plain, ...gradients(plain, [z, y])];
        const means = [
          fusedMean,
          ...gradients(fusedMean, [z, y]),
          plainMean,
          ...gradients(plainMean, [z, y]),
          // second order through the mean's rule (rowsOf and the Grad op's own gradient)
          ...gradients(sum(mul(gradients(fusedMean, [z])[0], y)), [z, y]),
          ...gradients(sum(mul(gradients(plainMean, [z])[0], y)), [z, y]),
        ];
        const feeds: [Node, Tensor][] = [
          [z, randomTensor(random, [...shape], -3, 3).clone({ dtype })],
          [y, randomTensor(random, [...shape], 0, 1).clone({ dtype })],
        ];
        const [a, daz, day, b, dbz, dby] = run(nodes, feeds);
        for (const v of [a, daz, day]) expect(v.dtype).toBe(dtype);
        expect(a.shape).toEqual([]);
        const tol = dtype === "float64" ? 1e-12 : 1e-5;
        assertClose(a.data, b.data, "loss", tol, tol);
        assertClose(daz.data, dbz.data, "d/dz", tol, tol);
        assertClose(day.data, dby.data, "d/dy", tol, tol);
        const m = run(means, feeds);
        for (let k = 0; k < 3; k++) assertClose(m[k].data, m[k + 3].data, `mean ${k}`, tol, tol);
        for (let k = 6; k < 8; k++)
          assertClose(m[k].data, m[k + 2].data, `mean 2nd ${k}`, tol, tol);
      }
    }
  });

  it("is deterministic: the same inputs give bitwise the same loss and gradient", () => {
    const random = mulberry32(5);
    const z = variable("z");
    const y = variable("y");
    const loss = softmaxCrossEntropy(z, y);
    const [dz] = gradients(loss, [z]);
    const feeds: [Node, Tensor][] = [
      [z, randomTensor(random, [50, 10]).clone({ dtype: "float32" })],
      [y, randomTensor(random, [50, 10], 0, 1).clone({ dtype: "float32" })],
    ];
    const first = run([loss, dz], feeds).map((t) => [...t.data]);
    const second = run([loss, dz], feeds).map((t) => [...t.data]);
    expect(second).toEqual(first);
  });

  it("names the op and the shapes when they disagree; rejects 0-d logits and a bad axis", () => {
    const z = variable("z");
    const y = variable("y");
    expect(() =>
      run(
        [softmaxCrossEntropy(z, y)],
        [
          [z, tensor([[1, 2, 3]])],
          [y, tensor([[1, 0]])],
        ],
      ),
    ).toThrow("softmaxCrossEntropy(z, y): logits and targets shapes differ: [1,3] vs [1,2]");
    expect(() =>
      run(
        [softmaxCrossEntropy(z, y)],
        [
          [z, tensor(1)],
          [y, tensor(1)],
        ],
      ),
    ).toThrow("softmaxCrossEntropy(z, y): logits must have an axis, got []");
    expect(() => softmaxCrossEntropy(z, y, { axis: 0.5 })).toThrow(
      /softmaxCrossEntropy: axis must be an integer/,
    );
  });
});

describe("a training graph with the fused loss", () => {
  /** buildTrainPlan's graph (forward, loss, gradients, simplify) with the given loss. */
  function counts(spec: ModelSpec, loss: (logits: Node, Y: Node) => Node): NodeCounts {
    const X = variable("X");
    const Y = variable("Y");
    const params = paramSpecs(spec).map((p) => variable(p.name));
    const lossSum = loss(forward(spec, X, params), Y);
    const simplified = simplify([lossSum, ...gradients(lossSum, params)]);
    return countNodes([simplified[0]], simplified);
  }

  it.each([
    ["logreg", modelSpec("logreg", 64, [], 10)],
    ["mlp", modelSpec("mlp", 784, [256], 10)],
  ] as const)("%s: fewer forward and backward nodes than the composite loss", (_, spec) => {
    const fused = counts(spec, (z, y) => softmaxCrossEntropy(z, y));
    const plain = counts(spec, (z, y) => composite(z, y));
    // neg(sum(mul(y, logSoftmax(z)))) is four nodes, the fused loss one.
    expect(fused.forward).toBe(plain.forward - 3);
    expect(fused.backward).toBeLessThan(plain.backward);
    console.log(
      `${spec.kind} training graph, simplified: forward ${plain.forward} -> ${fused.forward}, ` +
        `backward ${plain.backward} -> ${fused.backward}`,
    );
  });
});
