/**
 * The Evaluator over the buffer pool: results bitwise equal to runs without it (op-case table and
 * random graphs, both dtypes, every backend), outputs never overwritten until recycled, feeds and
 * aliases never pooled, and no typed array allocated per step once warm.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";
import type { DType, Node, Op, Tensor } from "../../src/index.js";
import { allocateArray, clearPool, setPooling, tensorStats } from "../../src/tensor/tensor.js";
import { loadDigits } from "../../src/train/data.js";
import { inProcessEngine } from "../../src/train/parallel/engine.js";
import { initParams, modelSpec, type ModelSpec } from "../../src/train/models.js";
import { Rng } from "../../src/train/random.js";
import { paramsHash } from "../../src/train/serialize.js";
import { currentParams, runStep } from "../../src/train/parallel/state.js";
import { prepareTraining } from "../../src/train/trainer.js";
import { backendCases } from "../helpers/backends.js";
import { mulberry32, randomTensor } from "../helpers/gradcheck.js";
import { opCases } from "../helpers/op-cases.js";

afterEach(() => {
  setPooling(true);
});

/** The exact bytes of a tensor's values, with its shape. */
function bits(t: Tensor): string {
  const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return `${t.dtype}[${t.shape.join(",")}]:${bytes.toString("hex")}`;
}

/** An op that returns its input itself: the loosest aliasing the Op contract allows. */
const identityOp: Op = {
  name: "poolTestIdentity",
  type: ([x]) => x,
  compute: (_node, [v]) => v,
  gradient: (_node, g) => [g],
};
const identity = (x: Node): Node => new adj.Node([x], identityOp, {}, `id(${x.name})`);

/** The value, first and second-order gradients of `y` (the graphs' shared output list). */
function withGradients(y: Node, xs: Node[], extra: Node[] = []): Node[] {
  const first = adj.gradients(adj.sum(y), xs);
  const second = adj.gradients(adj.sum(first[0]), xs);
  return [y, ...first, ...second, ...extra];
}

/**
 * Runs `outputs` without the pool (the reference), then with it: two runs of one Evaluator (the
 * second on arrays the first released), a recycle of the first run's outputs and a third run, and
 * checks every run bitwise against the reference, earlier outputs untouched, feeds unmodified.
 */
function checkPooled(outputs: Node[], feeds: Map<Node, Tensor>): void {
  const feedBits = [...feeds.values()].map(bits);
  setPooling(false);
  const reference = new adj.Evaluator(outputs).run(feeds).map(bits);
  setPooling(true);
  const evaluator = new adj.Evaluator(outputs);
  const first = evaluator.run(feeds);
  expect(first.map(bits)).toEqual(reference);
  const second = evaluator.run(feeds);
  expect(second.map(bits)).toEqual(reference);
  expect(first.map(bits)).toEqual(reference);
  evaluator.recycle(first);
  const third = evaluator.run(feeds);
  expect(third.map(bits)).toEqual(reference);
  expect(second.map(bits)).toEqual(reference);
  // A second evaluator over the same pool, interleaved.
  const other = new adj.Evaluator(outputs);
  const fourth = other.run(feeds);
  evaluator.recycle(third);
  expect(other.run(feeds).map(bits)).toEqual(reference);
  expect(fourth.map(bits)).toEqual(reference);
  expect(second.map(bits)).toEqual(reference);
  expect([...feeds.values()].map(bits)).toEqual(feedBits);
}

const VARIABLE_SHAPES = [[2, 3], [3], [2, 1]];

function broadcasts(a: number[], b: number[]): number[] | null {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const x = a[a.length - rank + i] ?? 1;
    const y = b[b.length - rank + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return null;
    out.push(Math.max(x, y));
  }
  return out;
}

/**
 * A seeded random DAG with its shapes tracked, rich in aliasing: reshape and expandDims views,
 * the identity op, sumLike/reshapeLike in the gradients, plus max (maxMask), relu and matmul.
 * Returns the output list: value, gradients and a few intermediates (outputs that alias).
 */
function randomGraph(seed: number, xs: Node[]): Node[] {
  const random = mulberry32(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const pool: { node: Node; shape: number[] }[] = xs.map((node, i) => ({
    node,
    shape: VARIABLE_SHAPES[i],
  }));
  const unary: ((x: Node) => Node)[] = [
    adj.tanh,
    adj.sigmoid,
    adj.neg,
    adj.relu,
    identity,
    (x) => adj.exp(adj.tanh(x)),
    (x) => adj.mulByConst(x, 0.7),
  ];
  const binary: ((a: Node, b: Node) => Node)[] = [adj.add, adj.sub, adj.mul];
  for (let step = 0; step < 12; step++) {
    const kind = random();
    const x = pick(pool);
    const rank = x.shape.length;
    if (kind < 0.3) {
      pool.push({ node: pick(unary)(x.node), shape: x.shape });
    } else if (kind < 0.6) {
      const partners = pool.filter((p) => broadcasts(x.shape, p.shape) !== null);
      const y = pick(partners);
      pool.push({ node: pick(binary)(x.node, y.node), shape: broadcasts(x.shape, y.shape)! });
    } else if (kind < 0.72 && rank > 0) {
      const axis = Math.floor(random() * rank);
      const keepdims = random() < 0.5;
      const reduce = pick([adj.sum, adj.mean, adj.max, adj.logsumexp]);
      const shape = keepdims
        ? x.shape.map((d, i) => (i === axis ? 1 : d))
        : x.shape.filter((_, i) => i !== axis);
      pool.push({ node: reduce(x.node, { axis, keepdims }), shape });
    } else if (kind < 0.82) {
      const size = x.shape.reduce((n, d) => n * d, 1);
      const flat = adj.reshape(x.node, [size]);
      // The view feeds a computation and is reshaped back: both alias x's data.
      pool.push({ node: adj.reshape(adj.tanh(flat), x.shape), shape: x.shape });
      pool.push({ node: adj.reshape(flat, x.shape), shape: x.shape });
    } else if (kind < 0.9) {
      pool.push({ node: adj.expandDims(x.node, 0), shape: [1, ...x.shape] });
    } else if (rank === 2) {
      const node =
        random() < 0.5 ? adj.transpose(x.node) : adj.matmul(x.node, x.node, { transA: true });
      pool.push({
        node,
        shape: node.op.name === "transpose" ? [x.shape[1], x.shape[0]] : [x.shape[1], x.shape[1]],
      });
    } else {
      pool.push({ node: adj.broadcastTo(x.node, [2, ...x.shape]), shape: [2, ...x.shape] });
    }
  }
  const last = pool[pool.length - 1].node;
  const total = pool
    .slice(xs.length)
    .reduce((acc, p) => adj.add(acc, adj.sum(p.node)), adj.sum(last));
  const extras = [pool[pool.length - 2].node, pool[xs.length].node, xs[0]];
  return withGradients(adj.add(last, total), xs, extras);
}

describe.each(backendCases.map((b) => [b.name, b] as const))(
  "%s backend: pooled runs are bitwise equal to unpooled ones",
  (_, backendCase) => {
    beforeAll(() => void adj.setBackend(backendCase.create()));
    afterAll(() => void adj.setBackend(adj.jsBackend));

    describe.each(["float64", "float32"] as const)("%s", (dtype: DType) => {
      it("every op case, with first and second-order gradients", () => {
        for (const c of opCases) {
          const inputs = c.inputs.map((t) => (dtype === "float64" ? t : t.clone({ dtype })));
          const xs = inputs.map((_, i) => adj.variable(`x${i}`));
          const y = c.build(...xs);
          const feeds = new Map<Node, Tensor>(xs.map((x, i) => [x, inputs[i]]));
          try {
            checkPooled(withGradients(y, xs, [adj.reshape(y, [-1])]), feeds);
          } catch (error) {
            throw new Error(`op case ${c.name}: ${(error as Error).message}`, { cause: error });
          }
        }
      });

      it("random graphs", () => {
        for (let seed = 1; seed <= 40; seed++) {
          const random = mulberry32(seed * 31 + 7);
          const inputs = VARIABLE_SHAPES.map((shape) => {
            const t = randomTensor(random, shape);
            return dtype === "float64" ? t : t.clone({ dtype });
          });
          const xs = VARIABLE_SHAPES.map((_, i) => adj.variable(`x${i}`));
          const feeds = new Map<Node, Tensor>(xs.map((x, i) => [x, inputs[i]]));
          try {
            checkPooled(randomGraph(seed, xs), feeds);
          } catch (error) {
            throw new Error(`seed ${seed}: ${(error as Error).message}`, { cause: error });
          }
        }
      });
    });
  },
);

describe("ownership", () => {
  it("feeds, views of shared memory, and outputs that alias them are never pooled", () => {
    const shared = allocateArray(12, "float64", true);
    shared.set(Array.from({ length: 12 }, (_, i) => i / 10));
    const plain = adj.tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    const a = adj.variable("a");
    const b = adj.variable("b");
    const view = new adj.Tensor(shared.subarray(6, 12), [2, 3]);
    const whole = new adj.Tensor(shared.subarray(0, 12), [12]);
    const c = adj.variable("c");
    const outputs = [identity(a), adj.reshape(b, [6]), adj.exp(a), adj.reshape(c, [3, 4]), a];
    const evaluator = new adj.Evaluator(outputs);
    const feeds = new Map<Node, Tensor>([
      [a, plain],
      [b, view],
      [c, whole],
    ]);
    const before = [...feeds.values()].map(bits);
    for (let i = 0; i < 3; i++) evaluator.recycle(evaluator.run(feeds));
    // Only exp(a)'s array went back; nothing fed is handed out.
    const fresh = [allocateArray(6, "float64"), allocateArray(6, "float64")];
    const fresh12 = allocateArray(12, "float64");
    for (const data of [...fresh, fresh12]) {
      expect(data).not.toBe(plain.data);
      expect(data.buffer).not.toBe(shared.buffer);
    }
    expect([...feeds.values()].map(bits)).toEqual(before);
  });

  it("an intermediate that a live view still uses is not pooled before the view dies", () => {
    const x = adj.variable("x");
    const e = adj.exp(x); // dies (as a slot) right after the reshape, its data lives on in v
    const v = adj.reshape(e, [6]);
    const w = adj.neg(adj.reshape(x, [6])); // allocated while v is alive: must not get e's array
    const y = adj.add(v, w);
    const feeds = new Map<Node, Tensor>([
      [
        x,
        adj.tensor([
          [0, 1, 2],
          [3, 4, 5],
        ]),
      ],
    ]);
    setPooling(false);
    const reference = bits(new adj.Evaluator([y]).run(feeds)[0]);
    setPooling(true);
    const evaluator = new adj.Evaluator([y]);
    for (let i = 0; i < 4; i++) {
      const [value] = evaluator.run(feeds);
      expect(bits(value)).toEqual(reference);
      evaluator.recycle([value]);
    }
  });

  it("outputs listed twice, and outputs sharing data, are pooled once", () => {
    clearPool();
    const x = adj.variable("x");
    const y = adj.exp(x);
    const evaluator = new adj.Evaluator([y, adj.reshape(y, [4]), y, identity(y)]);
    const outputs = evaluator.run(
      new Map([
        [
          x,
          adj.tensor([
            [1, 2],
            [3, 4],
          ]),
        ],
      ]),
    );
    evaluator.recycle(outputs);
    evaluator.recycle(outputs);
    const first = allocateArray(4, "float64");
    expect(first).toBe(outputs[0].data);
    expect(allocateArray(4, "float64")).not.toBe(first);
  });

  it("a run's outputs survive any number of later runs until recycled", () => {
    const x = adj.variable("x");
    const y = adj.tanh(adj.mul(x, x));
    const evaluator = new adj.Evaluator([y, ...adj.gradients(adj.sum(y), [x])]);
    const feed = (v: number) => new Map([[x, adj.full([3, 4], v)]]);
    const kept = evaluator.run(feed(0.5));
    const keptBits = kept.map(bits);
    for (let i = 0; i < 10; i++) evaluator.recycle(evaluator.run(feed(i)));
    expect(kept.map(bits)).toEqual(keptBits);
  });
});

describe("steady-state training steps allocate no typed array", () => {
  const digits = loadDigits({ dtype: "float64" });
  const cases: [string, ModelSpec, DType, number][] = [
    ["logreg f32, 1 shard", modelSpec("logreg", 64, [], 10), "float32", 1],
    ["logreg f64, 3 uneven shards", modelSpec("logreg", 64, [], 10), "float64", 3],
    ["mlp f32, 2 shards", modelSpec("mlp", 64, [32, 16], 10), "float32", 2],
  ];

  async function trainSteps(spec: ModelSpec, dtype: DType, shards: number, pooling: boolean) {
    setPooling(pooling);
    const rng = new Rng(1);
    const initial = initParams(spec, rng, dtype);
    const sgd = { kind: "sgd", lr: 0.05 } as const;
    const { trainPlan, shared } = prepareTraining(spec, digits, dtype, sgd, shards, 50, initial);
    const engine = await inProcessEngine(shared, trainPlan, sgd);
    const order = rng.permutation(digits.X.shape[0]);
    const batch = (t: number) => order.subarray((t * 50) % 1750, ((t * 50) % 1750) + 50);
    for (let t = 1; t <= 3; t++) await runStep(engine, shared, batch(t), t);
    const before = tensorStats.arraysAllocated;
    for (let t = 4; t <= 13; t++) await runStep(engine, shared, batch(t), t);
    const allocated = tensorStats.arraysAllocated - before;
    await engine.close();
    return { allocated, hash: paramsHash(currentParams(shared, trainPlan.paramShapes)) };
  }

  it.each(cases)("%s: 0 arrays per step, parameters bitwise equal", async (_, spec, dtype, n) => {
    const pooled = await trainSteps(spec, dtype, n, true);
    const unpooled = await trainSteps(spec, dtype, n, false);
    expect(pooled.allocated).toBe(0);
    expect(unpooled.allocated).toBeGreaterThan(0);
    expect(pooled.hash).toBe(unpooled.hash);
  });
});
