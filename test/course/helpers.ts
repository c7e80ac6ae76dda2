/** The course's test helpers, in adjoint's words: `check_evaluator_output` and `check_compute_output`. */
import { expect } from "vitest";
import { Evaluator, tensor, type Node, type Tensor } from "../../src/index.js";

/** A nested array of numbers, as the course writes `torch.tensor(...)`. */
export type Nested = number | Nested[];

/** `torch.tensor(values)`: float32, as torch's default dtype. */
export const t = (values: Nested): Tensor => tensor(values as number[], { dtype: "float32" });

/** Shape of a nested array (what torch.tensor infers). */
function shapeOf(values: Nested): number[] {
  return Array.isArray(values) ? [values.length, ...shapeOf(values[0])] : [];
}

/** `torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)`, shapes included. */
export function assertClose(actual: Tensor, expected: Nested): void {
  expect(actual.shape).toEqual(shapeOf(expected));
  const want = [expected].flat(Infinity as 1) as number[];
  [...actual.data].forEach((value, i) => {
    const tolerance = 1e-4 + 1e-4 * Math.abs(want[i]);
    if (!(Math.abs(value - want[i]) <= tolerance)) {
      expect.fail(`element ${i}: got ${value}, expected ${want[i]} (atol 1e-4, rtol 1e-4)`);
    }
  });
}

/** The course's `check_evaluator_output`: runs the evaluator, compares each output. */
export function checkEvaluatorOutput(
  evaluator: Evaluator,
  inputValues: Map<Node, Tensor>,
  expectedOutputs: Nested[],
): void {
  const outputValues = evaluator.run(inputValues);
  expect(outputValues.length).toBe(expectedOutputs.length);
  outputValues.forEach((value, i) => assertClose(value, expectedOutputs[i]));
}

/** The course's `check_compute_output`: `node.op.compute(node, input_values)` compared. */
export function checkComputeOutput(node: Node, inputValues: Tensor[], expected: Nested): void {
  assertClose(node.op.compute(node, inputValues), expected);
}
