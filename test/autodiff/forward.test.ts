/** Forward mode: jvp against finite differences for every op case, and its duality with vjp. */
import { describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";
import type { Node, Tensor } from "../../src/index.js";
import { mulberry32, randomTensor } from "../helpers/gradcheck.js";
import { opCases } from "../helpers/op-cases.js";

const EPS = 1e-6;

/** Values of `nodes` at `inputs` (fed to `xs`), with extra feeds. */
function evaluate(nodes: Node[], xs: Node[], inputs: Tensor[], extra: [Node, Tensor][] = []) {
  return new adj.Evaluator(nodes).run(
    new Map<Node, Tensor>([...xs.map((x, i): [Node, Tensor] => [x, inputs[i]]), ...extra]),
  );
}

/** x + s v, element-wise, as a new float64 tensor. */
function along(x: Tensor, v: Tensor, s: number): Tensor {
  return adj.tensor(
    Float64Array.from(x.data, (value, i) => value + s * v.data[i]),
    { shape: [...x.shape] },
  );
}

function expectClose(got: Tensor, want: Float64Array | number[], what: string, tol = 1e-6) {
  expect([...got.shape], what).toBeDefined();
  const scale = Math.max(1, ...Array.from(want, Math.abs));
  got.data.forEach((g, i) => {
    expect(Math.abs(g - want[i]), `${what} [${i}]: ${g} vs ${want[i]}`).toBeLessThanOrEqual(
      tol * scale,
    );
  });
}

describe.each(opCases)("$name", ({ build, inputs }) => {
  const random = mulberry32(99);
  const vs = inputs.map((t) => randomTensor(random, t.shape));
  const xs = inputs.map((_, i) => adj.variable(`x${i}`));
  const ts = inputs.map((_, i) => adj.variable(`v${i}`));
  const tangentFeeds = ts.map((t, i): [Node, Tensor] => [t, vs[i]]);
  const y = build(...xs);
  const [dy] = adj.jvp([y], xs, ts);

  it("jvp equals the directional finite difference (first order)", () => {
    const [value, tangent] = evaluate([y, dy], xs, inputs, tangentFeeds);
    expect(tangent.shape).toEqual(value.shape);
    const [plus] = evaluate(
      [y],
      xs,
      inputs.map((x, i) => along(x, vs[i], EPS)),
    );
    const [minus] = evaluate(
      [y],
      xs,
      inputs.map((x, i) => along(x, vs[i], -EPS)),
    );
    const fd = Float64Array.from(plus.data, (p, k) => (p - minus.data[k]) / (2 * EPS));
    expectClose(tangent, fd, "J v");
  });

  it("second order: jvp of the tangent equals its finite difference", () => {
    const [ddy] = adj.jvp([dy], xs, ts);
    const [second] = evaluate([ddy], xs, inputs, tangentFeeds);
    const [plus] = evaluate(
      [dy],
      xs,
      inputs.map((x, i) => along(x, vs[i], EPS)),
      tangentFeeds,
    );
    const [minus] = evaluate(
      [dy],
      xs,
      inputs.map((x, i) => along(x, vs[i], -EPS)),
      tangentFeeds,
    );
    const fd = Float64Array.from(plus.data, (p, k) => (p - minus.data[k]) / (2 * EPS));
    expectClose(second, fd, "v^T H v", 1e-5);
  });

  it("<u, J v> = <J^T u, v> to 1e-10 (forward and reverse agree)", () => {
    const [value] = evaluate([y], xs, inputs);
    const u = adj.variable("u");
    const uValue = randomTensor(mulberry32(5), value.shape);
    const back = adj.vjp(y, xs, u);
    const results = evaluate([dy, ...back], xs, inputs, [...tangentFeeds, [u, uValue]]);
    const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
      let total = 0;
      for (let k = 0; k < a.length; k++) total += a[k] * b[k];
      return total;
    };
    const left = dot(results[0].data, uValue.data);
    const right = results.slice(1).reduce((s, g, i) => s + dot(g.data, vs[i].data), 0);
    expect(Math.abs(left - right)).toBeLessThanOrEqual(1e-10 * Math.max(1, Math.abs(left)));
  });
});

describe("the classic cases in forward mode, hvp, and what builds nothing", () => {
  it("x1*x2 + x1: seeding x1 with 1 and x2 with 0 gives dy/dx1 = x2 + 1, one pass per input", () => {
    const x1 = adj.variable("x1");
    const x2 = adj.variable("x2");
    const y = x1.mul(x2).add(x1);
    const one = adj.onesLike(x1);
    const [d1] = adj.jvp([y], [x1], [one]);
    const [d2] = adj.jvp([y], [x2], [adj.onesLike(x2)]);
    const [v1, v2] = new adj.Evaluator([d1, d2]).run({
      x1: adj.tensor([2, 3]),
      x2: adj.tensor([5, 7]),
    });
    expect(v1.toArray()).toEqual([6, 8]);
    expect(v2.toArray()).toEqual([2, 3]);
  });

  it("hvp of sum(x^3) is 6 x v, and forward-over-reverse equals reverse-over-reverse", () => {
    const x = adj.variable("x");
    const v = adj.variable("v");
    const f = adj.sum(x.mul(x).mul(x));
    const [hv] = adj.hvp(f, [x], [v]);
    const [g] = adj.gradients(f, [x]);
    const [rr] = adj.gradients(adj.sum(g.mul(v)), [x]); // reverse over reverse
    const [a, b] = new adj.Evaluator([hv, rr]).run({
      x: adj.tensor([1, -2, 0.5]),
      v: adj.tensor([3, 1, 2]),
    });
    expect(a.toArray()).toEqual([18, -12, 6]);
    expect(b.toArray()).toEqual(a.toArray());
  });

  it("an output that does not depend on the inputs gets zerosLike; nothing else is built", () => {
    const x = adj.variable("x");
    const w = adj.variable("w");
    const [dw] = adj.jvp([adj.exp(w)], [x], [adj.onesLike(x)]);
    expect(dw.op.name).toBe("zerosLike");
    expect(() => adj.jvp([x], [x], [])).toThrow(
      "jvp(outputs, inputs, tangents): 1 inputs but 0 tangents",
    );
  });
});

describe("jacobian", () => {
  it("forward (one pass per input element) and reverse (one per output element) equal the finite-difference Jacobian", () => {
    const x = adj.variable("x", { shape: [3], dtype: "float64" });
    const W = adj.constant(
      adj.tensor([
        [0.5, -1, 2],
        [1.5, 0.3, -0.7],
      ]),
    );
    const y = adj.tanh(adj.matmul(W, adj.reshape(x, [3, 1]))).mul(adj.sum(x)); // shape [2, 1]
    const fwd = adj.jacobian(y, x, { mode: "fwd" });
    const rev = adj.jacobian(y, x, { mode: "rev" });
    expect(fwd.shape).toEqual([2, 1, 3]);
    const x0 = adj.tensor([0.2, -0.4, 0.9]);
    const [jf, jr] = new adj.Evaluator([fwd, rev]).run({ x: x0 });
    expect(jf.shape).toEqual([2, 1, 3]);
    const f = (v: number[]) => new adj.Evaluator([y]).run({ x: adj.tensor(v) })[0].data;
    for (let j = 0; j < 3; j++) {
      const plus = [...x0.data];
      const minus = [...x0.data];
      plus[j] += 1e-6;
      minus[j] -= 1e-6;
      const [fp, fm] = [f(plus), f(minus)];
      for (let i = 0; i < 2; i++) {
        const fd = (fp[i] - fm[i]) / 2e-6;
        expect(jf.data[i * 3 + j]).toBeCloseTo(fd, 8);
        expect(jr.data[i * 3 + j]).toBeCloseTo(fd, 8);
      }
    }
  });

  it("needs known shapes, and says which", () => {
    const x = adj.variable("x");
    expect(() => adj.jacobian(adj.tanh(x), x)).toThrow(
      "jacobian: needs known, non-empty shapes; output tanh(x) [?] (declare them with variable(name, { shape }))",
    );
  });
});
