import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  DEFAULT_MNIST_SPLIT,
  loadDigits,
  loadMnist,
  oneHot,
  randomSplit,
  standardize,
  stratifiedSplit,
  takeLabels,
  takeRows,
  type Dataset,
} from "../../src/train/data.js";
import { tensor } from "../../src/tensor/tensor.js";

function labelCounts(y: Int32Array, classes: number): number[] {
  const counts = new Array<number>(classes).fill(0);
  for (const label of y) counts[label]++;
  return counts;
}

/** A row of X as a string key, to compare rows across data sets. */
function rowKeys(ds: Dataset): string[] {
  const f = ds.X.shape[1];
  return Array.from(
    { length: ds.y.length },
    (_, i) => Array.from(ds.X.data.subarray(i * f, (i + 1) * f)).join(",") + `|${ds.y[i]}`,
  );
}

const tmp = mkdtempSync(join(tmpdir(), "adjoint-data-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("loadDigits", () => {
  it("loads 1797 rows of 64 pixels in 0..16 with the known label counts", () => {
    const ds = loadDigits();
    expect(ds.X.shape).toEqual([1797, 64]);
    expect(ds.X.dtype).toBe("float64");
    expect(ds.y.length).toBe(1797);
    expect(ds.classes).toBe(10);
    expect(labelCounts(ds.y, 10)).toEqual([178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    let min = Infinity;
    let max = -Infinity;
    let fractional = 0;
    for (const v of ds.X.data) {
      if (!Number.isInteger(v)) fractional++;
      min = Math.min(min, v);
      max = Math.max(max, v);
    }
    expect(fractional).toBe(0);
    expect(min).toBe(0);
    expect(max).toBe(16);
  });

  it("keeps the file's first row and label, and honours dtype", () => {
    const ds = loadDigits({ dtype: "float32" });
    expect(ds.X.data).toBeInstanceOf(Float32Array);
    // First line of data/digits.csv.
    expect(Array.from(ds.X.data.subarray(0, 10))).toEqual([0, 0, 5, 13, 9, 1, 0, 0, 0, 0]);
    expect(ds.y[0]).toBe(0);
    expect(ds.y[1]).toBe(1);
  });

  it("names the bad line when a row has the wrong field count or a non-integer", () => {
    const good = Array.from({ length: 64 }, () => "1").join(",") + ",3";
    const short = join(tmp, "short.csv");
    writeFileSync(short, `${good}\n${good}\n1,2,3\n`);
    expect(() => loadDigits({ path: short })).toThrow(
      /short\.csv line 3: expected 65 fields, found 3/,
    );
    const nonInt = join(tmp, "nonint.csv");
    writeFileSync(nonInt, `${good}\n${good.replace(/^1,/, "1.5,")}\n`);
    expect(() => loadDigits({ path: nonInt })).toThrow(/line 2: field 1 is "1.5", not an integer/);
    const badLabel = join(tmp, "label.csv");
    writeFileSync(badLabel, `${good.replace(/,3$/, ",12")}\n`);
    expect(() => loadDigits({ path: badLabel })).toThrow(/line 1: label 12 is outside 0..9/);
    expect(() => loadDigits({ path: join(tmp, "missing.csv") })).toThrow(
      /cannot read .*missing\.csv/,
    );
    const ok = join(tmp, "ok.csv");
    writeFileSync(ok, `${good}\r\n${good}\r\n`);
    expect(loadDigits({ path: ok }).X.shape).toEqual([2, 64]);
  });
});

describe("loadMnist", () => {
  const ds = loadMnist({ dtype: "float32" });

  it("loads 10,000 images of 784 values in [0,1], labels matching the per-digit files", () => {
    expect(ds.X.shape).toEqual([10000, 784]);
    expect(ds.X.data).toBeInstanceOf(Float32Array);
    let min = Infinity;
    let max = -Infinity;
    for (const v of ds.X.data) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    expect(min).toBe(0);
    expect(max).toBe(1);
    // Count the images in each raw file independently of the loader.
    const require = createRequire(import.meta.url);
    const dir = join(dirname(require.resolve("mnist/package.json")), "src", "digits");
    const fileCounts = Array.from({ length: 10 }, (_, d) => {
      const raw = JSON.parse(readFileSync(join(dir, `${d}.json`), "utf8")) as { data: number[] };
      return raw.data.length / 784;
    });
    const counts = labelCounts(ds.y, 10);
    expect(counts).toEqual(fileCounts);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(10000);
    for (const c of counts) expect(Math.abs(c - 1000)).toBeLessThan(150);
  });

  it("caches per dtype", () => {
    expect(loadMnist({ dtype: "float32" })).toBe(ds);
    const ds64 = loadMnist({ dtype: "float64" });
    expect(ds64).not.toBe(ds);
    expect(ds64.X.data).toBeInstanceOf(Float64Array);
    expect(ds64.X.data[300]).toBeCloseTo(ds.X.data[300], 6);
  });

  it("splits 8000/2000 stratified by default sizes", () => {
    const split = stratifiedSplit(ds, DEFAULT_MNIST_SPLIT, 0);
    expect(split.train.X.shape).toEqual([8000, 784]);
    expect(split.test.X.shape).toEqual([2000, 784]);
    const all = labelCounts(ds.y, 10);
    const test = labelCounts(split.test.y, 10);
    const train = labelCounts(split.train.y, 10);
    for (let c = 0; c < 10; c++) {
      expect(Math.abs(test[c] - all[c] * 0.2)).toBeLessThan(1);
      expect(Math.abs(train[c] - all[c] * 0.8)).toBeLessThan(1);
    }
  });
});

describe("stratifiedSplit", () => {
  const digits = loadDigits();

  it("gives each class the same test proportion and keeps every row exactly once", () => {
    const split = stratifiedSplit(digits, 0.25, 3);
    expect(split.test.y.length).toBe(Math.ceil(1797 * 0.25));
    expect(split.train.y.length + split.test.y.length).toBe(1797);
    const all = labelCounts(digits.y, 10);
    const test = labelCounts(split.test.y, 10);
    for (let c = 0; c < 10; c++) expect(Math.abs(test[c] - all[c] * 0.25)).toBeLessThan(1);
    // Together the two sides hold every original row once (compared as multisets of rows).
    const original = rowKeys(digits).sort();
    const together = [...rowKeys(split.train), ...rowKeys(split.test)].sort();
    expect(together).toEqual(original);
  });

  it("shuffles rows so classes are not grouped", () => {
    const mnistLike: Dataset = {
      X: tensor(Array.from({ length: 100 }, (_, i) => [i])),
      y: Int32Array.from({ length: 100 }, (_, i) => Math.floor(i / 50)),
      classes: 2,
    };
    const split = stratifiedSplit(mnistLike, { trainSize: 60, testSize: 40 }, 1);
    expect(labelCounts(split.train.y, 2)).toEqual([30, 30]);
    expect(labelCounts(split.test.y, 2)).toEqual([20, 20]);
    const firstHalf = Array.from(split.train.y.subarray(0, 30));
    expect(firstHalf.every((l) => l === firstHalf[0])).toBe(false);
    // Each row keeps its label: X = row index, label = floor(index / 50).
    for (const side of [split.train, split.test]) {
      side.y.forEach((label, i) => expect(label).toBe(Math.floor(side.X.data[i] / 50)));
    }
  });

  it("honours sizes that leave rows unused, with exact totals", () => {
    const split = stratifiedSplit(digits, { trainSize: 1000, testSize: 300 }, 0);
    expect(split.train.y.length).toBe(1000);
    expect(split.test.y.length).toBe(300);
    const train = labelCounts(split.train.y, 10);
    const all = labelCounts(digits.y, 10);
    for (let c = 0; c < 10; c++)
      expect(Math.abs(train[c] - (all[c] * 1000) / 1797)).toBeLessThan(1);
  });

  it("is reproducible for a seed and differs across seeds", () => {
    const a = stratifiedSplit(digits, 0.2, 5);
    const b = stratifiedSplit(digits, 0.2, 5);
    const c = stratifiedSplit(digits, 0.2, 6);
    expect(a.train.X.data).toEqual(b.train.X.data);
    expect(a.test.y).toEqual(b.test.y);
    expect(a.train.X.data).not.toEqual(c.train.X.data);
  });

  it("rejects impossible sizes", () => {
    expect(() => stratifiedSplit(digits, { trainSize: 1500, testSize: 400 }, 0)).toThrow(
      /trainSize 1500 \+ testSize 400 exceeds the 1797 rows/,
    );
    expect(() => stratifiedSplit(digits, 1.5, 0)).toThrow(
      /testFraction must be in \[0, 1\], got 1.5/,
    );
    expect(() => stratifiedSplit(digits, { trainSize: -1, testSize: 4 }, 0)).toThrow(/trainSize/);
  });
});

describe("randomSplit", () => {
  const digits = loadDigits();

  it("splits 80/20 like train_test_split (ceil for test), seeded", () => {
    const split = randomSplit(digits, 0.2, 0);
    expect(split.test.y.length).toBe(360);
    expect(split.train.y.length).toBe(1437);
    const again = randomSplit(digits, 0.2, 0);
    expect(again.test.X.data).toEqual(split.test.X.data);
    expect(randomSplit(digits, 0.2, 1).test.X.data).not.toEqual(split.test.X.data);
    const together = [...rowKeys(split.train), ...rowKeys(split.test)].sort();
    expect(together).toEqual(rowKeys(digits).sort());
  });
});

describe("standardize", () => {
  it("uses train statistics only and maps constant features to (x - mean)", () => {
    const train: Dataset = {
      X: tensor([
        [1, 5, 10],
        [3, 5, 20],
      ]),
      y: Int32Array.of(0, 1),
      classes: 2,
    };
    const test: Dataset = { X: tensor([[2, 7, 40]]), y: Int32Array.of(1), classes: 2 };
    const out = standardize({ train, test });
    // Train means [2, 5, 15]; population stds [1, 0 -> 1, 5].
    expect(out.train.X.toArray()).toEqual([
      [-1, 0, -1],
      [1, 0, 1],
    ]);
    expect(out.test.X.toArray()).toEqual([[0, 2, 5]]);
    // Inputs are untouched.
    expect(train.X.toArray()).toEqual([
      [1, 5, 10],
      [3, 5, 20],
    ]);
  });

  it("gives the train side mean 0 and std 1 per non-constant feature on digits", () => {
    const out = standardize(randomSplit(loadDigits(), 0.2, 0));
    const [n, f] = out.train.X.shape;
    for (const j of [10, 20, 30]) {
      let s = 0;
      let s2 = 0;
      for (let i = 0; i < n; i++) {
        const v = out.train.X.data[i * f + j];
        s += v;
        s2 += v * v;
      }
      expect(Math.abs(s / n)).toBeLessThan(1e-9);
      expect(s2 / n).toBeCloseTo(1, 9);
    }
  });
});

describe("oneHot, takeRows, takeLabels", () => {
  it("one-hot encodes labels", () => {
    expect(oneHot(Int32Array.of(2, 0, 1), 3).toArray()).toEqual([
      [0, 0, 1],
      [1, 0, 0],
      [0, 1, 0],
    ]);
    expect(oneHot(Int32Array.of(1), 2, "float32").dtype).toBe("float32");
    expect(() => oneHot(Int32Array.of(3), 3)).toThrow(/label 3 at position 0 is outside 0..2/);
  });

  it("takes rows and labels in order", () => {
    const X = tensor([
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    expect(takeRows(X, [2, 0, 2]).toArray()).toEqual([
      [5, 6],
      [1, 2],
      [5, 6],
    ]);
    expect(takeRows(X, Int32Array.of()).shape).toEqual([0, 2]);
    expect(Array.from(takeLabels(Int32Array.of(7, 8, 9), [1, 1, 0]))).toEqual([8, 8, 7]);
    expect(() => takeRows(X, [3])).toThrow(/index 3 at position 0 is outside 0..2 of X \[3,2\]/);
    expect(() => takeLabels(Int32Array.of(1), [-1])).toThrow(/index -1/);
  });
});
