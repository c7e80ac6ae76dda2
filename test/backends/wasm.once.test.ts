/** The WASM SIMD backend against the reference jsBackend and a float64 reference. */
import { uniformValues } from "../helpers/evaluate.js";
import { describe, expect, it } from "vitest";
import type { BinaryKind } from "../../src/tensor/backend.js";
import { jsBackend } from "../../src/tensor/kernels/js.js";
import { createWasmBackend, tryWasmBackend } from "../../src/backends/wasm.js";
import { wasmSimdSupported } from "../../src/backends/wasm-module.js";
import { setBackend } from "../../src/tensor/active.js";
import { placeInBackend } from "../../src/tensor/tensor.js";
import {
  allocate,
  allocateArray,
  releaseArray,
  tensor,
  type DType,
  Tensor,
} from "../../src/tensor/tensor.js";

const wasm = createWasmBackend();

function randomTensor(shape: number[], dtype: DType, seed: number): Tensor {
  const size = shape.reduce((p, d) => p * d, 1);
  return tensor(uniformValues(size, seed), { shape, dtype });
}

/** Element (i, j) of op(x) for a 2-D row-major x. */
function at(x: Tensor, trans: boolean, i: number, j: number): number {
  return trans ? x.data[j * x.shape[1] + i] : x.data[i * x.shape[1] + j];
}

/** op(a) @ op(b) in float64 and, per element, sum |a||b| (the scale of its rounding error). */
function reference(a: Tensor, b: Tensor, transA: boolean, transB: boolean, m: number, n: number) {
  const k = transA ? a.shape[0] : a.shape[1];
  const value = new Float64Array(m * n);
  const scale = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      let abs = 0;
      for (let p = 0; p < k; p++) {
        const prod = at(a, transA, i, p) * at(b, transB, p, j);
        s += prod;
        abs += Math.abs(prod);
      }
      value[i * n + j] = s;
      scale[i * n + j] = abs;
    }
  }
  return { value, scale };
}

/** Operands for op(a) @ op(b) of an (m x k) @ (k x n) product. */
function operands(
  [m, k, n]: readonly number[],
  transA: boolean,
  transB: boolean,
  dtype: DType,
  seed: number,
): [Tensor, Tensor] {
  const a = randomTensor(transA ? [k, m] : [m, k], dtype, seed);
  const b = randomTensor(transB ? [n, k] : [k, n], dtype, seed + 1);
  return [a, b];
}

const sizes: readonly (readonly [number, number, number])[] = [
  [1, 1, 1],
  [3, 5, 7],
  [2, 9, 3],
  [17, 33, 65],
  [128, 64, 96],
  [70, 300, 9], // crosses the 256 K-block and the 64-row block, odd panel width
  [5, 257, 130],
  [128, 256, 10], // the MLP's last layer: an 8-wide panel and a 2-column tail
  [36, 270, 15], // a 7-column tail (pairs, then one), 16-row and 4-row tail kernels, K-blocks
  [20, 40, 4],
];
const transposes: readonly (readonly [boolean, boolean])[] = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];

/** A tensor in the kernels' memory (what the Evaluator and the shards allocate). */
const placed = (shape: number[], dtype: "float32" | "float64") =>
  placeInBackend(() => allocate(shape, dtype));

describe("wasm backend", () => {
  it("is available here", () => {
    expect(wasmSimdSupported()).toBe(true);
    expect(wasm.name).toBe("wasm");
    expect(tryWasmBackend()?.name).toBe("wasm");
  });

  it("createWasmBackend names an unknown option or build", () => {
    expect(() => createWasmBackend({ arena: false } as never)).toThrow(
      /createWasmBackend: arena: options must be an object/,
    );
    expect(() => createWasmBackend({ bytes: 1 } as never)).toThrow(
      /createWasmBackend: unknown option "bytes"/,
    );
    expect(() => createWasmBackend({ build: "fast" } as never)).toThrow(
      /createWasmBackend: build must be "auto", "simd" or "relaxed"; got string/,
    );
  });

  for (const [transA, transB] of transposes) {
    for (const size of sizes) {
      const [m, k, n] = size;
      const label = `${m}x${k}x${n} transA=${transA} transB=${transB}`;

      it(`matmul float32 ${label} matches a float64 reference`, () => {
        const [a, b] = operands(size, transA, transB, "float32", m * 1000 + k * 10 + n);
        const got = wasm.matmul(a, b, transA, transB);
        const js = jsBackend.matmul(a, b, transA, transB);
        expect(got.dtype).toBe("float32");
        expect(got.shape).toEqual([m, n]);
        const { value, scale } = reference(a, b, transA, transB, m, n);
        // The worst element against its tolerance: one assertion, not 2 m n expect() calls.
        let worstReference = 0;
        let worstJs = 0;
        for (let i = 0; i < m * n; i++) {
          const tolerance = 1e-5 * scale[i] + 1e-30;
          worstReference = Math.max(worstReference, Math.abs(got.data[i] - value[i]) / tolerance);
          worstJs = Math.max(worstJs, Math.abs(got.data[i] - js.data[i]) / (2 * tolerance));
        }
        expect(worstReference).toBeLessThanOrEqual(1);
        expect(worstJs).toBeLessThanOrEqual(1);
      });

      it(`matmul float64 ${label} matches the js backend`, () => {
        const [a, b] = operands(size, transA, transB, "float64", m * 7 + k * 3 + n);
        const got = wasm.matmul(a, b, transA, transB);
        const js = jsBackend.matmul(a, b, transA, transB);
        expect(got.dtype).toBe("float64");
        expect(got.shape).toEqual([m, n]);
        const { scale } = reference(a, b, transA, transB, m, n);
        let worst = 0;
        for (let i = 0; i < m * n; i++) {
          worst = Math.max(worst, Math.abs(got.data[i] - js.data[i]) / (1e-12 * scale[i]));
        }
        expect(worst).toBeLessThanOrEqual(1);
      });
    }
  }

  it("matmul is deterministic: repeated runs are bitwise equal", () => {
    for (const dtype of ["float32", "float64"] as const) {
      for (const [transA, transB] of transposes) {
        const [a, b] = operands([70, 300, 33], transA, transB, dtype, 42);
        const first = wasm.matmul(a, b, transA, transB);
        wasm.matmul(...operands([128, 64, 96], false, false, dtype, 7), false, false);
        const second = wasm.matmul(a, b, transA, transB);
        expect(Buffer.from(second.data.buffer).equals(Buffer.from(first.data.buffer))).toBe(true);
        const other = createWasmBackend().matmul(a, b, transA, transB);
        expect(Buffer.from(other.data.buffer).equals(Buffer.from(first.data.buffer))).toBe(true);
      }
    }
  });

  it("expF64 is within 2 ulp (4.5e-16) of Math.exp (plus one step for subnormal results), and exact at its edges", () => {
    const h = wasm.arena!;
    const n = 1 << 16;
    const x = h.allocate(n, "float64") as Float64Array;
    const out = h.allocate(n, "float64") as Float64Array;
    const ranges: [number, number][] = [
      [-1, 1],
      [-50, 0],
      [-745.5, 709.9],
      [-746, -700],
      [700, 709.78],
    ];
    for (const [lo, hi] of ranges) {
      const u = uniformValues(n, Math.round(hi - lo));
      for (let i = 0; i < n; i++) x[i] = lo + (hi - lo) * u[i];
      wasm.kernels.expF64(h.addressOf(x), h.addressOf(out), n);
      let worst = 0;
      for (let i = 0; i < n; i++) {
        const want = Math.exp(x[i]);
        const error = Math.abs(out[i] - want);
        // Below 2^-1022 the spacing is 2^-1074: the relative bound plus one step of it.
        if (want < 2 ** -1022)
          expect(error, `exp(${x[i]})`).toBeLessThanOrEqual(4.5e-16 * want + 2 ** -1074);
        else worst = Math.max(worst, error / want);
      }
      expect(worst, `[${lo}, ${hi}]`).toBeLessThanOrEqual(4.5e-16);
    }
    const edges = [
      NaN,
      Infinity,
      -Infinity,
      0,
      -0,
      709.79,
      710,
      1e308,
      -745.2,
      -746,
      -1e308,
      1e-300,
    ];
    x.set(edges);
    wasm.kernels.expF64(h.addressOf(x), h.addressOf(out), edges.length);
    edges.forEach((v, i) => expect(Object.is(out[i], Math.exp(v)), `exp(${v})`).toBe(true));
  });

  it("crossEntropyOf is within 1e-13 (float64) and 1e-6 (float32) of the js kernels (extreme logits, NaN, -Infinity)", () => {
    const previous = setBackend(wasm);
    try {
      for (const dtype of ["float32", "float64"] as const) {
        const tolerance = dtype === "float32" ? 1e-6 : 1e-13;
        for (const n of [5, 10, 1]) {
          const rows = 7;
          const logits = placed([rows, n], dtype);
          const targets = placed([rows, n], dtype);
          const values = uniformValues(rows * n, 3 + n);
          for (let i = 0; i < rows * n; i++) logits.data[i] = values[i] * 20 - 10;
          if (n === 5) {
            logits.data.set([1e4, -1e4, 3, 0, -0], 0); // max-subtracted: finite
            logits.data.set([NaN, 1, 2, 3, 4], n); // NaN wins the max
            logits.data.set([-Infinity, 1, 2, 3, 4], 2 * n);
          }
          for (let r = 0; r < rows; r++) targets.data[r * n + (r % n)] = r === 3 ? 0.5 : 1;
          const loss = placed([], dtype);
          const grad = placed([rows, n], dtype);
          const at = (t: Tensor) => wasm.arena!.addressOf(t.data);
          const width = logits.data.BYTES_PER_ELEMENT;
          const call = (into: Tensor, gradient: boolean, divisor: number) =>
            wasm.kernels.crossEntropyOf(
              width,
              at(logits),
              at(targets),
              gradient ? 0 : at(into),
              gradient ? at(into) : 0,
              rows,
              n,
              divisor,
            );
          call(loss, false, 1);
          call(grad, true, 1);
          const wantLoss = jsBackend.softmaxCrossEntropy(logits, targets, 1);
          const wantGrad = jsBackend.softmaxCrossEntropyGrad(logits, targets, 1);
          const close = (got: number, want: number, scale: number) =>
            Object.is(got, want) || Math.abs(got - want) <= tolerance * scale;
          const [l, wl] = [loss.data[0], wantLoss.data[0]];
          expect(close(l, wl, Math.abs(wl)), `${dtype} loss ${l} vs ${wl}`).toBe(true);
          for (let i = 0; i < rows * n; i++) {
            const [g, w] = [grad.data[i], wantGrad.data[i]];
            // p * sum(t) - t: its size is the terms' (t up to 1), not the difference's.
            const scale = Math.abs(w) + Math.abs(targets.data[i]);
            expect(close(g, w, scale), `${dtype} gradient [${i}]: ${g} vs ${w}`).toBe(true);
          }
          if (n === 5) expect(Number.isNaN(grad.data[n])).toBe(true);
          // The backend's kernels (the Evaluator's path) are this call; a mean divides the stored
          // values as the op's compute does: both the compiled step's bits.
          const bytes = (t: Tensor) =>
            Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
          const viaBackend = wasm.softmaxCrossEntropyGrad(logits, targets, 1);
          expect(bytes(viaBackend).equals(bytes(grad)), `${dtype} backend gradient`).toBe(true);
          const meanGrad = placed([rows, n], dtype);
          call(meanGrad, true, rows);
          const divided = grad.data.map((v) => v / rows);
          expect(bytes(meanGrad).equals(bytes(new Tensor(divided, grad.shape)))).toBe(true);
          const meanLoss = placed([], dtype);
          call(meanLoss, false, rows);
          expect(Object.is(meanLoss.data[0], loss.data.map((v) => v / rows)[0])).toBe(true);
        }
      }
    } finally {
      setBackend(previous);
    }
  });

  it("matmul writes every element of an output taken unzeroed from the pool", () => {
    const previous = setBackend(wasm);
    try {
      for (const dtype of ["float32", "float64"] as const) {
        // Tile-aligned (written in place) and ragged (copied out of scratch) shapes, and k = 0.
        for (const [m, k, n] of [
          [32, 40, 16],
          [7, 13, 10],
          [5, 0, 3],
        ]) {
          for (let i = 0; i < 3; i++) {
            const dirty = allocateArray(m * n, dtype);
            dirty.fill(NaN);
            expect(releaseArray(dirty)).toBe(true);
          }
          const [a, b] = operands([m, k, n], false, false, dtype, m + k);
          const c = wasm.matmul(a, b, false, false);
          const { value } = reference(a, b, false, false, m, n);
          for (let i = 0; i < m * n; i++) expect(c.data[i]).toBeCloseTo(value[i], 4);
        }
      }
    } finally {
      setBackend(previous);
    }
  });

  it("matmul mixes dtypes into float64 and handles empty dimensions", () => {
    const [a, b] = operands([6, 10, 5], false, false, "float32", 3);
    const b64 = b.clone({ dtype: "float64" });
    const got = wasm.matmul(a, b64, false, false);
    const js = jsBackend.matmul(a, b64, false, false);
    expect(got.dtype).toBe("float64");
    for (let i = 0; i < got.size; i++) expect(got.data[i]).toBeCloseTo(js.data[i], 12);

    const zeroK = wasm.matmul(
      randomTensor([3, 0], "float32", 1),
      randomTensor([0, 4], "float32", 2),
      false,
      false,
    );
    expect(zeroK.shape).toEqual([3, 4]);
    expect([...zeroK.data]).toEqual(new Array(12).fill(0));
    const zeroM = wasm.matmul(
      randomTensor([0, 3], "float64", 1),
      randomTensor([3, 4], "float64", 2),
      false,
      false,
    );
    expect(zeroM.shape).toEqual([0, 4]);
  });

  it("matmul names the shapes when inner dimensions differ", () => {
    const a = randomTensor([2, 3], "float32", 1);
    const b = randomTensor([4, 5], "float32", 2);
    expect(() => wasm.matmul(a, b, false, false)).toThrow("[2,3] @ [4,5]");
  });

  it("binary kernels equal the js backend bitwise (same shapes), broadcasting delegates", () => {
    for (const dtype of ["float32", "float64"] as const) {
      for (const kind of ["add", "sub", "mul", "div"] as BinaryKind[]) {
        for (const shape of [[3], [7, 13], [128, 257]]) {
          const x = randomTensor(shape, dtype, 11);
          const y = randomTensor(shape, dtype, 12);
          const got = wasm.binary(kind, x, y);
          const js = jsBackend.binary(kind, x, y);
          expect(got.shape).toEqual(shape);
          expect(got.dtype).toBe(dtype);
          // Compare the views' own bytes: with the arena, got.data.buffer is the whole heap.
          const bytes = (t: typeof got) =>
            Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
          expect(bytes(got).equals(bytes(js))).toBe(true);
        }
      }
      const x = randomTensor([64, 10], dtype, 1);
      const bias = randomTensor([10], dtype, 2);
      expect([...wasm.binary("add", x, bias).data]).toEqual([
        ...jsBackend.binary("add", x, bias).data,
      ]);
    }
  });
});
