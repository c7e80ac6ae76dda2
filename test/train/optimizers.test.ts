/** Optimizer update rules against updates worked out by hand, slicing invariance, validation. */
import { describe, expect, it } from "vitest";
import {
  applyUpdate,
  learningRateAt,
  stateCount,
  type OptimizerConfig,
} from "../../src/train/parallel/optimizer-kernels.js";
import { checkOptimizerConfig, Optimizer } from "../../src/train/optimizers.js";
import { Rng } from "../../src/train/random.js";
import { tensor, type Tensor } from "../../src/tensor/tensor.js";

/** Element-wise |actual - expected| <= tol * max(1, |expected|). */
function expectClose(actual: ArrayLike<number>, expected: readonly number[], tol = 1e-14): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    if (!(err <= tol * Math.max(1, Math.abs(expected[i])))) {
      throw new Error(`element ${i}: got ${actual[i]}, expected ${expected[i]} (error ${err})`);
    }
  }
}

/** One float64 parameter vector and an optimizer over it. */
function setup(config: OptimizerConfig, values: number[]): { p: Tensor; opt: Optimizer } {
  const p = tensor(values, { dtype: "float64" });
  return { p, opt: new Optimizer([p], config) };
}

const g = (values: number[]): Tensor => tensor(values, { dtype: "float64" });

// The same three gradients are used by most cases below.
const P0 = [1, -2, 0.5];
const G1 = [0.1, 0.2, -0.3];
const G2 = [0.5, -0.5, 1];
const G3 = [-0.2, 0.1, 0];

describe("SGD", () => {
  it("steps p -= lr * g", () => {
    const { p, opt } = setup({ kind: "sgd", lr: 0.1 }, P0);
    opt.step([g(G1)]);
    expectClose(p.data, [0.99, -2.02, 0.53]);
    opt.step([g(G2)]);
    expectClose(p.data, [0.94, -1.97, 0.43]);
    expect(opt.t).toBe(2);
    expect(opt.state[0]).toHaveLength(0);
  });

  it("adds L2 weight decay to the gradient: g + wd * p", () => {
    const { p, opt } = setup({ kind: "sgd", lr: 0.1, weightDecay: 0.1 }, P0);
    // g' = [0.1 + 0.1, 0.2 - 0.2, -0.3 + 0.05] = [0.2, 0, -0.25]
    opt.step([g(G1)]);
    expectClose(p.data, [0.98, -2, 0.525]);
    // g' = [0.5 + 0.098, -0.5 - 0.2, 1 + 0.0525] = [0.598, -0.7, 1.0525]
    opt.step([g(G2)]);
    expectClose(p.data, [0.9202, -1.93, 0.41975]);
  });
});

describe("momentum", () => {
  it("keeps a velocity b = mu * b + g and steps p -= lr * b", () => {
    const { p, opt } = setup({ kind: "momentum", lr: 0.1, momentum: 0.9 }, P0);
    opt.step([g(G1)]); // b = g1
    expectClose(opt.state[0][0].data, G1);
    expectClose(p.data, [0.99, -2.02, 0.53]);
    opt.step([g(G2)]); // b = 0.9 * g1 + g2 = [0.59, -0.32, 0.73]
    expectClose(opt.state[0][0].data, [0.59, -0.32, 0.73]);
    expectClose(p.data, [0.931, -1.988, 0.457]);
    opt.step([g(G3)]); // b = [0.531 - 0.2, -0.288 + 0.1, 0.657] = [0.331, -0.188, 0.657]
    expectClose(opt.state[0][0].data, [0.331, -0.188, 0.657]);
    expectClose(p.data, [0.8979, -1.9692, 0.3913]);
  });

  it("defaults mu to 0.9", () => {
    const a = setup({ kind: "momentum", lr: 0.1 }, P0);
    const b = setup({ kind: "momentum", lr: 0.1, momentum: 0.9 }, P0);
    for (const grad of [G1, G2, G3]) {
      a.opt.step([g(grad)]);
      b.opt.step([g(grad)]);
    }
    expect([...a.p.data]).toEqual([...b.p.data]);
  });

  it("Nesterov steps along g + mu * b", () => {
    const { p, opt } = setup({ kind: "momentum", lr: 0.1, momentum: 0.9, nesterov: true }, P0);
    // b = g1; step = g1 + 0.9 g1 = [0.19, 0.38, -0.57]
    opt.step([g(G1)]);
    expectClose(p.data, [0.981, -2.038, 0.557]);
    // b = [0.59, -0.32, 0.73]; step = g2 + 0.9 b = [1.031, -0.788, 1.657]
    opt.step([g(G2)]);
    expectClose(opt.state[0][0].data, [0.59, -0.32, 0.73]);
    expectClose(p.data, [0.8779, -1.9592, 0.3913]);
  });

  it("adds weight decay to the gradient before the velocity", () => {
    const { p, opt } = setup({ kind: "momentum", lr: 0.1, momentum: 0.5, weightDecay: 0.1 }, [2]);
    opt.step([g([1])]); // g' = 1 + 0.2 = 1.2; b = 1.2; p = 2 - 0.12
    expectClose(p.data, [1.88]);
    opt.step([g([1])]); // g' = 1 + 0.188 = 1.188; b = 0.6 + 1.188 = 1.788; p = 1.88 - 0.1788
    expectClose(opt.state[0][0].data, [1.788]);
    expectClose(p.data, [1.7012]);
  });
});

describe("Adam", () => {
  // beta1 = 0.5, beta2 = 0.75 make the bias corrections easy to follow by hand:
  // 1 - beta1^t = 0.5, 0.75, 0.875 and 1 - beta2^t = 0.25, 0.4375, 0.578125 for t = 1, 2, 3.
  const config: OptimizerConfig = { kind: "adam", lr: 0.1, beta1: 0.5, beta2: 0.75, eps: 0.1 };
  // t=1, g=2:  m = 1,     v = 1;      mhat = 2,    vhat = 4      -> step 0.1 * 2 / 2.1
  // t=2, g=-2: m = -0.5,  v = 1.75;   mhat = -2/3, vhat = 4      -> step 0.1 * (-2/3) / 2.1
  // t=3, g=1:  m = 0.25,  v = 1.5625; mhat = 2/7,  vhat = 100/37 -> step 0.1 * (2/7) / (sqrt(100/37) + 0.1)
  const steps = [0.2 / 2.1, -(0.2 / 3) / 2.1, 0.2 / 7 / (Math.sqrt(100 / 37) + 0.1)];
  const moments = [
    [1, 1],
    [-0.5, 1.75],
    [0.25, 1.5625],
  ];

  it("bias-corrects both moments at t = 1, 2, 3", () => {
    const { p, opt } = setup(config, [1]);
    let expected = 1;
    [2, -2, 1].forEach((grad, k) => {
      opt.step([g([grad])]);
      expected -= steps[k];
      expectClose(opt.state[0][0].data, [moments[k][0]]);
      expectClose(opt.state[0][1].data, [moments[k][1]]);
      expectClose(p.data, [expected]);
    });
    expectClose(p.data, [0.9365079365079365 - (0.1 * (2 / 7)) / (Math.sqrt(100 / 37) + 0.1)]);
  });

  it("with the default betas moves every element by about lr on the first step", () => {
    // t=1: mhat = g and vhat = g^2 exactly, so the step is lr * g / (|g| + 1e-8).
    const { p, opt } = setup({ kind: "adam", lr: 0.01 }, P0);
    opt.step([g(G1)]);
    expectClose(
      p.data,
      P0.map((x, i) => x - (0.01 * G1[i]) / (Math.abs(G1[i]) + 1e-8)),
      1e-12,
    );
    // t=2 with the defaults: m = 0.09 g1 + 0.1 g2, v = 0.000999 g1^2 + 0.001 g2^2,
    // corrections 1 - 0.81 = 0.19 and 1 - 0.998001 = 0.001999.
    const after1 = [...p.data];
    opt.step([g(G2)]);
    const expected = after1.map((x, i) => {
      const m = 0.09 * G1[i] + 0.1 * G2[i];
      const v = 0.000999 * G1[i] ** 2 + 0.001 * G2[i] ** 2;
      return x - (0.01 * (m / 0.19)) / (Math.sqrt(v / 0.001999) + 1e-8);
    });
    expectClose(p.data, expected, 1e-12);
  });

  it("decays weights decoupled (AdamW): p *= 1 - lr * wd, moments see the raw gradient", () => {
    const { p, opt } = setup({ ...config, weightDecay: 0.5 }, [1]);
    let expected = 1;
    [2, -2, 1].forEach((grad, k) => {
      opt.step([g([grad])]);
      expected = expected * (1 - 0.1 * 0.5) - steps[k];
      // The moments are those of the run without decay: the gradient was not changed.
      expectClose(opt.state[0][0].data, [moments[k][0]]);
      expectClose(opt.state[0][1].data, [moments[k][1]]);
      expectClose(p.data, [expected]);
    });
    // Worked out: 1 * 0.95 - 0.2/2.1 = 0.854761904761...
    const { p: q, opt: o } = setup({ ...config, weightDecay: 0.5 }, [1]);
    o.step([g([2])]);
    expectClose(q.data, [0.8547619047619047]);
  });
});

describe("applyUpdate", () => {
  const configs: OptimizerConfig[] = [
    { kind: "sgd", lr: 0.05, weightDecay: 0.01 },
    { kind: "momentum", lr: 0.05, momentum: 0.8, weightDecay: 0.01 },
    { kind: "momentum", lr: 0.05, momentum: 0.8, nesterov: true },
    { kind: "adam", lr: 0.003, weightDecay: 0.1 },
  ];
  const bytes = (a: Float32Array | Float64Array) =>
    new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

  for (const dtype of ["float64", "float32"] as const) {
    it(`over [0, k) then [k, n) equals one pass over [0, n), bitwise (${dtype})`, () => {
      const n = 37;
      const rng = new Rng(7);
      const make = (scale: number) => {
        const a = dtype === "float64" ? new Float64Array(n) : new Float32Array(n);
        for (let i = 0; i < n; i++) a[i] = rng.normal() * scale;
        return a;
      };
      for (const config of configs) {
        const params = make(1);
        const grads = make(0.3);
        const state = Array.from({ length: stateCount(config.kind) }, () =>
          make(0.1).map(Math.abs),
        );
        const run = (cuts: number[]) => {
          const outParams = params.slice();
          const outState = state.map((s) => s.slice());
          for (let c = 0; c + 1 < cuts.length; c++) {
            applyUpdate(config, 3, params, grads, state, outParams, outState, cuts[c], cuts[c + 1]);
          }
          return [outParams, ...outState];
        };
        const whole = run([0, n]);
        for (const cuts of [
          [0, 1, n],
          [0, 13, n],
          [0, n - 1, n],
          [0, 5, 6, 20, n],
        ]) {
          const sliced = run(cuts);
          sliced.forEach((a, i) =>
            expect(bytes(a), `${config.kind} cuts ${cuts} array ${i}`).toEqual(bytes(whole[i])),
          );
        }
        // The default range is the whole vector, and in-place (aliased) output agrees too.
        const inPlace = params.slice();
        const inPlaceState = state.map((s) => s.slice());
        applyUpdate(config, 3, inPlace, grads, inPlaceState, inPlace, inPlaceState);
        expect(bytes(inPlace)).toEqual(bytes(whole[0]));
        inPlaceState.forEach((s, i) => expect(bytes(s)).toEqual(bytes(whole[i + 1])));
        // Something did change.
        expect(bytes(whole[0])).not.toEqual(bytes(params));
      }
    });
  }

  it("leaves elements outside [start, end) of the outputs untouched", () => {
    const params = Float64Array.of(1, 2, 3, 4);
    const out = Float64Array.of(9, 9, 9, 9);
    applyUpdate({ kind: "sgd", lr: 1 }, 1, params, Float64Array.of(1, 1, 1, 1), [], out, [], 1, 3);
    expect([...out]).toEqual([9, 1, 2, 9]);
  });
});

describe("optimizer configuration", () => {
  const rejects = (config: OptimizerConfig, message: RegExp) => {
    expect(() => checkOptimizerConfig(config)).toThrow(RangeError);
    expect(() => checkOptimizerConfig(config)).toThrow(message);
    expect(() => new Optimizer([tensor([1])], config)).toThrow(message);
  };

  it("rejects a negative, zero or non-finite learning rate", () => {
    rejects({ kind: "sgd", lr: -0.1 }, /optimizer sgd: lr must be a positive number, got -0.1/);
    rejects({ kind: "adam", lr: 0 }, /lr must be a positive number, got 0/);
    rejects({ kind: "sgd", lr: Number.NaN }, /lr .*NaN/);
    rejects({ kind: "sgd", lr: Infinity }, /lr .*Infinity/);
  });

  it("rejects an unknown kind", () => {
    rejects(
      { kind: "rmsprop" as OptimizerConfig["kind"], lr: 0.1 },
      /unknown optimizer kind "rmsprop" \(expected "sgd", "momentum" or "adam"\)/,
    );
  });

  it("rejects betas outside [0, 1)", () => {
    rejects({ kind: "adam", lr: 0.1, beta1: 1 }, /betas must be in \[0, 1\), got 1/);
    rejects({ kind: "adam", lr: 0.1, beta2: 1.5 }, /betas must be in \[0, 1\), got 1.5/);
    rejects({ kind: "adam", lr: 0.1, beta1: -0.1 }, /betas must be in \[0, 1\), got -0.1/);
  });

  it("rejects negative momentum, weight decay and a non-positive eps", () => {
    rejects({ kind: "momentum", lr: 0.1, momentum: -0.5 }, /momentum must be a non-negative/);
    rejects({ kind: "sgd", lr: 0.1, weightDecay: -1 }, /weightDecay must be a non-negative/);
    rejects({ kind: "adam", lr: 0.1, eps: 0 }, /eps must be a positive number/);
  });

  it("accepts zero momentum, zero weight decay and beta 0, returning the config", () => {
    const config: OptimizerConfig = { kind: "adam", lr: 0.1, beta1: 0, weightDecay: 0 };
    expect(checkOptimizerConfig(config)).toBe(config);
    expect(() => checkOptimizerConfig({ kind: "momentum", lr: 1, momentum: 0 })).not.toThrow();
  });

  it("Optimizer.step rejects a wrong gradient count or shape", () => {
    const opt = new Optimizer([tensor([1, 2])], { kind: "sgd", lr: 0.1 });
    expect(() => opt.step([])).toThrow(/0 gradients for 1 parameters/);
    expect(() => opt.step([tensor([1, 2, 3])])).toThrow(/gradient 0 has shape \[3\]/);
  });
});

describe("learning-rate schedules", () => {
  it("constant by default; cosine from lr at t=1 through lr/2 halfway to 0 at the end", () => {
    expect(learningRateAt({ kind: "sgd", lr: 0.3 }, 57)).toBe(0.3);
    const cosine: OptimizerConfig = {
      kind: "sgd",
      lr: 0.4,
      schedule: { kind: "cosine", totalSteps: 100 },
    };
    expect(learningRateAt(cosine, 1)).toBeCloseTo(0.4, 15);
    expect(learningRateAt(cosine, 51)).toBeCloseTo(0.2, 15);
    expect(learningRateAt(cosine, 26)).toBeCloseTo(0.2 * (1 + Math.SQRT1_2), 15);
    expect(learningRateAt(cosine, 101)).toBeCloseTo(0, 15);
    expect(learningRateAt(cosine, 500)).toBeCloseTo(0, 15);
  });

  it("applyUpdate uses the scheduled rate of step t", () => {
    const cosine: OptimizerConfig = {
      kind: "sgd",
      lr: 1,
      schedule: { kind: "cosine", totalSteps: 2 },
    };
    const p = new Float64Array([1]);
    applyUpdate(cosine, 2, p, new Float64Array([1]), [], p, []);
    expect(p[0]).toBeCloseTo(1 - 0.5, 15);
  });
});
