/** Data sets (8x8 digits, MNIST), seeded splits, standardisation and row selection. */
import { packageRoot } from "../package.js";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Rng } from "./random.js";
import { allocate, Tensor, type DType } from "../tensor/tensor.js";
import { fmt } from "../tensor/shape.js";

/** A labelled data set: one row of X per example. */
export interface Dataset {
  /** Features, shape (n, features). */
  X: Tensor;
  /** Integer class labels in [0, classes), length n. */
  y: Int32Array;
  /** Number of classes. */
  classes: number;
}

/** A train/test split of a {@link Dataset}. */
export interface Split {
  train: Dataset;
  test: Dataset;
  /** Set by {@link standardize}: x' = (x - mean) / std per feature, fitted on the train side. */
  scaling?: { mean: Float64Array; std: Float64Array };
}

/** Exact split sizes for {@link stratifiedSplit}. */
export interface SplitSizes {
  trainSize: number;
  testSize: number;
}

/** The default MNIST split: 8000 training and 2000 test images. */
export const DEFAULT_MNIST_SPLIT: Readonly<SplitSizes> = Object.freeze({
  trainSize: 8000,
  testSize: 2000,
});

const DIGITS_FEATURES = 64;
const DIGITS_CLASSES = 10;
const MNIST_PIXELS = 784;
const MNIST_IMAGES = 10_000;

/**
 * Loads the 8x8 digits (1797 rows: 64 pixel counts 0..16, then the label 0..9).
 * Example: `loadDigits({ dtype: "float32" }).X.shape` is `[1797, 64]`.
 */
export function loadDigits(opts: { dtype?: DType; path?: string } = {}): Dataset {
  const dtype = opts.dtype ?? "float64";
  const path = opts.path ?? join(packageRoot(), "data", "digits.csv");
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(`loadDigits: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  const lines = text.split(/\r?\n/);
  // A trailing newline leaves one empty last line; any other empty line is an error below.
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  if (lines.length === 0) throw new Error(`loadDigits: ${path} has no rows`);
  const n = lines.length;
  const X = allocate([n, DIGITS_FEATURES], dtype);
  const y = new Int32Array(n);
  for (let row = 0; row < n; row++) {
    const where = `loadDigits: ${path} line ${row + 1}`;
    const fields = lines[row].split(",");
    if (fields.length !== DIGITS_FEATURES + 1) {
      throw new Error(`${where}: expected ${DIGITS_FEATURES + 1} fields, found ${fields.length}`);
    }
    for (let j = 0; j <= DIGITS_FEATURES; j++) {
      const field = fields[j].trim();
      if (!/^\d+$/.test(field)) {
        throw new Error(`${where}: field ${j + 1} is ${JSON.stringify(field)}, not an integer`);
      }
      const value = Number(field);
      if (j < DIGITS_FEATURES) {
        if (value > 16) throw new Error(`${where}: pixel ${j + 1} is ${value}, outside 0..16`);
        X.data[row * DIGITS_FEATURES + j] = value;
      } else {
        if (value >= DIGITS_CLASSES) throw new Error(`${where}: label ${value} is outside 0..9`);
        y[row] = value;
      }
    }
  }
  return { X, y, classes: DIGITS_CLASSES };
}

const mnistCache = new Map<DType, Dataset>();

/**
 * Loads the 10,000 MNIST digits of the `mnist` package (784 pixels in 0..1), grouped by digit.
 * Parsed once per dtype and cached; treat the returned tensors as read-only.
 * Example: `loadMnist({ dtype: "float32" }).X.shape` is `[10000, 784]`.
 */
export function loadMnist(opts: { dtype?: DType } = {}): Dataset {
  const dtype = opts.dtype ?? "float64";
  const cached = mnistCache.get(dtype);
  if (cached) return cached;
  // Read the per-digit raw arrays ourselves: the package's set() draws with unseeded Math.random.
  const require = createRequire(import.meta.url);
  const digitsDir = join(dirname(require.resolve("mnist/package.json")), "src", "digits");
  const perDigit: number[][] = [];
  for (let digit = 0; digit < 10; digit++) {
    const file = join(digitsDir, `${digit}.json`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, "utf8"));
    } catch (err) {
      throw new Error(`loadMnist: cannot read ${file}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const data = (parsed as { data?: unknown } | null)?.data;
    if (!Array.isArray(data) || data.length % MNIST_PIXELS !== 0) {
      throw new Error(
        `loadMnist: ${file}: expected {data: number[]} with a multiple of ${MNIST_PIXELS} values`,
      );
    }
    perDigit.push(data as number[]);
  }
  const counts = perDigit.map((d) => d.length / MNIST_PIXELS);
  const total = counts.reduce((a, b) => a + b, 0);
  if (total !== MNIST_IMAGES) {
    throw new Error(
      `loadMnist: expected ${MNIST_IMAGES} images, found ${total} (per digit: ${counts.join(", ")})`,
    );
  }
  const X = allocate([total, MNIST_PIXELS], dtype);
  const y = new Int32Array(total);
  let row = 0;
  for (let digit = 0; digit < 10; digit++) {
    const data = perDigit[digit];
    for (let k = 0; k < data.length; k++) {
      const v = data[k];
      if (typeof v !== "number" || !(v >= 0 && v <= 1)) {
        throw new Error(
          `loadMnist: ${digit}.json value ${k} (image ${Math.floor(k / MNIST_PIXELS)}) is ${String(v)}, outside [0, 1]`,
        );
      }
    }
    X.data.set(data, row * MNIST_PIXELS);
    y.fill(digit, row, row + counts[digit]);
    row += counts[digit];
  }
  const dataset: Dataset = { X, y, classes: 10 };
  mnistCache.set(dtype, dataset);
  return dataset;
}

/**
 * Selects rows (entries along axis 0) of X in the given order, as a new tensor.
 * Example: `takeRows(X, [2, 0]).shape` is `[2, X.shape[1]]`.
 */
export function takeRows(X: Tensor, indices: ArrayLike<number>): Tensor {
  if (X.rank < 1) throw new Error("takeRows: X is 0-d, it has no rows");
  const rows = X.shape[0];
  const rowSize = rows === 0 ? 0 : X.size / rows;
  const out = allocate([indices.length, ...X.shape.slice(1)], X.dtype);
  for (let i = 0; i < indices.length; i++) {
    const r = indices[i];
    if (!Number.isInteger(r) || r < 0 || r >= rows) {
      throw new Error(
        `takeRows: index ${r} at position ${i} is outside 0..${rows - 1} of X ${fmt(X.shape)}`,
      );
    }
    out.data.set(X.data.subarray(r * rowSize, (r + 1) * rowSize), i * rowSize);
  }
  return out;
}

/** Selects labels in the given order, as a new Int32Array. */
export function takeLabels(y: Int32Array, indices: ArrayLike<number>): Int32Array {
  const out = new Int32Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const r = indices[i];
    if (!Number.isInteger(r) || r < 0 || r >= y.length) {
      throw new Error(`takeLabels: index ${r} at position ${i} is outside 0..${y.length - 1}`);
    }
    out[i] = y[r];
  }
  return out;
}

/** The examples at `indices` of a data set, in that order. */
export function subset(ds: Dataset, indices: ArrayLike<number>): Dataset {
  return { X: takeRows(ds.X, indices), y: takeLabels(ds.y, indices), classes: ds.classes };
}

/**
 * One-hot encodes integer labels as an (n, classes) tensor.
 * Example: `oneHot(Int32Array.of(2, 0), 3).toArray()` is `[[0,0,1],[1,0,0]]`.
 */
export function oneHot(y: Int32Array, classes: number, dtype: DType = "float64"): Tensor {
  if (!Number.isInteger(classes) || classes < 1) {
    throw new Error(`oneHot: classes must be a positive integer, got ${classes}`);
  }
  const out = allocate([y.length, classes], dtype);
  for (let i = 0; i < y.length; i++) {
    const label = y[i];
    if (label < 0 || label >= classes) {
      throw new Error(`oneHot: label ${label} at position ${i} is outside 0..${classes - 1}`);
    }
    out.data[i * classes + label] = 1;
  }
  return out;
}

/**
 * A seeded shuffled split: the first ceil(n * testFraction) rows of a permutation go to test
 * (scikit-learn's train_test_split rounding), the rest to train.
 * Example: `randomSplit(loadDigits(), 0.2, 0)` gives 1437 train and 360 test rows.
 */
export function randomSplit(ds: Dataset, testFraction: number, seed: number): Split {
  const n = checkDataset("randomSplit", ds);
  const testSize = testSizeFor("randomSplit", n, testFraction);
  const perm = new Rng(seed).permutation(n);
  return {
    train: subset(ds, perm.subarray(testSize)),
    test: subset(ds, perm.subarray(0, testSize)),
  };
}

/**
 * A seeded split that keeps each class's share: every class gives the same fraction of its rows
 * to test (exact totals by largest remainder), then both sides are shuffled.
 * Example: `stratifiedSplit(loadMnist(), DEFAULT_MNIST_SPLIT, 0)`; `stratifiedSplit(ds, 0.2, 1)`.
 */
export function stratifiedSplit(ds: Dataset, sizes: number | SplitSizes, seed: number): Split {
  const n = checkDataset("stratifiedSplit", ds);
  let trainSize: number;
  let testSize: number;
  if (typeof sizes === "number") {
    testSize = testSizeFor("stratifiedSplit", n, sizes);
    trainSize = n - testSize;
  } else {
    ({ trainSize, testSize } = sizes);
    for (const [name, v] of [
      ["trainSize", trainSize],
      ["testSize", testSize],
    ] as const) {
      if (!Number.isInteger(v) || v < 0) {
        throw new Error(`stratifiedSplit: ${name} must be a non-negative integer, got ${v}`);
      }
    }
    if (trainSize + testSize > n) {
      throw new Error(
        `stratifiedSplit: trainSize ${trainSize} + testSize ${testSize} exceeds the ${n} rows`,
      );
    }
  }
  const rng = new Rng(seed);
  const byClass: number[][] = Array.from({ length: ds.classes }, () => []);
  for (let i = 0; i < n; i++) byClass[ds.y[i]].push(i);
  const classSizes = byClass.map((rows) => rows.length);
  const testCounts = apportion(testSize, classSizes, classSizes);
  const trainCounts = apportion(
    trainSize,
    classSizes,
    classSizes.map((size, c) => size - testCounts[c]),
  );
  const trainRows: number[] = [];
  const testRows: number[] = [];
  for (let c = 0; c < ds.classes; c++) {
    const rows = rng.shuffle(byClass[c]);
    testRows.push(...rows.slice(0, testCounts[c]));
    trainRows.push(...rows.slice(testCounts[c], testCounts[c] + trainCounts[c]));
  }
  // Without this shuffle the rows would come grouped by class.
  rng.shuffle(trainRows);
  rng.shuffle(testRows);
  return { train: subset(ds, trainRows), test: subset(ds, testRows) };
}

/**
 * Standardises features with the train side's per-feature mean and (population) standard
 * deviation; a constant feature gets std 1. The test side never informs the statistics.
 * Example: `standardize(randomSplit(loadDigits(), 0.2, 0))`.
 */
export function standardize(split: Split): Split {
  const { train, test } = split;
  if (train.X.rank !== 2 || test.X.rank !== 2 || train.X.shape[1] !== test.X.shape[1]) {
    throw new Error(
      `standardize: need 2-d train and test X with equal feature counts, got ${fmt(train.X.shape)} and ${fmt(test.X.shape)}`,
    );
  }
  const [n, features] = train.X.shape;
  if (n === 0) throw new Error("standardize: the train side is empty, nothing to fit on");
  const mean = new Float64Array(features);
  const std = new Float64Array(features);
  const x = train.X.data;
  for (let i = 0; i < n; i++) for (let j = 0; j < features; j++) mean[j] += x[i * features + j];
  for (let j = 0; j < features; j++) mean[j] /= n;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < features; j++) {
      const d = x[i * features + j] - mean[j];
      std[j] += d * d;
    }
  }
  for (let j = 0; j < features; j++) {
    const s = Math.sqrt(std[j] / n);
    std[j] = s > 0 ? s : 1;
  }
  const apply = (ds: Dataset): Dataset => {
    const out = allocate(ds.X.shape, ds.X.dtype);
    const rows = ds.X.shape[0];
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < features; j++) {
        const k = i * features + j;
        out.data[k] = (ds.X.data[k] - mean[j]) / std[j];
      }
    }
    return { X: out, y: ds.y, classes: ds.classes };
  };
  return { train: apply(train), test: apply(test), scaling: { mean, std } };
}

/** Checks X/y agreement and label range; returns the row count. */
function checkDataset(where: string, ds: Dataset): number {
  if (ds.X.rank < 1 || ds.X.shape[0] !== ds.y.length) {
    throw new Error(`${where}: X ${fmt(ds.X.shape)} and y (length ${ds.y.length}) disagree`);
  }
  for (let i = 0; i < ds.y.length; i++) {
    if (ds.y[i] < 0 || ds.y[i] >= ds.classes) {
      throw new Error(`${where}: label ${ds.y[i]} at row ${i} is outside 0..${ds.classes - 1}`);
    }
  }
  return ds.y.length;
}

function testSizeFor(where: string, n: number, testFraction: number): number {
  if (!(testFraction >= 0 && testFraction <= 1)) {
    throw new Error(`${where}: testFraction must be in [0, 1], got ${testFraction}`);
  }
  // The epsilon keeps products like 0.07 * 100 (= 7.000000000000001) from rounding up to 8.
  return Math.min(n, Math.ceil(n * testFraction - 1e-9));
}

/**
 * Splits `total` into integer counts proportional to `weights` (largest remainder), each at most
 * its cap; assumes total <= sum(caps).
 */
function apportion(total: number, weights: number[], caps: number[]): number[] {
  const weightSum = weights.reduce((a, b) => a + b, 0);
  const quotas = weights.map((w) => (weightSum === 0 ? 0 : (total * w) / weightSum));
  const counts = quotas.map((q, c) => Math.min(Math.floor(q), caps[c]));
  let left = total - counts.reduce((a, b) => a + b, 0);
  // Largest fractional part first; ties go to the lower class index (stable sort).
  const order = quotas.map((_, c) => c).sort((a, b) => (quotas[b] % 1) - (quotas[a] % 1));
  while (left > 0) {
    let progressed = false;
    for (const c of order) {
      if (left === 0) break;
      if (counts[c] < caps[c]) {
        counts[c]++;
        left--;
        progressed = true;
      }
    }
    if (!progressed) throw new Error(`apportion: cannot place ${left} more rows within the caps`);
  }
  return counts;
}
