/** The relaxed-SIMD build against plain SIMD and js; the element-wise kernels bitwise against js. */
import { uniformValues } from "../helpers/evaluate.js";
import { copying } from "../helpers/backends.js";
import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { afterAll, describe, expect, it } from "vitest";
import { setBackend } from "../../src/tensor/active.js";
import { type BinaryKind, type ConvGeometry } from "../../src/tensor/backend.js";
import { useBackend } from "../../src/backends/select.js";
import { jsBackend } from "../../src/tensor/kernels/js.js";
import {
  createWasmBackend,
  wasmSharedKernelsPath,
  type WasmBackend,
} from "../../src/backends/wasm.js";
import { wasmRelaxedSimdSupported } from "../../src/backends/wasm-module.js";
import { wasmStats } from "../../src/backends/wasm-arena.js";
import { tensor, type DType, type Tensor } from "../../src/tensor/tensor.js";

const relaxed = createWasmBackend({ minElements: 0 });
const plain = createWasmBackend({ minElements: 0, build: "simd" });
const copied = copying(createWasmBackend({ minElements: 0, build: "simd" }));

afterAll(() => {
  setBackend(jsBackend);
});

/** A random tensor made with `owner` active, so a wasm backend's arena holds it. */
function randomTensor(owner: WasmBackend, shape: number[], dtype: DType, seed: number): Tensor {
  const previous = setBackend(owner);
  try {
    const size = shape.reduce((p, d) => p * d, 1);
    return tensor(uniformValues(size, seed), { shape, dtype });
  } finally {
    setBackend(previous);
  }
}

/** The bytes of a tensor's data (base64), for bitwise comparisons. */
function bits(t: Tensor): string {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString("base64");
}

const sizes: readonly (readonly [number, number, number])[] = [
  [1, 1, 1],
  [3, 5, 7],
  [17, 33, 65],
  [70, 300, 9],
  [5, 257, 130],
  [128, 256, 10],
  [36, 270, 15],
];
const transposes = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
] as const;

describe("relaxed SIMD build", () => {
  it("is chosen by default where the engine accepts relaxed SIMD (Node 20: after the V8 flag)", () => {
    expect(wasmRelaxedSimdSupported()).toBe(true);
    expect(relaxed.build).toBe("relaxed");
    expect(relaxed.name).toBe("wasm");
    expect(plain.build).toBe("simd");
    expect(plain.name).toBe("wasm-plain");
    expect(copied.build).toBe("simd");
    expect((useBackend("wasm") as WasmBackend).build).toBe("relaxed");
    expect((useBackend("wasm-plain") as WasmBackend).build).toBe("simd");
    useBackend("js");
  });

  it("is accepted by worker threads started after the flag was set", async () => {
    const bytes = readFileSync(wasmSharedKernelsPath("relaxed"));
    const worker = new Worker(
      `const { parentPort, workerData } = require("node:worker_threads");
       parentPort.postMessage(WebAssembly.validate(workerData));`,
      { eval: true, workerData: bytes },
    );
    const valid = await new Promise((resolve) => worker.once("message", resolve));
    await worker.terminate();
    expect(valid).toBe(true);
  });

  for (const dtype of ["float32", "float64"] as const) {
    const rtol = dtype === "float32" ? 1e-5 : 1e-12;
    for (const [transA, transB] of transposes) {
      it(`matmul ${dtype} transA=${transA} transB=${transB}: relaxed, plain and js agree`, () => {
        for (const [m, k, n] of sizes) {
          const seed = m * 1000 + k * 10 + n;
          const a = randomTensor(relaxed, transA ? [k, m] : [m, k], dtype, seed);
          const b = randomTensor(relaxed, transB ? [n, k] : [k, n], dtype, seed + 1);
          const fused = relaxed.matmul(a, b, transA, transB);
          const unfused = plain.matmul(a, b, transA, transB);
          const js = jsBackend.matmul(a, b, transA, transB);
          for (let i = 0; i < m * n; i++) {
            const tolerance = rtol * Math.max(1, Math.abs(js.data[i])) * Math.sqrt(k);
            expect(Math.abs(fused.data[i] - js.data[i])).toBeLessThanOrEqual(tolerance);
            expect(Math.abs(fused.data[i] - unfused.data[i])).toBeLessThanOrEqual(tolerance);
          }
        }
      });
    }
  }

  it("matmul is deterministic: two runs are bitwise equal, on any transposes", () => {
    for (const dtype of ["float32", "float64"] as const) {
      for (const [transA, transB] of transposes) {
        const a = randomTensor(relaxed, transA ? [300, 70] : [70, 300], dtype, 3);
        const b = randomTensor(relaxed, transB ? [33, 300] : [300, 33], dtype, 4);
        const first = relaxed.matmul(a, b, transA, transB);
        const second = createWasmBackend({ minElements: 0 }).matmul(a, b, transA, transB);
        expect(bits(second)).toEqual(bits(first));
      }
    }
  });
});

/** Values that probe the edges of relu and step: signed zeros, NaN, infinities, subnormals. */
const edges = [0, -0, NaN, Infinity, -Infinity, 1e-45, -1e-45, 5e-324, 3, -3];

describe.each([
  ["arena", relaxed],
  ["copying", copied],
] as const)("element-wise wasm kernels (%s) equal the js backend bitwise", (_, wasm) => {
  for (const dtype of ["float32", "float64"] as const) {
    it(`relu and step, ${dtype}`, () => {
      for (const size of [1, 3, 4, 7, 64, 1001]) {
        const values = uniformValues(size, size).map((v, i) => (i < edges.length ? edges[i] : v));
        const x = randomTensor(wasm, [size], dtype, 1);
        x.data.set(values);
        for (const kind of ["relu", "step"] as const) {
          const calls = wasmStats.calls;
          const got = wasm.unary(kind, x);
          expect(wasmStats.calls).toBe(calls + 1);
          expect(bits(got)).toEqual(bits(jsBackend.unary(kind, x)));
        }
      }
    });

    it(`row-broadcast add/sub/mul/div, ${dtype}`, () => {
      for (const [rows, cols] of [
        [2, 1],
        [3, 5],
        [128, 256],
        [50, 10],
        [7, 33],
      ]) {
        const x = randomTensor(wasm, [rows, cols], dtype, rows + cols);
        for (const rowShape of [[cols], [1, cols]]) {
          const row = randomTensor(wasm, rowShape, dtype, cols);
          for (const kind of ["add", "sub", "mul", "div"] as BinaryKind[]) {
            const calls = wasmStats.calls;
            expect(bits(wasm.binary(kind, x, row))).toEqual(bits(jsBackend.binary(kind, x, row)));
            expect(wasmStats.calls).toBe(calls + 1);
            // row (op) x: add and mul swap their operands into the same kernel.
            expect(bits(wasm.binary(kind, row, x))).toEqual(bits(jsBackend.binary(kind, row, x)));
          }
        }
      }
      // A block of trailing dims (a position per token over a batch): one call, the js bits.
      const x = randomTensor(wasm, [4, 3, 18], dtype, 9);
      for (const blockShape of [
        [3, 18],
        [1, 3, 18],
      ]) {
        const block = randomTensor(wasm, blockShape, dtype, 10);
        for (const kind of ["add", "sub", "mul", "div"] as BinaryKind[]) {
          const calls = wasmStats.calls;
          expect(bits(wasm.binary(kind, x, block))).toEqual(bits(jsBackend.binary(kind, x, block)));
          expect(wasmStats.calls).toBe(calls + 1);
        }
      }
    });

    it(`column sums (sumTo and reduce sum over leading axes), ${dtype}`, () => {
      for (const shape of [
        [2, 1],
        [3, 5],
        [128, 256],
        [50, 10],
        [129, 37],
        [4, 3, 18],
        [1000, 3],
      ]) {
        const x = randomTensor(wasm, shape, dtype, shape[0]);
        x.data[0] = -0;
        const last = shape.slice(1);
        const calls = wasmStats.calls;
        expect(bits(wasm.sumTo(x, last))).toEqual(bits(jsBackend.sumTo(x, last)));
        const keep = [1, ...last];
        expect(bits(wasm.sumTo(x, keep))).toEqual(bits(jsBackend.sumTo(x, keep)));
        expect(bits(wasm.reduce("sum", x, [0], false))).toEqual(
          bits(jsBackend.reduce("sum", x, [0], false)),
        );
        expect(wasm.reduce("sum", x, [0], true).shape).toEqual(keep);
        if (last.reduce((p, d) => p * d, 1) > 1) expect(wasmStats.calls).toBe(calls + 4);
        if (shape.length === 3) {
          const axes = [0, 1];
          expect(bits(wasm.reduce("sum", x, axes, false))).toEqual(
            bits(jsBackend.reduce("sum", x, axes, false)),
          );
          expect(bits(wasm.sumTo(x, [shape[2]]))).toEqual(bits(jsBackend.sumTo(x, [shape[2]])));
        }
        // Reductions over other axes delegate to js (same values).
        expect(bits(wasm.reduce("sum", x, [shape.length - 1], false))).toEqual(
          bits(jsBackend.reduce("sum", x, [shape.length - 1], false)),
        );
      }
    });
  }
});

/** Each element of `got` within `rtol * sqrt(terms)` of `want` (relative, floor 1). */
function expectClose(got: Tensor, want: Tensor, rtol: number, terms: number): void {
  expect(got.shape).toEqual(want.shape);
  for (let i = 0; i < want.size; i++) {
    const tolerance = rtol * Math.max(1, Math.abs(want.data[i])) * Math.sqrt(terms);
    expect(Math.abs(got.data[i] - want.data[i])).toBeLessThanOrEqual(tolerance);
  }
}

describe("batched products and convolution on the wasm kernels, against js", () => {
  // Stacks that pair up, one matrix broadcast by a zero stride (either side), rows not a multiple
  // of the tile (the padded results compacted between products), and a mixed broadcast (the
  // per-matrix path).
  const stacks: [number[], number[]][] = [
    [
      [2, 3, 4],
      [2, 4, 5],
    ],
    [
      [4, 7, 9],
      [1, 9, 6],
    ],
    [
      [1, 5, 3],
      [3, 2, 3, 8],
    ],
    [
      [6, 28, 128],
      [6, 128, 28],
    ],
    [
      [3, 1, 2, 4],
      [2, 4, 3],
    ],
  ];
  for (const backend of [relaxed, plain, copied]) {
    for (const dtype of ["float32", "float64"] as const) {
      const rtol = dtype === "float32" ? 1e-5 : 1e-12;
      it(`${backend.name} ${dtype}: stacked products on every transpose equal js's`, () => {
        for (const [sa, sb] of stacks) {
          for (const [transA, transB] of transposes) {
            const swap = (s: number[], t: boolean) =>
              t ? [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]] : s;
            const a = randomTensor(relaxed, swap(sa, transA), dtype, sa.length * 7 + 1);
            const b = randomTensor(relaxed, swap(sb, transB), dtype, sb.length * 7 + 2);
            const want = jsBackend.matmul(a, b, transA, transB);
            expectClose(backend.matmul(a, b, transA, transB), want, rtol, sa[sa.length - 1]);
          }
        }
      });
      it(`${backend.name} ${dtype}: conv2d and both gradients equal js's (stride, padding)`, () => {
        const cases: ({ x: number[]; w: number[] } & ConvGeometry)[] = [
          { x: [3, 2, 9, 8], w: [4, 2, 3, 3], stride: [1, 1], padding: [0, 0] },
          { x: [2, 3, 11, 10], w: [5, 3, 5, 4], stride: [2, 3], padding: [2, 1] },
          { x: [1, 1, 6, 6], w: [2, 1, 6, 6], stride: [1, 1], padding: [1, 2] },
        ];
        for (const [i, { x: xs, w: ws, stride, padding }] of cases.entries()) {
          const geometry: ConvGeometry = { stride, padding };
          const x = randomTensor(relaxed, xs, dtype, 10 + i);
          const w = randomTensor(relaxed, ws, dtype, 20 + i);
          const want = jsBackend.conv2d(x, w, geometry);
          const terms = ws[1] * ws[2] * ws[3];
          expectClose(backend.conv2d(x, w, geometry), want, rtol, terms);
          const g = randomTensor(relaxed, [...want.shape], dtype, 30 + i);
          const gx = jsBackend.conv2dInputGrad(g, w, xs, geometry);
          expectClose(backend.conv2dInputGrad(g, w, xs, geometry), gx, rtol, terms);
          const gw = jsBackend.conv2dFilterGrad(x, g, ws, geometry);
          expectClose(backend.conv2dFilterGrad(x, g, ws, geometry), gw, rtol, want.size);
        }
      });
    }
  }
});

describe("max-pooling on the wasm kernel, bitwise against js", () => {
  for (const backend of [relaxed, copied]) {
    for (const dtype of ["float32", "float64"] as const) {
      it(`${backend.name} ${dtype}: values and gradients, ties and NaN, overlapping windows`, () => {
        // [.., 9, 12]: the 2x2 windows four at a time in SIMD lanes (6 per row: 4, then 2).
        const x = randomTensor(relaxed, [2, 3, 9, 12], dtype, 41);
        // Ties (the first maximum wins: in a row, across rows) and NaN (it wins, its first).
        x.data[0] = x.data[1] = 5;
        x.data[2] = x.data[14] = 7;
        x.data[20] = NaN;
        x.data[21] = NaN;
        x.data[30] = NaN;
        x.data[42] = Infinity;
        x.data[43] = -Infinity;
        for (const geometry of [
          { size: [2, 2], stride: [2, 2] },
          { size: [3, 2], stride: [1, 2] },
          { size: [2, 3], stride: [2, 1] },
        ] as const) {
          const pooled = jsBackend.maxPoolSelect(x, x, geometry);
          expect(bits(backend.maxPoolSelect(x, x, geometry))).toBe(bits(pooled));
          const g = randomTensor(relaxed, [...pooled.shape], dtype, 42);
          const want = jsBackend.maxPoolGrad(g, x, geometry);
          expect(bits(backend.maxPoolGrad(g, x, geometry))).toBe(bits(want));
          // Another tensor picked at x's maxima (the forward rule of maxPoolGrad's adjoint).
          const u = randomTensor(relaxed, [...x.shape], dtype, 43);
          expect(bits(backend.maxPoolSelect(u, x, geometry))).toBe(
            bits(jsBackend.maxPoolSelect(u, x, geometry)),
          );
        }
      });
    }
  }
});

describe("per-channel values on the wasm kernels, bitwise against js", () => {
  for (const backend of [relaxed, copied]) {
    for (const dtype of ["float32", "float64"] as const) {
      it(`${backend.name} ${dtype}: x (op) bias [F,1,1] and the bias gradient's sum`, () => {
        // Inner runs of 35 (SIMD lanes and a tail), one image and several.
        for (const [shape, bias] of [
          [
            [3, 4, 5, 7],
            [4, 1, 1],
          ],
          [
            [4, 5, 7],
            [4, 1, 1],
          ],
          [
            [2, 3, 4, 6],
            [1, 3, 4, 1],
          ],
        ] as const) {
          const x = randomTensor(relaxed, [...shape], dtype, 51);
          const b = randomTensor(relaxed, [...bias], dtype, 52);
          for (const kind of ["add", "sub", "mul", "div"] as const) {
            expect(bits(backend.binary(kind, x, b))).toBe(bits(jsBackend.binary(kind, x, b)));
          }
          expect(bits(backend.sumTo(x, bias))).toBe(bits(jsBackend.sumTo(x, bias)));
        }
      });
    }
  }
});
