/** Evaluator: feeds, error messages, pruning, immutability, a 100,000-node chain, gradient edge cases. */
import type { NodeType } from "../../src/graph/types.js";
import { performance } from "node:perf_hooks";
import { describe, expect, it } from "vitest";
import {
  add,
  backend,
  broadcastTo,
  Evaluator,
  exp,
  gradients,
  matmul,
  mul,
  Node,
  reshape,
  sum,
  tensor,
  transpose,
  variable,
  type Op,
  type Tensor,
} from "../../src/index.js";
import { mulberry32, randomTensor } from "../helpers/gradcheck.js";

function run(nodes: Node[], feeds: [Node, Tensor][]): Tensor[] {
  return new Evaluator(nodes).run(new Map(feeds));
}

/** An op with the public Op interface that counts its compute and gradient calls. */
function countingOp(name: string): Op & { computes: number; gradients: number } {
  const op = {
    name,
    type: ([x]: readonly NodeType[]) => x,
    computes: 0,
    gradients: 0,
    compute: (_node: Node, [x]: Tensor[]) => {
      op.computes++;
      return backend().scalar("mul", x, 2);
    },
    gradient: (_node: Node, g: Node) => {
      op.gradients++;
      return [g.mul(2)];
    },
  };
  return op;
}

describe("feeds", () => {
  it("missing feeds: one Error naming every missing variable", () => {
    const a = variable("alpha");
    const b = variable("beta");
    const c = variable("gamma");
    const y = add(mul(a, b), c);
    const evaluator = new Evaluator([y]);
    expect(() => evaluator.run(new Map([[b, tensor(1)]]))).toThrow(
      'Evaluator.run: missing feed for variables "alpha", "gamma"',
    );
    expect(() =>
      evaluator.run(
        new Map([
          [a, tensor(1)],
          [b, tensor(1)],
        ]),
      ),
    ).toThrow('missing feed for variable "gamma"');
    let error: unknown;
    try {
      evaluator.run(new Map());
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(Error);
    for (const name of ["alpha", "beta", "gamma"]) expect(String(error)).toContain(`"${name}"`);
  });

  it("a feed that is not a Tensor is rejected by name", () => {
    const x = variable("x");
    expect(() =>
      new Evaluator([x.add(1)]).run(new Map([[x, [1, 2] as unknown as Tensor]])),
    ).toThrow('Evaluator.run: the feed for "x" is not a Tensor');
  });

  it("feeds are never modified", () => {
    const x = variable("x");
    const w = variable("w");
    const y = [
      add(x, x),
      reshape(x, [-1]).mul(3),
      matmul(x, w).mul(sum(x)).sub(1),
      transpose(x),
      broadcastTo(w, [2, 3, 3]),
      exp(x).neg(),
    ].map((n) => sum(n));
    const out = add(add(add(y[0], y[1]), add(y[2], y[3])), add(y[4], y[5]));
    const random = mulberry32(11);
    const xv = randomTensor(random, [3, 3]);
    const wv = randomTensor(random, [3, 3], 0, 1);
    const before = [Float64Array.from(xv.data), Float64Array.from(wv.data)];
    const [g1, g2] = gradients(out, [x, w]);
    run(
      [out, g1, g2, ...y],
      [
        [x, xv],
        [w, wv],
      ],
    );
    expect(xv.data).toEqual(before[0]);
    expect(wv.data).toEqual(before[1]);
    expect(xv.shape).toEqual([3, 3]);
  });

  it("repeated runs are independent", () => {
    const x = variable("x");
    const y = exp(x).mul(x).add(sum(x));
    const evaluator = new Evaluator([y, x.mul(2)]);
    const [y1, d1] = evaluator.run(new Map([[x, tensor([0, 1])]]));
    const y1Copy = Float64Array.from(y1.data);
    const [y2, d2] = evaluator.run(new Map([[x, tensor([2, 3])]]));
    const [y3] = evaluator.run(new Map([[x, tensor([0, 1])]]));
    expect(y1.data).toEqual(y1Copy); // the first result was not overwritten by the second run
    expect(Array.from(y1.data)).toEqual([0 + 1, Math.E + 1]);
    expect(Array.from(y2.data)).toEqual([2 * Math.exp(2) + 5, 3 * Math.exp(3) + 5]);
    expect(Array.from(y3.data)).toEqual(Array.from(y1.data));
    expect(d1.toArray()).toEqual([0, 2]);
    expect(d2.toArray()).toEqual([4, 6]);
  });
});

describe("errors name the op, the node and the shapes", () => {
  it("matmul inner dimensions", () => {
    const X = variable("X");
    const W = variable("W");
    expect(() =>
      run(
        [matmul(X, W)],
        [
          [X, tensor(new Float64Array(6), { shape: [2, 3] })],
          [W, tensor(new Float64Array(20), { shape: [4, 5] })],
        ],
      ),
    ).toThrow("matmul(X, W): inner dimensions differ: [2,3] @ [4,5]");
  });

  it("matmul of non-matrices", () => {
    const X = variable("X");
    const W = variable("W");
    expect(() =>
      run(
        [X.matmul(W)],
        [
          [X, tensor([1, 2, 3])],
          [W, tensor([[1], [2], [3]])],
        ],
      ),
    ).toThrow("matmul(X, W): expects inputs of rank 2 or more, got [3] @ [3,1]");
  });

  it("element-wise broadcasting", () => {
    const a = variable("a");
    const b = variable("b");
    expect(() =>
      run(
        [mul(a, b)],
        [
          [a, tensor([[1, 2, 3]])],
          [b, tensor([1, 2])],
        ],
      ),
    ).toThrow("mul(a, b): shapes [1,3] and [2] do not broadcast");
  });

  it("broadcastTo to an incompatible target", () => {
    const x = variable("x");
    const t = variable("t");
    expect(() =>
      run(
        [broadcastTo(x, t)],
        [
          [x, tensor([1, 2, 3])],
          [t, tensor([[1, 2]])],
        ],
      ),
    ).toThrow("broadcastTo(x, t): cannot broadcast [3] (as [1,3], axis 0) to [1,2]");
    expect(() => run([broadcastTo(x, [2])], [[x, tensor([[1, 2]])]])).toThrow(
      "broadcastTo(x): cannot broadcast [1,2] to lower rank [2]",
    );
  });

  it("reshape, reduction axes and transpose axes", () => {
    const x = variable("x");
    const feeds: [Node, Tensor][] = [
      [
        x,
        tensor([
          [1, 2, 3],
          [4, 5, 6],
        ]),
      ],
    ];
    expect(() => run([reshape(x, [4, -1])], feeds)).toThrow(
      "reshape(x): cannot reshape [2,3] to [4,-1]",
    );
    expect(() => run([reshape(x, [5])], feeds)).toThrow("cannot reshape [2,3] to [5]");
    expect(() => run([sum(x, { axis: 2 })], feeds)).toThrow(
      "sum(x): axis 2 is out of range for rank 2",
    );
    expect(() => run([transpose(x, [0, 0])], feeds)).toThrow(
      "transpose(x): axes [0,0] are not a permutation of 2 axes",
    );
  });

  it("the original error is kept as the cause", () => {
    const a = variable("a");
    const b = variable("b");
    let error: Error | undefined;
    try {
      run(
        [add(a, b)],
        [
          [a, tensor([1, 2])],
          [b, tensor([1, 2, 3])],
        ],
      );
    } catch (e) {
      error = e as Error;
    }
    expect(error?.message).toBe("add(a, b): shapes [2] and [3] do not broadcast");
    expect((error?.cause as Error).message).toBe("shapes [2] and [3] do not broadcast");
  });
});

describe("only what the outputs need is computed", () => {
  it("counts compute calls of a custom op", () => {
    const op = countingOp("countedTwice");
    const x = variable("x");
    const needed = new Node([x], op, {}, "needed");
    const unneeded = new Node([x], op, {}, "unneeded");
    const y = needed.add(1);
    void unneeded.add(2); // built, never asked for
    const evaluator = new Evaluator([y]);
    expect(evaluator.topoOrder).not.toContain(unneeded);
    const [v] = evaluator.run(new Map([[x, tensor([1, 2])]]));
    expect(v.toArray()).toEqual([3, 5]);
    expect(op.computes).toBe(1);
    evaluator.run(new Map([[x, tensor([1, 2])]]));
    expect(op.computes).toBe(2);
  });

  it("an unfed variable on a branch the outputs do not need is no error", () => {
    const x = variable("x");
    const unfed = variable("unfed");
    const branch = add(x, unfed);
    void branch;
    const [v] = run([x.mul(3)], [[x, tensor(2)]]);
    expect(v.toArray()).toBe(6);
  });

  it("a node shared by two outputs is computed once", () => {
    const op = countingOp("countedShared");
    const x = variable("x");
    const shared = new Node([x], op, {}, "shared");
    const [a, b] = run([shared.add(1), shared.mul(shared)], [[x, tensor(3)]]);
    expect([a.toArray(), b.toArray()]).toEqual([7, 36]);
    expect(op.computes).toBe(1);
  });

  it("gradients() sweeps only nodes between the output and the targets", () => {
    const op = countingOp("countedSweep");
    const x = variable("x");
    const z = variable("z");
    const y = add(new Node([x], op, {}, "offPath"), z.mul(z));
    const [gz] = gradients(y, [z]);
    expect(op.gradients).toBe(0);
    expect(
      run(
        [gz],
        [
          [z, tensor(5)],
          [x, tensor(1)],
        ],
      )[0].toArray(),
    ).toBe(10);
    const [gx] = gradients(y, [x]);
    expect(op.gradients).toBe(1);
    expect(
      run(
        [gx],
        [
          [z, tensor(5)],
          [x, tensor(1)],
        ],
      )[0].toArray(),
    ).toBe(2);
  });
});

describe("gradients edge cases", () => {
  it("a node the output does not depend on gets zeros of its shape", () => {
    const x = variable("x");
    const other = variable("other");
    const y = sum(x.mul(x));
    const [gOther, gx] = gradients(y, [other, x]);
    const [gov, gxv] = run(
      [gOther, gx],
      [
        [x, tensor([1, 2])],
        [other, tensor([[5, 6, 7]])],
      ],
    );
    expect(gov.toArray()).toEqual([[0, 0, 0]]);
    expect(gxv.toArray()).toEqual([2, 4]);
  });

  it("the gradient of the output with respect to itself is ones", () => {
    const x = variable("x");
    const y = exp(x).mul(3);
    const [gy] = gradients(y, [y]);
    const [gyv] = run(
      [gy],
      [
        [
          x,
          tensor([
            [1, 2],
            [3, 4],
          ]),
        ],
      ],
    );
    expect(gyv.toArray()).toEqual([
      [1, 1],
      [1, 1],
    ]);
  });

  it("fan-in is summed", () => {
    const x = variable("x");
    const y = add(add(x.mul(2), x.mul(3)), exp(x));
    const [g] = gradients(y, [x]);
    expect(run([g], [[x, tensor(0)]])[0].toArray()).toBe(2 + 3 + 1);
  });
});

describe("a 100,000-node chain", () => {
  it("builds, runs and differentiates without a stack overflow", () => {
    const steps = 50_000; // mul and add per step: 100,000 op nodes
    const c = 1.00001;
    const t0 = performance.now();
    const x = variable("x");
    let y: Node = x;
    for (let i = 0; i < steps; i++) y = y.mul(c).add(1);
    const t1 = performance.now();
    const [g] = gradients(y, [x]);
    const t2 = performance.now();
    const evaluator = new Evaluator([y, g]);
    const [yv, gv] = evaluator.run(new Map([[x, tensor([0, 1, -2])]]));
    const t3 = performance.now();
    console.log(
      `100k chain: build ${(t1 - t0).toFixed(0)} ms, gradients ${(t2 - t1).toFixed(0)} ms, ` +
        `plan + run of value and gradient (${evaluator.topoOrder.length} nodes) ${(t3 - t2).toFixed(0)} ms, ` +
        `total ${(t3 - t0).toFixed(0)} ms`,
    );
    expect(evaluator.topoOrder.length).toBeGreaterThan(100_000);
    // y_N = c^N x + (c^N - 1) / (c - 1), dy/dx = c^N.
    const cN = Math.pow(c, steps);
    const expected = [0, 1, -2].map((v) => cN * v + (cN - 1) / (c - 1));
    for (let i = 0; i < 3; i++) {
      expect(Math.abs(yv.data[i] - expected[i])).toBeLessThan(1e-9 * Math.abs(expected[i]));
      expect(Math.abs(gv.data[i] - cN)).toBeLessThan(1e-9 * cN);
    }
  });
});

describe("feeds as an object keyed by variable name (the Python exercise's input_values)", () => {
  it("feeds by name, and names what it cannot match", () => {
    const x1 = variable("x1");
    const x2 = variable("x2");
    const ev = new Evaluator([x1.mul(x2).add(x1)]);
    expect(ev.run({ x1: tensor([2, 3]), x2: tensor([5, 7]) })[0].toArray()).toEqual([12, 24]);
    expect(() => ev.run({ x1: tensor(1), x3: tensor(1) })).toThrow(
      'Evaluator.run: no variable named "x3" in this graph (it has "x1", "x2")',
    );
    const twin = variable("x1");
    expect(() => new Evaluator([x1.add(twin)]).run({ x1: tensor(1) })).toThrow(
      'Evaluator.run: 2 variables are named "x1": feed them with a Map',
    );
    expect(() => ev.run([] as never)).toThrow(/feeds must be a Map/);
  });
});
