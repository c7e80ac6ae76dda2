/**
 * checkGradients(): is my gradient right? Central differences along random directions for a
 * whole graph, and, when they disagree, the same check node by node to name the culprit op.
 */
import {
  checkNodeList,
  checkOptions,
  isPlaceholder,
  label,
  Node,
  variable,
} from "../graph/node.js";
import { typeName } from "../tensor/options.js";
import { mul } from "../graph/ops/elementwise.js";
import { sum } from "../graph/ops/reduce.js";
import { topoSort } from "../graph/topo.js";
import { Evaluator, feedMap } from "../runtime/evaluator.js";
import { Tensor, tensor } from "../tensor/tensor.js";
import { jvp } from "./forward.js";
import { gradients } from "./gradients.js";

/** Options of {@link checkGradients}. */
export interface CheckOptions {
  /** Which modes to check (default both): reverse <u, J v> and forward J v. */
  modes?: ("fwd" | "rev")[];
  /** 2 also checks the gradient graph itself (second derivatives). Default 1. */
  order?: 1 | 2;
  /** Finite-difference step (default 1e-6, for float64 feeds). */
  eps?: number;
  atol?: number;
  rtol?: number;
  /** Seeds the random directions (default 0). */
  seed?: number;
}

/** The options object of checkGradients, every key and value checked. */
function checkCheckOptions(call: string, options: CheckOptions): CheckOptions {
  const example = 'checkGradients(y, feeds, [x], { modes: ["rev"], order: 2 })';
  const checked = checkOptions(
    call,
    options,
    ["modes", "order", "eps", "atol", "rtol", "seed"],
    example,
  );
  const { modes, order, eps, atol, rtol, seed } = checked;
  const fail = (what: string): never => {
    throw new RangeError(`${call}: ${what}, as in ${example}`);
  };
  if (modes !== undefined) {
    if (
      !Array.isArray(modes) ||
      modes.length === 0 ||
      modes.some((m) => m !== "fwd" && m !== "rev")
    ) {
      fail(`modes must be a non-empty array of "fwd" and "rev", got ${JSON.stringify(modes)}`);
    }
  }
  if (order !== undefined && order !== 1 && order !== 2)
    fail(`order must be 1 or 2, got ${JSON.stringify(order)}`);
  if (eps !== undefined && !(typeof eps === "number" && Number.isFinite(eps) && eps > 0)) {
    fail(`eps must be a positive finite number, got ${String(eps)}`);
  }
  for (const [name, value] of [
    ["atol", atol],
    ["rtol", rtol],
  ] as const) {
    if (
      value !== undefined &&
      !(typeof value === "number" && Number.isFinite(value) && value >= 0)
    ) {
      fail(`${name} must be a non-negative finite number, got ${String(value)}`);
    }
  }
  if (seed !== undefined && !Number.isSafeInteger(seed))
    fail(`seed must be an integer, got ${String(seed)}`);
  return checked;
}

/** One line of the report: an input, a mode, and how far the derivative was from differences. */
export interface CheckEntry {
  input: string;
  mode: "fwd" | "rev";
  order: 1 | 2;
  maxAbsError: number;
  maxRelError: number;
}

/** A gradient that disagrees with finite differences; the message names the op at fault. */
export class GradientCheckError extends Error {
  /** Creates the error with the report so far. */
  constructor(
    message: string,
    readonly report: CheckEntry[],
  ) {
    super(message);
    this.name = "GradientCheckError";
  }
}

/**
 * Checks the derivatives of `output` with respect to `wrt` at `feeds` against central
 * differences along random directions (as JAX's check_grads): reverse mode as <u, J v> against
 * the difference of <u, y>, forward mode as J v against the directional difference. Returns the
 * report; on a failure it checks every node on the way, at its actual input values (its
 * gradient and forward rules against differences of its compute), and throws a
 * GradientCheckError naming the first wrong rule: `myExp(Z): gradient rule wrong for input 0:
 * max abs error 0.31 at element 3 (expected 0.630, got 0.941)`. Feed float64 values.
 * Example: `checkGradients(loss, new Map([[W, w], [X, x]]), [W])`.
 */
export function checkGradients(
  output: Node,
  feedValues: ReadonlyMap<Node, Tensor> | Readonly<Record<string, Tensor>>,
  wrt: readonly Node[],
  options: CheckOptions = {},
): CheckEntry[] {
  const call = "checkGradients(output, feeds, wrt, options)";
  if (!(output instanceof Node))
    throw new TypeError(`${call}: output must be a Node, got ${typeName(output)}`);
  checkNodeList(call, "wrt", wrt, "checkGradients(loss, feeds, [W, b])");
  const feeds = feedMap("checkGradients", topoSort([output]).filter(isPlaceholder), feedValues);
  const {
    modes = ["fwd", "rev"],
    order = 1,
    eps = 1e-6,
    atol = 1e-5,
    rtol = 1e-4,
  } = checkCheckOptions(call, options);
  for (const x of wrt) {
    const value = feeds.get(x);
    if (value === undefined) {
      throw new Error(
        `checkGradients: wrt "${x.name}" has no value in feeds: derivatives are checked with respect to fed variables`,
      );
    }
  }
  for (const [node, value] of feeds) {
    if (value instanceof Tensor && value.dtype !== "float64") {
      throw new TypeError(
        `checkGradients: the feed for "${node.name}" is ${value.dtype}: finite differences need float64 feeds (value.clone({ dtype: "float64" })), or a float32 round-off is taken for a wrong rule`,
      );
    }
  }
  const random = seeded(options.seed ?? 0);
  const report: CheckEntry[] = [];
  /** Checks `y` at `feeds` input by input; returns y's value there. */
  const check = (y: Node, depth: 1 | 2, feeds: ReadonlyMap<Node, Tensor>): Tensor => {
    const evaluator = new Evaluator([y]);
    const [value] = evaluator.run(feeds);
    const u = randomLike(value, random);
    // One input at a time, the others held still: the report says which input is off.
    wrt.forEach((x) => {
      const v = randomLike(feeds.get(x)!, random);
      const shifted = (s: number) => new Map([...feeds, [x, along(feeds.get(x)!, v, s)]]);
      const [plus] = evaluator.run(shifted(eps));
      const [minus] = evaluator.run(shifted(-eps));
      const fd = Float64Array.from(plus.data, (p, k) => (p - minus.data[k]) / (2 * eps));
      for (const mode of modes) {
        let got: Float64Array;
        let want: Float64Array;
        if (mode === "rev") {
          const uNode = variable("u");
          const [g] = gradients(sum(mul(uNode, y)), [x]);
          const [gValue] = new Evaluator([g]).run(new Map([...feeds, [uNode, u]]));
          got = Float64Array.of(dot(gValue.data, v.data));
          want = Float64Array.of(dot(fd, u.data));
        } else {
          const vNode = variable(`d${x.name}`);
          const [tangent] = jvp([y], [x], [vNode]);
          const [t] = new Evaluator([tangent]).run(new Map([...feeds, [vNode, v]]));
          got = Float64Array.from(t.data);
          want = fd;
        }
        const { maxAbs, maxRel, ok } = compare(got, want, atol, rtol);
        report.push({
          input: x.name,
          mode,
          order: depth,
          maxAbsError: maxAbs,
          maxRelError: maxRel,
        });
        if (!ok) {
          const culprit = findCulprit(y, feeds, eps, atol, rtol, random);
          throw new GradientCheckError(
            culprit ??
              `${label(y)}: ${mode === "rev" ? "reverse" : "forward"} mode for ${x.name} (order ${depth}) disagrees with finite differences: max abs error ${fmt(maxAbs)} (no single op's rule was found wrong at its inputs)`,
            report,
          );
        }
      }
    });
    return value;
  };
  const value = check(output, 1, feeds);
  if (order === 2) {
    // Second order: the gradient graph, checked as a function in its own right.
    const uNode = variable("u2");
    const extended = new Map([...feeds, [uNode, randomLike(value, random)]]);
    for (const g of gradients(sum(mul(uNode, output)), wrt)) check(g, 2, extended);
  }
  return report;
}

/**
 * Every node between the feeds and `y`, checked on its own at its actual input values: its
 * gradient rule against per-element differences of its compute (a few elements of each input),
 * and its forward rule along a random direction. The first wrong one, as a message; else null.
 */
function findCulprit(
  y: Node,
  feeds: ReadonlyMap<Node, Tensor>,
  eps: number,
  atol: number,
  rtol: number,
  random: () => number,
): string | null {
  const all = topoSort([y]);
  const values = new Evaluator(all).run(feeds);
  const valueOf = new Map(all.map((n, i) => [n, values[i]]));
  for (const node of all.filter((n) => !isPlaceholder(n) && !feeds.has(n))) {
    const inputs = node.inputs.map((_, i) => variable(`in${i}`));
    const local = new Node(inputs, node.op, node.attrs, node.name);
    const inputValues = node.inputs.map((n) => valueOf.get(n)!);
    const at = (vals: Tensor[]) => new Map(inputs.map((v, i): [Node, Tensor] => [v, vals[i]]));
    const localEvaluator = new Evaluator([local]);
    const [out] = localEvaluator.run(at(inputValues));
    const u = randomLike(out, random);
    const uNode = variable("u");
    const loss = sum(mul(uNode, local));
    const grads = gradients(loss, inputs);
    const gradValues = new Evaluator(grads).run(new Map([...at(inputValues), [uNode, u]]));
    const lossEvaluator = new Evaluator([loss]);
    const lossAt = (vals: Tensor[]) =>
      lossEvaluator.run(new Map([...at(vals), [uNode, u]]))[0].data[0];
    for (let i = 0; i < inputs.length; i++) {
      const x = inputValues[i];
      // Piecewise-constant rules (step, greater, a mask) are fine where the differences are 0.
      const elements = sample(x.size, 8, random);
      for (const k of elements) {
        const bump = (s: number) => inputValues.map((t, j) => (j === i ? bumped(t, k, s) : t));
        const expected = (lossAt(bump(eps)) - lossAt(bump(-eps))) / (2 * eps);
        const got = gradValues[i].data[k];
        const error = Math.abs(got - expected);
        if (error > atol + rtol * Math.abs(expected)) {
          return `${node.op.name}(${node.inputs.map(label).join(", ")}): gradient rule wrong for input ${i}: max abs error ${fmt(error)} at element ${k} (expected ${fmt(expected)}, got ${fmt(got)})`;
        }
      }
    }
    // The forward rule, along one random direction for all inputs together.
    const vs = inputValues.map((t) => randomLike(t, random));
    const vNodes = inputs.map((_, i) => variable(`v${i}`));
    const [tangent] = jvp([local], inputs, vNodes);
    const [t] = new Evaluator([tangent]).run(
      new Map([...at(inputValues), ...vNodes.map((v, i): [Node, Tensor] => [v, vs[i]])]),
    );
    const [plus] = localEvaluator.run(at(inputValues.map((x, i) => along(x, vs[i], eps))));
    const [minus] = localEvaluator.run(at(inputValues.map((x, i) => along(x, vs[i], -eps))));
    for (let k = 0; k < t.size; k++) {
      const expected = (plus.data[k] - minus.data[k]) / (2 * eps);
      const error = Math.abs(t.data[k] - expected);
      if (error > atol + rtol * Math.abs(expected)) {
        return `${node.op.name}(${node.inputs.map(label).join(", ")}): forward rule wrong: max abs error ${fmt(error)} at element ${k} (expected ${fmt(expected)}, got ${fmt(t.data[k])})`;
      }
    }
  }
  return null;
}

function compare(got: Float64Array, want: Float64Array, atol: number, rtol: number) {
  let maxAbs = 0;
  let maxRel = 0;
  let ok = true;
  for (let k = 0; k < got.length; k++) {
    const error = Math.abs(got[k] - want[k]);
    maxAbs = Math.max(maxAbs, error);
    maxRel = Math.max(maxRel, error / Math.max(Math.abs(want[k]), 1e-300));
    if (!(error <= atol + rtol * Math.abs(want[k]))) ok = false;
  }
  return { maxAbs, maxRel, ok };
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let total = 0;
  for (let k = 0; k < a.length; k++) total += a[k] * b[k];
  return total;
}

const fmt = (v: number) =>
  Math.abs(v) >= 1e-3 && Math.abs(v) < 1e4 ? v.toPrecision(3) : v.toExponential(2);

/** mulberry32: directions reproducible from a seed. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A float64 copy of x's values mapped element by element, with x's shape and dtype. */
function mapped(x: Tensor, f: (value: number, i: number) => number): Tensor {
  return tensor(Float64Array.from(x.data, f), { shape: [...x.shape], dtype: x.dtype });
}

const randomLike = (t: Tensor, random: () => number) => mapped(t, () => random() * 2 - 1);
const along = (x: Tensor, v: Tensor, s: number) => mapped(x, (value, i) => value + s * v.data[i]);
const bumped = (x: Tensor, k: number, s: number) =>
  mapped(x, (value, i) => (i === k ? value + s : value));

/** Up to `count` distinct element indices of `size`, the same for a seed. */
function sample(size: number, count: number, random: () => number): number[] {
  if (size <= count) return Array.from({ length: size }, (_, i) => i);
  const picked = new Set<number>();
  while (picked.size < count) picked.add(Math.floor(random() * size));
  return [...picked].sort((a, b) => a - b);
}
