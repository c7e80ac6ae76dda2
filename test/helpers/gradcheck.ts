/**
 * The one gradient checker (PyTensor's verify_grad, autograd's check_grads): a random projection
 * u of the output, L = sum(u * y), gradients() against float64 central differences, gradient
 * shapes against input shapes, then the same on the gradient graph for second order.
 */
import { assert } from "vitest";
import {
  Evaluator,
  gradients,
  mul,
  sum,
  add,
  tensor,
  variable,
  type Node,
  type Tensor,
} from "../../src/index.js";

/** mulberry32: a tiny seeded PRNG returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Number of elements of a shape. */
export function sizeOfShape(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

/** A float64 tensor of `shape` with entries uniform in [lo, hi). */
export function randomTensor(
  random: () => number,
  shape: readonly number[],
  lo = -1,
  hi = 1,
): Tensor {
  const data = new Float64Array(sizeOfShape(shape));
  for (let i = 0; i < data.length; i++) data[i] = lo + (hi - lo) * random();
  return tensor(data, { shape });
}

/**
 * A float64 tensor with entries of magnitude in [lo, hi) and random sign: values kept away from
 * zero, for kinks (relu) and poles (x^-1).
 */
export function awayFromZero(
  random: () => number,
  shape: readonly number[],
  lo = 0.2,
  hi = 1.5,
): Tensor {
  const t = randomTensor(random, shape, lo, hi);
  for (let i = 0; i < t.size; i++) if (random() < 0.5) t.data[i] = -t.data[i];
  return t;
}

/** Options of {@link gradcheck}. */
export interface GradCheckOptions {
  /** Seed of the random projections u and v. */
  seed?: number;
  /** Central-difference step. */
  eps?: number;
  /** Relative tolerance. */
  rtol?: number;
  /** Absolute floor of the tolerance. */
  atol?: number;
  /** Also check the gradient graph's own gradients (default true). */
  secondOrder?: boolean;
}

/** What the checker computed, for further assertions by the caller. */
export interface GradCheckResult {
  value: Tensor;
  grads: Tensor[];
  secondGrads: Tensor[] | null;
}

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(",")}]`;
}

function copy(t: Tensor): Tensor {
  return tensor(Float64Array.from(t.data), { shape: t.shape });
}

/** Asserts |actual - expected| <= atol + rtol * max(|actual|, |expected|) element-wise. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what: string,
  rtol = 1e-5,
  atol = 1e-7,
): void {
  assert.strictEqual(actual.length, expected.length, `${what}: length`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const ok =
      Number.isFinite(a) && Math.abs(a - e) <= atol + rtol * Math.max(Math.abs(a), Math.abs(e));
    if (!ok) {
      const excess = Number.isFinite(a) ? Math.abs(a - e) : Infinity;
      if (worst < 0 || excess > worstExcess) {
        worst = i;
        worstExcess = excess;
      }
    }
  }
  if (worst >= 0) {
    assert.fail(
      `${what}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} ` +
        `(actual [${Array.from(actual).join(", ")}], expected [${Array.from(expected).join(", ")}])`,
    );
  }
}

/** dF/dinputs by float64 central differences of a scalar function of the inputs. */
function centralDifferences(
  scalarOf: (inputs: Tensor[]) => number,
  inputs: readonly Tensor[],
  eps: number,
): Float64Array[] {
  const work = inputs.map(copy);
  return work.map((t) => {
    const grad = new Float64Array(t.size);
    for (let j = 0; j < t.size; j++) {
      const original = t.data[j];
      t.data[j] = original + eps;
      const plus = scalarOf(work);
      t.data[j] = original - eps;
      const minus = scalarOf(work);
      t.data[j] = original;
      grad[j] = (plus - minus) / (2 * eps);
    }
    return grad;
  });
}

/**
 * Checks the gradients of `build(...variables)` at `inputs` (float64) against central differences,
 * to first and (by default) second order; throws an assertion error naming the first mismatch.
 * Example: `gradcheck((a, b) => mul(a, b), [randomTensor(r, [2, 3]), randomTensor(r, [3])])`.
 */
export function gradcheck(
  build: (...inputs: Node[]) => Node,
  inputs: readonly Tensor[],
  options: GradCheckOptions = {},
): GradCheckResult {
  const { seed = 1234, eps = 1e-6, rtol = 1e-5, atol = 1e-7, secondOrder = true } = options;
  const random = mulberry32(seed);
  for (const [i, t] of inputs.entries()) {
    assert.strictEqual(t.dtype, "float64", `gradcheck: input ${i} must be float64`);
  }
  const xs = inputs.map((_, i) => variable(`x${i}`));
  const y = build(...xs);
  const feedsOf = (values: readonly Tensor[], extra: [Node, Tensor][] = []) =>
    new Map<Node, Tensor>([...xs.map((x, i): [Node, Tensor] => [x, values[i]]), ...extra]);

  const [value] = new Evaluator([y]).run(feedsOf(inputs));

  // First order: L = sum(u * y), so dL/dx is the vector-Jacobian product u^T J.
  const u = variable("u");
  const uValue = randomTensor(random, value.shape);
  const loss = sum(mul(u, y));
  const lossEval = new Evaluator([loss]);
  const lossAt = (values: Tensor[]) => lossEval.run(feedsOf(values, [[u, uValue]]))[0].item();
  const gradNodes = gradients(loss, xs);
  assert.strictEqual(gradNodes.length, xs.length, "gradients(): one gradient per input");
  const grads = new Evaluator(gradNodes).run(feedsOf(inputs, [[u, uValue]]));
  const numeric = centralDifferences(lossAt, inputs, eps);
  grads.forEach((g, i) => {
    assert.deepEqual(
      [...g.shape],
      [...inputs[i].shape],
      `gradient ${i} has shape ${fmtShape(g.shape)}, input has ${fmtShape(inputs[i].shape)}`,
    );
    assertClose(g.data, numeric[i], `first-order gradient wrt input ${i}`, rtol, atol);
  });
  if (!secondOrder) return { value, grads, secondGrads: null };

  // Second order: M = sum_i sum(v_i * dL/dx_i), differentiated through the gradient graph.
  const vs = gradNodes.map((_, i) => variable(`v${i}`));
  const vValues = inputs.map((t) => randomTensor(random, t.shape));
  const projected = gradNodes
    .map((g, i) => sum(mul(vs[i], g)))
    .reduce((total, term) => add(total, term));
  const extra: [Node, Tensor][] = [
    [u, uValue],
    ...vs.map((v, i): [Node, Tensor] => [v, vValues[i]]),
  ];
  const projectedEval = new Evaluator([projected]);
  const projectedAt = (values: Tensor[]) => projectedEval.run(feedsOf(values, extra))[0].item();
  const secondNodes = gradients(projected, xs);
  const secondGrads = new Evaluator(secondNodes).run(feedsOf(inputs, extra));
  const numericSecond = centralDifferences(projectedAt, inputs, eps);
  secondGrads.forEach((g, i) => {
    assert.deepEqual(
      [...g.shape],
      [...inputs[i].shape],
      `second-order gradient ${i} has shape ${fmtShape(g.shape)}, input has ${fmtShape(inputs[i].shape)}`,
    );
    assertClose(g.data, numericSecond[i], `second-order gradient wrt input ${i}`, rtol, atol);
  });
  return { value, grads, secondGrads };
}
