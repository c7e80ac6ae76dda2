/** Custom ops: defineOp with a check at definition, apply, and forward mode from the gradient. */
import { expect, it } from "vitest";
import * as adj from "../../src/index.js";

const x0 = adj.tensor([[0.3, -1.2, 2]]);

it("a correct custom op passes its check, differentiates, and gets forward mode by transposition", () => {
  const cube = adj.defineOp(
    {
      name: "testCube",
      compute: (_node, [x]) => adj.backend().binary("mul", adj.backend().binary("mul", x, x), x),
      gradient: (node, g) => {
        const x = node.inputs[0];
        return [adj.mul(g, adj.mulByConst(adj.mul(x, x), 3))];
      },
    },
    { check: [[x0]] },
  );
  const x = adj.variable("x");
  const y = adj.apply(cube, [x]);
  expect(y.name).toBe("testCube(x)");
  expect(y.shape).toBe(null); // no type rule: unknown until it runs
  const [dx] = adj.gradients(adj.sum(y), [x]);
  const [tangent] = adj.jvp([y], [x], [adj.onesLike(x)]);
  const [g, t] = new adj.Evaluator([dx, tangent]).run({ x: x0 });
  const expected = [...x0.data].map((v) => 3 * v * v);
  [...g.data].forEach((v, i) => expect(v).toBeCloseTo(expected[i], 12));
  [...t.data].forEach((v, i) => expect(v).toBeCloseTo(expected[i], 12));
});

it("a wrong rule is refused when the op is defined, naming it", () => {
  expect(() =>
    adj.defineOp(
      {
        name: "testWrongCube",
        compute: (_node, [x]) => adj.backend().binary("mul", adj.backend().binary("mul", x, x), x),
        gradient: (node, g) => [adj.mul(g, adj.mulByConst(node.inputs[0], 3))], // 3x, not 3x^2
      },
      { check: [[x0]] },
    ),
  ).toThrow(/^testWrongCube\(x0\): gradient rule wrong for input 0: max abs error/);
});

it("a refused op leaves its name free for the corrected one", () => {
  const spec = {
    name: "testRetry",
    compute: (_node: adj.Node, [x]: adj.Tensor[]) => adj.backend().unary("exp", x),
    gradient: (node: adj.Node, g: adj.Node) => [adj.mul(g, node.inputs[0])],
  };
  expect(() => adj.defineOp(spec, { check: [[x0]] })).toThrow(adj.GradientCheckError);
  const fixed = adj.defineOp(
    { ...spec, gradient: (node, g) => [adj.mul(g, node)] },
    { check: [[x0]] },
  );
  expect(fixed.name).toBe("testRetry");
});
