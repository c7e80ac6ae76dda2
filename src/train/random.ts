/** Rng: one seeded PRNG (xoshiro128**, seeded by splitmix64) for splits, shuffles and init. */

const MASK64 = (1n << 64n) - 1n;
const TWO_POW_32 = 4294967296;

/** One step of splitmix64 over a BigInt state; returns [newState, output]. */
function splitmix64(state: bigint): [bigint, bigint] {
  const next = (state + 0x9e3779b97f4a7c15n) & MASK64;
  let z = next;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return [next, z ^ (z >> 31n)];
}

/**
 * A deterministic pseudo-random generator: same seed, same sequence, on every platform.
 * Example: `new Rng(0).permutation(5)` is the same Int32Array on every run.
 */
export class Rng {
  // xoshiro128** state: four unsigned 32-bit words, never all zero.
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  // Box-Muller draws two normals per pair of uniforms; the second waits here (part of the state).
  private spare: number | null = null;

  /** Seeds the generator from any safe integer (negative seeds are taken modulo 2^64). */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) {
      throw new Error(`Rng: seed must be a safe integer, got ${String(seed)}`);
    }
    const [state, a] = splitmix64(BigInt.asUintN(64, BigInt(seed)));
    const [, b] = splitmix64(state);
    this.s0 = Number(a & 0xffffffffn);
    this.s1 = Number(a >> 32n);
    this.s2 = Number(b & 0xffffffffn);
    this.s3 = Number(b >> 32n);
    // splitmix64 outputs are a bijection of the state, so all-zero happens for at most one
    // seed; guard anyway because xoshiro stays at zero forever from an all-zero state.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** The next raw unsigned 32-bit output of xoshiro128**. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    this.s0 >>>= 0;
    this.s1 >>>= 0;
    this.s2 >>>= 0;
    this.s3 >>>= 0;
    return result;
  }

  /** A uniform number in [0, 1) with 32 random bits. */
  next(): number {
    return this.nextUint32() / TWO_POW_32;
  }

  /** A uniform number in [lo, hi). Example: `rng.uniform(-0.1, 0.1)`. */
  uniform(lo: number, hi: number): number {
    if (!Number.isFinite(lo) || !Number.isFinite(hi) || hi < lo) {
      throw new Error(`Rng.uniform: need finite lo <= hi, got lo=${lo}, hi=${hi}`);
    }
    return lo + (hi - lo) * this.next();
  }

  /** A standard normal sample (Box-Muller; pairs are generated and the second one cached). */
  normal(): number {
    if (this.spare !== null) {
      const z = this.spare;
      this.spare = null;
      return z;
    }
    // 1 - next() is in (0, 1], so the logarithm is finite.
    const u1 = 1 - this.next();
    const u2 = this.next();
    const radius = Math.sqrt(-2 * Math.log(u1));
    const angle = 2 * Math.PI * u2;
    this.spare = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }

  /** A uniform integer in [0, n), without modulo bias. Example: `rng.int(10)` is a digit. */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_POW_32) {
      throw new Error(`Rng.int: n must be an integer in [1, 2^32], got ${n}`);
    }
    // Reject the top partial bucket so every residue is equally likely.
    const limit = TWO_POW_32 - (TWO_POW_32 % n);
    let u = this.nextUint32();
    while (u >= limit) u = this.nextUint32();
    return u % n;
  }

  /** Shuffles `arr` in place (Fisher-Yates) and returns it. */
  shuffle<T>(arr: T[]): T[] {
    for (let i = arr.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = arr[i];
      arr[i] = arr[j];
      arr[j] = tmp;
    }
    return arr;
  }

  /** A random permutation of 0..n-1 (the same draws as shuffling [0..n-1]). */
  permutation(n: number): Int32Array {
    if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) {
      throw new Error(`Rng.permutation: n must be a non-negative integer, got ${n}`);
    }
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) out[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = out[i];
      out[i] = out[j];
      out[j] = tmp;
    }
    return out;
  }

  /** The full state as plain JSON-safe numbers: [s0, s1, s2, s3, hasSpare, spare]. */
  getState(): number[] {
    return [this.s0, this.s1, this.s2, this.s3, this.spare === null ? 0 : 1, this.spare ?? 0];
  }

  /** Restores a state from {@link Rng.getState}; the sequence then continues exactly. */
  setState(state: number[]): void {
    if (!Array.isArray(state) || state.length !== 6) {
      throw new Error(
        `Rng.setState: expected an array of 6 numbers from getState(), got ${describe(state)}`,
      );
    }
    for (let i = 0; i < 4; i++) {
      const w = state[i];
      if (!Number.isInteger(w) || w < 0 || w >= TWO_POW_32) {
        throw new Error(`Rng.setState: word ${i} must be an unsigned 32-bit integer, got ${w}`);
      }
    }
    if ((state[0] | state[1] | state[2] | state[3]) === 0) {
      throw new Error("Rng.setState: the four state words are all zero (not a valid state)");
    }
    if (state[4] !== 0 && state[4] !== 1) {
      throw new Error(`Rng.setState: flag at index 4 must be 0 or 1, got ${state[4]}`);
    }
    if (!Number.isFinite(state[5])) {
      throw new Error(`Rng.setState: cached normal at index 5 must be finite, got ${state[5]}`);
    }
    [this.s0, this.s1, this.s2, this.s3] = state;
    this.spare = state[4] === 1 ? state[5] : null;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

function describe(value: unknown): string {
  return Array.isArray(value) ? `an array of length ${value.length}` : typeof value;
}
