/** Random DAGs (seeded) of unary, binary, reduce and shape ops, checked by the one gradient checker. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";
import { backendCases } from "../helpers/backends.js";
import { topoSort, type Node } from "../../src/index.js";
import { gradcheck, mulberry32, randomTensor } from "../helpers/gradcheck.js";
import { broadcastShape } from "../helpers/reference.js";

/** A node with the shape its value will have (tracked here, independently of the library). */
interface Shaped {
  node: Node;
  shape: number[];
}

const VARIABLE_SHAPES = [[2, 3], [3], [2, 1]];

function broadcasts(a: number[], b: number[]): number[] | null {
  try {
    return broadcastShape(a, b);
  } catch {
    return null;
  }
}

/**
 * A random graph over three variables: each step applies a random op to random earlier nodes
 * (so nodes fan out and fan in). Ops keep values bounded (tanh before exp, 1 + x^2 as a
 * denominator, sigmoid + 0.5 under log) and away from kinks (no relu/max), so central differences
 * stay accurate.
 */
function randomGraph(
  seed: number,
  steps: number,
  tracked: { pool?: Shaped[] } = {},
): (...xs: Node[]) => Node {
  return (...xs: Node[]) => {
    const random = mulberry32(seed);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
    const pool: Shaped[] = xs.map((node, i) => ({ node, shape: VARIABLE_SHAPES[i] }));
    const unary: ((x: Node) => Node)[] = [
      adj.tanh,
      adj.sigmoid,
      adj.neg,
      (x) => adj.exp(adj.tanh(x)),
      (x) => adj.log(adj.addByConst(adj.sigmoid(x), 0.5)),
      (x) => adj.sqrt(adj.addByConst(adj.pow(x, 2), 1)),
      (x) => adj.mulByConst(x, 0.7),
      (x) => x.add(0.3),
      (x) => x.div(2),
      (x) => adj.pow(adj.tanh(x), 3),
    ];
    const binary: ((a: Node, b: Node) => Node)[] = [
      adj.add,
      adj.sub,
      (a, b) => adj.mul(a, adj.tanh(b)),
      (a, b) => adj.div(a, adj.addByConst(adj.mul(b, b), 1)),
      (a, b) => a.mul(adj.sigmoid(b)).add(b),
    ];
    for (let step = 0; step < steps; step++) {
      const kind = random();
      const x = pick(pool);
      if (kind < 0.35) {
        pool.push({ node: pick(unary)(x.node), shape: x.shape });
      } else if (kind < 0.75) {
        const partners = pool.filter((p) => broadcasts(x.shape, p.shape) !== null);
        const y = pick(partners);
        pool.push({ node: pick(binary)(x.node, y.node), shape: broadcasts(x.shape, y.shape)! });
      } else if (kind < 0.9 && x.shape.length > 0) {
        const axis = Math.floor(random() * x.shape.length) - (random() < 0.5 ? x.shape.length : 0);
        const keepdims = random() < 0.5;
        const reduce = pick([adj.sum, adj.mean, adj.logsumexp]);
        const a = axis < 0 ? axis + x.shape.length : axis;
        const shape = keepdims
          ? x.shape.map((d, i) => (i === a ? 1 : d))
          : x.shape.filter((_, i) => i !== a);
        pool.push({ node: reduce(x.node, { axis, keepdims }), shape });
      } else if (x.shape.length === 2) {
        // Shape ops and matmul on matrices.
        const choice = random();
        if (choice < 0.4) {
          pool.push({ node: adj.transpose(x.node), shape: [x.shape[1], x.shape[0]] });
        } else if (choice < 0.7) {
          pool.push({
            node: adj.matmul(x.node, x.node, { transA: true }),
            shape: [x.shape[1], x.shape[1]],
          });
        } else {
          pool.push({ node: adj.broadcastTo(x.node, [2, ...x.shape]), shape: [2, ...x.shape] });
        }
      } else if (x.shape.length < 2) {
        // (3,) or (1,) go in as rows (axis 0), (2,) as a column (axis 1), 0-d anywhere.
        const axis = x.shape[0] === 2 ? 1 : 0;
        pool.push({ node: adj.broadcastTo(x.node, [2, 3], { axis }), shape: [2, 3] });
      } else {
        pool.push({ node: adj.tanh(x.node), shape: x.shape });
      }
    }
    tracked.pool = pool;
    // Output: the last node plus a sum of every node so far, so fan-out reaches the output often.
    const last = pool[pool.length - 1];
    const total = pool
      .slice(xs.length)
      .reduce((acc, p) => adj.add(acc, adj.mean(p.node)), adj.sum(last.node));
    return adj.add(last.node, total);
  };
}

describe.each(backendCases.map((b) => [b.name, b] as const))(
  "%s backend: random graphs against float64 finite differences",
  (_, backendCase) => {
    let active: adj.Backend | undefined;
    beforeAll(() => {
      active = backendCase.create();
      adj.setBackend(active);
    });
    afterAll(() => {
      adj.setBackend(adj.jsBackend);
    });

    const seeds = Array.from({ length: 24 }, (_, i) => 1000 + 17 * i);
    it.each(seeds)("seed %i", (seed) => {
      expect(adj.backend()).toBe(active);
      const random = mulberry32(seed * 7 + 1);
      const inputs = VARIABLE_SHAPES.map((shape) => randomTensor(random, shape));
      const build = randomGraph(seed, 6 + (seed % 5));
      // The graph has 20-60 nodes and reaches at least one variable.
      const xs = VARIABLE_SHAPES.map((_, i) => adj.variable(`x${i}`));
      const nodes = topoSort([build(...xs)]);
      expect(nodes.length).toBeGreaterThanOrEqual(20);
      expect(nodes.length).toBeLessThanOrEqual(60);
      expect(nodes.some((n) => xs.includes(n))).toBe(true);
      gradcheck(build, inputs, { seed, rtol: 1e-5, atol: 1e-6 });
    });

    it("the generator tracks the shapes the library computes", () => {
      for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
        const random = mulberry32(seed);
        const inputs = VARIABLE_SHAPES.map((shape) => randomTensor(random, shape));
        const tracked: { pool?: Shaped[] } = {};
        const xs = VARIABLE_SHAPES.map((_, i) => adj.variable(`x${i}`));
        randomGraph(seed, 30, tracked)(...xs);
        const pool = tracked.pool!;
        const values = new adj.Evaluator(pool.map((p) => p.node)).run(
          new Map(xs.map((x, i) => [x, inputs[i]])),
        );
        values.forEach((v, i) => {
          expect([...v.shape]).toEqual(pool[i].shape);
          expect(v.data.every(Number.isFinite)).toBe(true);
        });
      }
    });
  },
);

describe("random graphs: forward and reverse mode agree, hvp matches differences of the gradient", () => {
  const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    let total = 0;
    for (let k = 0; k < a.length; k++) total += a[k] * b[k];
    return total;
  };
  const seeds = Array.from({ length: 12 }, (_, i) => 2000 + 31 * i);
  it.each(seeds)(
    "seed %i: <u, J v> = <J^T u, v> to 1e-10; H v against central differences",
    (seed) => {
      const random = mulberry32(seed);
      const inputs = VARIABLE_SHAPES.map((shape) => randomTensor(random, shape));
      const vs = VARIABLE_SHAPES.map((shape) => randomTensor(random, shape));
      const xs = VARIABLE_SHAPES.map((_, i) => adj.variable(`x${i}`));
      const ts = VARIABLE_SHAPES.map((_, i) => adj.variable(`v${i}`));
      const y = randomGraph(seed, 6 + (seed % 5))(...xs);
      const feeds = new Map<Node, adj.Tensor>([
        ...xs.map((x, i): [Node, adj.Tensor] => [x, inputs[i]]),
        ...ts.map((t, i): [Node, adj.Tensor] => [t, vs[i]]),
      ]);
      const [value] = new adj.Evaluator([y]).run(feeds);
      const u = adj.variable("u");
      const uValue = randomTensor(random, value.shape);
      feeds.set(u, uValue);
      const [tangent] = adj.jvp([y], xs, ts);
      const back = adj.vjp(y, xs, u);
      const [t, ...gs] = new adj.Evaluator([tangent, ...back]).run(feeds);
      const left = dot(t.data, uValue.data);
      const right = gs.reduce((s, g, i) => s + dot(g.data, vs[i].data), 0);
      expect(Math.abs(left - right)).toBeLessThanOrEqual(1e-10 * Math.max(1, Math.abs(left)));
      // H v of f = <u, y> against central differences of its gradient along v.
      const f = adj.sum(adj.mul(u, y));
      const hv = adj.hvp(f, xs, ts);
      const grads = adj.gradients(f, xs);
      const eps = 1e-6;
      const at = (s: number) =>
        new adj.Evaluator(grads).run(
          new Map([
            ...feeds,
            ...xs.map((x, i): [Node, adj.Tensor] => [
              x,
              adj.tensor(
                Float64Array.from(inputs[i].data, (v, k) => v + s * vs[i].data[k]),
                {
                  shape: [...inputs[i].shape],
                },
              ),
            ]),
          ]),
        );
      const [plus, minus] = [at(eps), at(-eps)];
      new adj.Evaluator(hv).run(feeds).forEach((h, i) => {
        h.data.forEach((value, k) => {
          const fd = (plus[i].data[k] - minus[i].data[k]) / (2 * eps);
          expect(Math.abs(value - fd)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(fd)));
        });
      });
    },
  );
});
