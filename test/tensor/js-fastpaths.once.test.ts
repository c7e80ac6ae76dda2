/**
 * The js backend's shape-specialised kernels against the generic strided loops they replaced
 * (kept below as the reference): bitwise equal results, -0 and NaN included, on every shape class.
 */
import { describe, expect, it } from "vitest";
import type { BinaryKind, ReduceKind, UnaryKind } from "../../src/tensor/backend.js";
import { jsBackend } from "../../src/tensor/kernels/js.js";
import {
  broadcastShapes,
  fmt,
  reducedShape,
  sameShape,
  sizeOf,
  stridesOf,
} from "../../src/tensor/shape.js";
import { allocate, resultDType, tensor, type DType, type Tensor } from "../../src/tensor/tensor.js";

// ---- Reference: the generic implementation (one closure call per element) before fast paths.

const binaryFns: Record<BinaryKind, (x: number, y: number) => number> = {
  add: (x, y) => x + y,
  sub: (x, y) => x - y,
  mul: (x, y) => x * y,
  div: (x, y) => x / y,
  minimum: Math.min,
  maximum: Math.max,
  greater: (x, y) => (x > y ? 1 : 0),
};

const unaryFns: Record<UnaryKind, (x: number) => number> = {
  neg: (x) => -x,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  relu: (x) => (x > 0 ? x : 0),
  step: (x) => (x > 0 ? 1 : 0),
  sigmoid: (x) => {
    if (x >= 0) return 1 / (1 + Math.exp(-x));
    const e = Math.exp(x);
    return e / (1 + e);
  },
  tanh: Math.tanh,
  abs: Math.abs,
};

function broadcastStrides(shape: readonly number[], rank: number): number[] {
  const strides = stridesOf(shape);
  const out = new Array<number>(rank).fill(0);
  const offset = rank - shape.length;
  for (let i = 0; i < shape.length; i++) out[offset + i] = shape[i] === 1 ? 0 : strides[i];
  return out;
}

function forEachStrided(
  shape: readonly number[],
  aStrides: readonly number[],
  bStrides: readonly number[],
  visit: (o: number, ia: number, ib: number) => void,
): void {
  const rank = shape.length;
  const size = sizeOf(shape);
  if (size === 0) return;
  const idx = new Array<number>(rank).fill(0);
  let ia = 0;
  let ib = 0;
  for (let o = 0; o < size; o++) {
    visit(o, ia, ib);
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      ia += aStrides[d];
      ib += bStrides[d];
      if (idx[d] < shape[d]) break;
      ia -= aStrides[d] * shape[d];
      ib -= bStrides[d] * shape[d];
      idx[d] = 0;
    }
  }
}

function refBinary(kind: BinaryKind, a: Tensor, b: Tensor): Tensor {
  const shape = broadcastShapes(a.shape, b.shape)!;
  const out = allocate(shape, resultDType(a.dtype, b.dtype));
  const rank = shape.length;
  const f = binaryFns[kind];
  forEachStrided(
    shape,
    broadcastStrides(a.shape, rank),
    broadcastStrides(b.shape, rank),
    (i, ia, ib) => {
      out.data[i] = f(a.data[ia], b.data[ib]);
    },
  );
  return out;
}

function refUnary(kind: UnaryKind, x: Tensor): Tensor {
  const out = allocate(x.shape, x.dtype);
  for (let i = 0; i < x.size; i++) out.data[i] = unaryFns[kind](x.data[i]);
  return out;
}

function reduceIndexStrides(shape: readonly number[], axes: readonly number[]): number[] {
  const outStrides = stridesOf(reducedShape(shape, axes, true));
  return shape.map((_, i) => (axes.includes(i) ? 0 : outStrides[i]));
}

function refReduce(kind: ReduceKind, x: Tensor, axes: readonly number[], keepdims: boolean) {
  const out = allocate(reducedShape(x.shape, axes, keepdims), x.dtype);
  const o = out.data;
  const d = x.data;
  const count = x.size / Math.max(out.size, 1);
  if (kind === "max" || kind === "logsumexp") {
    if (x.size === 0 && out.size > 0) throw new Error(`${kind} of an empty axis`);
    o.fill(-Infinity);
  }
  const strides = reduceIndexStrides(x.shape, axes);
  const zero = new Array<number>(x.rank).fill(0);
  if (kind === "sum" || kind === "mean") {
    forEachStrided(x.shape, strides, zero, (i, io) => {
      o[io] += d[i];
    });
    if (kind === "mean") for (let i = 0; i < o.length; i++) o[i] /= count;
    return out;
  }
  forEachStrided(x.shape, strides, zero, (i, io) => {
    if (d[i] > o[io] || Number.isNaN(d[i])) o[io] = d[i];
  });
  if (kind === "max") return out;
  const sums = new Float64Array(o.length);
  forEachStrided(x.shape, strides, zero, (i, io) => {
    const m = o[io];
    sums[io] += m === -Infinity ? 0 : Math.exp(d[i] - m);
  });
  for (let i = 0; i < o.length; i++) if (o[i] !== -Infinity) o[i] = o[i] + Math.log(sums[i]);
  return out;
}

function refMaxMask(x: Tensor, axes: readonly number[]): Tensor {
  const m = refReduce("max", x, axes, true);
  const strides = reduceIndexStrides(x.shape, axes);
  const zero = new Array<number>(x.rank).fill(0);
  const counts = new Float64Array(m.size);
  const d = x.data;
  forEachStrided(x.shape, strides, zero, (i, io) => {
    if (d[i] === m.data[io]) counts[io]++;
  });
  const out = allocate(x.shape, x.dtype);
  forEachStrided(x.shape, strides, zero, (i, io) => {
    if (d[i] === m.data[io]) out.data[i] = 1 / counts[io];
  });
  return out;
}

function refBroadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  const out = allocate(shape, x.dtype);
  const rank = shape.length;
  forEachStrided(
    shape,
    broadcastStrides(x.shape, rank),
    new Array<number>(rank).fill(0),
    (i, ix) => {
      out.data[i] = x.data[ix];
    },
  );
  return out;
}

function refSumTo(x: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(x.shape, shape)) return x;
  const out = allocate(shape, x.dtype);
  const rank = x.rank;
  forEachStrided(
    x.shape,
    broadcastStrides(shape, rank),
    new Array<number>(rank).fill(0),
    (i, io) => {
      out.data[io] += x.data[i];
    },
  );
  return out;
}

function refTranspose(x: Tensor, perm: readonly number[]): Tensor {
  const shape = perm.map((p) => x.shape[p]);
  const out = allocate(shape, x.dtype);
  const inStrides = stridesOf(x.shape);
  forEachStrided(
    shape,
    perm.map((p) => inStrides[p]),
    new Array<number>(shape.length).fill(0),
    (i, ix) => {
      out.data[i] = x.data[ix];
    },
  );
  return out;
}

// ---- Inputs and comparison.

/** A seeded uniform generator in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/**
 * Random data of `shape`: continuous values (sums that round differently in another order), or
 * small integers (ties for max), with -0, NaN and ±Infinity sprinkled in when `specials` is set.
 */
function data(
  shape: readonly number[],
  dtype: DType,
  seed: number,
  mode: "real" | "ties",
  specials = false,
) {
  const next = rng(seed);
  const values = Array.from({ length: sizeOf(shape) }, () => {
    const u = next();
    if (specials && u < 0.04) return NaN;
    if (specials && u < 0.08) return -0;
    if (specials && u < 0.1) return -Infinity;
    if (specials && u < 0.12) return Infinity;
    return mode === "ties" ? Math.floor(next() * 3) - 1 : (next() - 0.5) * 10 ** (next() * 6 - 3);
  });
  return tensor(dtype === "float32" ? Float32Array.from(values) : Float64Array.from(values), {
    shape,
  });
}

/** Every element equal under Object.is (so -0 differs from +0 and NaN equals NaN), same shape. */
function expectBitwise(got: Tensor, want: Tensor, what: string): void {
  expect([...got.shape], what).toEqual([...want.shape]);
  expect(got.dtype, what).toBe(want.dtype);
  const bad: string[] = [];
  for (let i = 0; i < want.size && bad.length < 3; i++) {
    if (!Object.is(got.data[i], want.data[i])) bad.push(`[${i}] ${got.data[i]} vs ${want.data[i]}`);
  }
  expect(bad, what).toEqual([]);
}

/** All subsets of 0..rank-1, each sorted. */
function subsets(rank: number): number[][] {
  const out: number[][] = [];
  for (let mask = 0; mask < 1 << rank; mask++) {
    out.push([...Array(rank).keys()].filter((i) => mask & (1 << i)));
  }
  return out;
}

/** All permutations of 0..rank-1. */
function permutations(rank: number): number[][] {
  if (rank === 0) return [[]];
  return permutations(rank - 1).flatMap((p) =>
    Array.from({ length: rank }, (_, i) => [...p.slice(0, i), rank - 1, ...p.slice(i)]),
  );
}

/** Every shape that broadcasts to `shape`: dims replaced by 1 and leading dims dropped. */
function broadcastSources(shape: readonly number[]): number[][] {
  const out: number[][] = [];
  for (const ones of subsets(shape.length)) {
    const s = shape.map((d, i) => (ones.includes(i) ? 1 : d));
    for (let drop = 0; drop <= s.length; drop++) {
      if (s.slice(0, drop).every((d) => d === 1)) out.push(s.slice(drop));
    }
  }
  return out;
}

const SHAPES: number[][] = [
  [],
  [0],
  [1],
  [7],
  [1, 1],
  [1, 9],
  [9, 1],
  [5, 7],
  [50, 10],
  [0, 4],
  [3, 0],
  [2, 3, 4],
  [3, 1, 5],
  [2, 3, 4, 5],
  [2, 1, 3, 1],
];
const DTYPES: DType[] = ["float32", "float64"];

/** Runs `f`, returning its result or the error's message. */
function attempt<T>(f: () => T): T | string {
  try {
    return f();
  } catch (error) {
    return (error as Error).message;
  }
}

describe("js fast paths match the generic loops bitwise", () => {
  it.each(DTYPES)("reduce (sum, mean, max, logsumexp) over every axis subset, %s", (dtype) => {
    let seed = 1;
    for (const shape of SHAPES) {
      for (const axes of subsets(shape.length)) {
        for (const [mode, specials] of [
          ["real", false],
          ["ties", false],
          ["real", true],
        ] as const) {
          const x = data(shape, dtype, seed++, mode, specials);
          for (const kind of ["sum", "mean", "max", "logsumexp"] as const) {
            for (const keepdims of [false, true]) {
              const what = `${kind} ${fmt(shape)} axes ${fmt(axes)} keepdims ${keepdims} ${mode}${specials ? "+specials" : ""}`;
              const want = attempt(() => refReduce(kind, x, axes, keepdims));
              const got = attempt(() => jsBackend.reduce(kind, x, axes, keepdims));
              if (typeof want === "string") expect(got, what).toBe(want);
              else if (typeof got === "string") expect.fail(`${what}: threw ${got}`);
              else expectBitwise(got, want, what);
            }
          }
        }
      }
    }
  });

  it.each(DTYPES)("maxMask over every axis subset, %s", (dtype) => {
    let seed = 100;
    for (const shape of SHAPES) {
      for (const axes of subsets(shape.length)) {
        for (const specials of [false, true]) {
          const x = data(shape, dtype, seed++, "ties", specials);
          const what = `maxMask ${fmt(shape)} axes ${fmt(axes)}${specials ? " +specials" : ""}`;
          const want = attempt(() => refMaxMask(x, axes));
          const got = attempt(() => jsBackend.maxMask(x, axes));
          if (typeof want === "string") expect(got, what).toBe(want);
          else if (typeof got === "string") expect.fail(`${what}: threw ${got}`);
          else expectBitwise(got, want, what);
        }
      }
    }
  });

  it.each(DTYPES)("broadcastTo and sumTo between every compatible pair, %s", (dtype) => {
    let seed = 200;
    for (const shape of [...SHAPES, [128, 256], [4, 1, 3, 2]]) {
      for (const source of broadcastSources(shape)) {
        const x = data(source, dtype, seed++, "real", true);
        const big = data(shape, dtype, seed++, "real", true);
        const pair = `${fmt(source)} <-> ${fmt(shape)}`;
        expectBitwise(
          jsBackend.broadcastTo(x, shape),
          refBroadcastTo(x, shape),
          `broadcastTo ${pair}`,
        );
        expectBitwise(jsBackend.sumTo(big, source), refSumTo(big, source), `sumTo ${pair}`);
      }
    }
  });

  it.each(DTYPES)("transpose by every permutation, %s", (dtype) => {
    let seed = 300;
    for (const shape of [...SHAPES, [33, 70], [3, 40, 35], [2, 3, 1, 4, 2]]) {
      for (const perm of permutations(shape.length)) {
        const x = data(shape, dtype, seed++, "real", true);
        const what = `transpose ${fmt(shape)} by ${fmt(perm)}`;
        expectBitwise(jsBackend.transpose(x, perm), refTranspose(x, perm), what);
      }
    }
  });

  it("binary over every broadcast pair and dtype mix", () => {
    let seed = 400;
    for (const shape of [...SHAPES, [2, 3, 4, 5, 2]]) {
      const sources = broadcastSources(shape);
      for (const sa of sources) {
        for (const sb of sources) {
          if (!sameShape(broadcastShapes(sa, sb) ?? [], shape)) continue;
          for (const [da, db] of [
            ["float32", "float32"],
            ["float64", "float32"],
            ["float64", "float64"],
          ] as const) {
            const a = data(sa, da, seed++, "real", true);
            const b = data(sb, db, seed++, "real", true);
            for (const kind of ["add", "sub", "mul", "div"] as const) {
              const what = `${kind} ${fmt(sa)} ${da} ${fmt(sb)} ${db}`;
              expectBitwise(jsBackend.binary(kind, a, b), refBinary(kind, a, b), what);
            }
          }
        }
      }
    }
  });

  it.each(DTYPES)("unary on every kind, %s", (dtype) => {
    const kinds: UnaryKind[] = ["neg", "exp", "log", "sqrt", "relu", "step", "sigmoid", "tanh"];
    for (const shape of [[], [0], [50, 10]]) {
      const x = data(shape, dtype, 500, "real", true);
      for (const kind of kinds) {
        expectBitwise(jsBackend.unary(kind, x), refUnary(kind, x), `${kind} ${fmt(shape)}`);
      }
    }
  });

  it("keeps max's NaN-wins rule and throws on an empty reduced axis", () => {
    const x = tensor([1, NaN, 3, 2, 5, 4], { shape: [2, 3] });
    expect([...jsBackend.reduce("max", x, [1], false).data]).toEqual([NaN, 5]);
    expect([...jsBackend.reduce("max", x, [0], false).data]).toEqual([2, NaN, 4]);
    expect(() => jsBackend.reduce("max", allocate([2, 0], "float64"), [1], false)).toThrow(
      "max of an empty axis",
    );
    expect([...jsBackend.reduce("sum", allocate([2, 0], "float64"), [1], false).data]).toEqual([
      0, 0,
    ]);
  });
});
