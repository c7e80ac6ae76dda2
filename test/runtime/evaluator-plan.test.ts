/** Evaluator's planned slots: fed intermediates, runs after a failed run, repeated outputs. */
import { describe, expect, it } from "vitest";
import {
  add,
  Evaluator,
  exp,
  mul,
  sum,
  tensor,
  variable,
  type Node,
  type Tensor,
} from "../../src/index.js";

describe("Evaluator slots", () => {
  it("a fed intermediate node replaces its computation", () => {
    const x = variable("x");
    const e = exp(x);
    const y = add(e, x);
    const [v] = new Evaluator([y]).run(
      new Map<Node, Tensor>([
        [x, tensor([1, 2])],
        [e, tensor([10, 20])],
      ]),
    );
    expect(v.toArray()).toEqual([11, 22]);
  });

  it("a run that throws leaves the evaluator ready for the next run", () => {
    const a = variable("a");
    const b = variable("b");
    const evaluator = new Evaluator([mul(a, b), sum(a)]);
    expect(() =>
      evaluator.run(
        new Map([
          [a, tensor([1, 2])],
          [b, tensor([1, 2, 3])],
        ]),
      ),
    ).toThrow("mul(a, b): shapes [2] and [3] do not broadcast");
    expect(() => evaluator.run(new Map([[a, tensor([1, 2])]]))).toThrow(
      'Evaluator.run: missing feed for variable "b"',
    );
    const [p, s] = evaluator.run(
      new Map([
        [a, tensor([1, 2])],
        [b, tensor([3, 4])],
      ]),
    );
    expect([p.toArray(), s.toArray()]).toEqual([[3, 8], 3]);
  });

  it("an output listed twice, and a variable as an output, come back in order", () => {
    const x = variable("x");
    const y = exp(x);
    const xv = tensor([0]);
    const [a, b, c] = new Evaluator([y, x, y]).run(new Map([[x, xv]]));
    expect(a).toBe(c);
    expect(b).toBe(xv);
    expect(a.toArray()).toEqual([1]);
  });
});
