import { describe, expect, it } from "vitest";
import { Rng } from "../../src/train/random.js";

// Reference outputs computed with an independent Python implementation of splitmix64 +
// xoshiro128** (Blackman & Vigna); the [1,2,3,4] vector is the published reference sequence.
describe("Rng", () => {
  it("matches the xoshiro128** reference sequence from state [1,2,3,4]", () => {
    const rng = new Rng(0);
    rng.setState([1, 2, 3, 4, 0, 0]);
    const out = Array.from({ length: 6 }, () => rng.nextUint32());
    expect(out).toEqual([11520, 0, 5927040, 70819200, 2031721883, 1637235492]);
  });

  it("seeds through splitmix64", () => {
    expect(new Rng(0).getState().slice(0, 4)).toEqual([
      2065550767, 3793791033, 2713282036, 1853398634,
    ]);
    // 0xe220a8397b1dcdaf is splitmix64's well-known first output for seed 0: its low word, then its high word.
    const r0 = new Rng(0);
    expect(Array.from({ length: 5 }, () => r0.nextUint32())).toEqual([
      3737715805, 2584255861, 2876756834, 3286328325, 1553311962,
    ]);
    const r42 = new Rng(42);
    expect(Array.from({ length: 5 }, () => r42.nextUint32())).toEqual([
      1776835114, 4165204688, 17111135, 2317295270, 2792088233,
    ]);
    const rNeg = new Rng(-1);
    expect(rNeg.nextUint32()).toBe(477689756);
  });

  it("gives the same sequence for the same seed and a different one for another seed", () => {
    const a = new Rng(7);
    const b = new Rng(7);
    const c = new Rng(8);
    const sa = Array.from({ length: 100 }, () => a.next());
    const sb = Array.from({ length: 100 }, () => b.next());
    const sc = Array.from({ length: 100 }, () => c.next());
    expect(sa).toEqual(sb);
    expect(sa).not.toEqual(sc);
  });

  it("next() is in [0,1) and roughly uniform", () => {
    const rng = new Rng(1);
    const n = 100_000;
    let sum = 0;
    const bins = new Array<number>(10).fill(0);
    let outside = 0; // one assertion for the whole loop: 100k expect() calls cost seconds
    for (let i = 0; i < n; i++) {
      const u = rng.next();
      if (!(u >= 0 && u < 1)) outside++;
      sum += u;
      bins[Math.floor(u * 10)]++;
    }
    expect(outside).toBe(0);
    expect(Math.abs(sum / n - 0.5)).toBeLessThan(0.005);
    for (const count of bins) expect(Math.abs(count - n / 10)).toBeLessThan(600);
  });

  it("uniform(lo, hi) stays in range and validates its bounds", () => {
    const rng = new Rng(2);
    for (let i = 0; i < 1000; i++) {
      const v = rng.uniform(-0.25, 0.75);
      expect(v >= -0.25 && v < 0.75).toBe(true);
    }
    expect(() => rng.uniform(1, 0)).toThrow(/lo <= hi/);
    expect(() => rng.uniform(0, Infinity)).toThrow(/finite/);
  });

  it("normal() has mean ~0, variance ~1 and is deterministic", () => {
    const rng = new Rng(3);
    const n = 200_000;
    let sum = 0;
    let sumSq = 0;
    let notFinite = 0;
    for (let i = 0; i < n; i++) {
      const z = rng.normal();
      if (!Number.isFinite(z)) notFinite++;
      sum += z;
      sumSq += z * z;
    }
    expect(notFinite).toBe(0);
    const mean = sum / n;
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(Math.abs(sumSq / n - mean * mean - 1)).toBeLessThan(0.015);
    const a = new Rng(4);
    const b = new Rng(4);
    for (let i = 0; i < 11; i++) expect(a.normal()).toBe(b.normal());
  });

  it("normal() is Box-Muller over two uniforms", () => {
    const rng = new Rng(5);
    const copy = new Rng(5);
    const u1 = 1 - copy.next();
    const u2 = copy.next();
    const r = Math.sqrt(-2 * Math.log(u1));
    expect(rng.normal()).toBe(r * Math.cos(2 * Math.PI * u2));
    expect(rng.normal()).toBe(r * Math.sin(2 * Math.PI * u2));
  });

  it("int(n) covers [0,n) uniformly and rejects bad n", () => {
    const rng = new Rng(6);
    const counts = new Array<number>(7).fill(0);
    for (let i = 0; i < 70_000; i++) counts[rng.int(7)]++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(500);
    expect(rng.int(1)).toBe(0);
    expect(() => rng.int(0)).toThrow(/Rng.int: n must be an integer/);
    expect(() => rng.int(2.5)).toThrow(/Rng.int/);
  });

  it("shuffle is an in-place permutation and returns the same array", () => {
    const rng = new Rng(9);
    const arr = Array.from({ length: 50 }, (_, i) => i);
    const out = rng.shuffle(arr);
    expect(out).toBe(arr);
    expect([...arr].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(arr).not.toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it("permutation(n) equals shuffling [0..n-1] with the same seed", () => {
    const perm = new Rng(10).permutation(30);
    const shuffled = new Rng(10).shuffle(Array.from({ length: 30 }, (_, i) => i));
    expect(Array.from(perm)).toEqual(shuffled);
    expect(new Rng(10).permutation(0).length).toBe(0);
  });

  it("every position is equally likely under shuffle (first element of 3)", () => {
    const rng = new Rng(11);
    const firsts = [0, 0, 0];
    for (let i = 0; i < 30_000; i++) firsts[rng.shuffle([0, 1, 2])[0]]++;
    for (const c of firsts) expect(Math.abs(c - 10_000)).toBeLessThan(400);
  });

  it("getState/setState restore the sequence exactly, including a cached normal", () => {
    const rng = new Rng(12);
    rng.next();
    rng.normal(); // leaves the pair's second value cached
    const saved = JSON.parse(JSON.stringify(rng.getState())) as number[];
    const expected = [rng.normal(), rng.next(), rng.int(1000), rng.normal()];
    const other = new Rng(999);
    other.setState(saved);
    expect([other.normal(), other.next(), other.int(1000), other.normal()]).toEqual(expected);
  });

  it("rejects invalid seeds and states with clear errors", () => {
    expect(() => new Rng(1.5)).toThrow(/seed must be a safe integer, got 1.5/);
    expect(() => new Rng(Number.NaN)).toThrow(/seed/);
    const rng = new Rng(0);
    expect(() => rng.setState([1, 2, 3])).toThrow(/expected an array of 6 numbers/);
    expect(() => rng.setState([0, 0, 0, 0, 0, 0])).toThrow(/all zero/);
    expect(() => rng.setState([1, 2, 3, 2 ** 32, 0, 0])).toThrow(/word 3/);
    expect(() => rng.setState([1, 2, 3, 4, 2, 0])).toThrow(/index 4/);
  });
});
