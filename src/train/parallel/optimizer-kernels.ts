/**
 * Optimizer update kernels over flat parameter vectors: element-wise, so any slicing of the vector
 * (one thread or sixteen) gives bitwise the same result.
 */
import { UpdateRule } from "../../backends/wasm-codes.js";
import type { TypedArray } from "../../tensor/tensor.js";

/** The update rules. */
export type OptimizerKind = "sgd" | "momentum" | "adam";

/** Hyper-parameters of an update rule (plain data: it crosses to workers). */
export interface OptimizerConfig {
  kind: OptimizerKind;
  lr: number;
  /** Momentum coefficient (momentum), default 0.9. */
  momentum?: number;
  /** Nesterov momentum (momentum). */
  nesterov?: boolean;
  /** Adam's beta1, beta2, eps (defaults 0.9, 0.999, 1e-8). */
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** L2 weight decay: added to the gradient for sgd/momentum, decoupled (AdamW) for adam. */
  weightDecay?: number;
  /** Learning-rate schedule: constant (default) or cosine decay to 0 over `totalSteps`. */
  schedule?: { kind: "constant" } | { kind: "cosine"; totalSteps: number };
}

/** The learning rate of update number `t` (1-based) under the config's schedule. */
export function learningRateAt(config: OptimizerConfig, t: number): number {
  const schedule = config.schedule;
  if (!schedule || schedule.kind === "constant") return config.lr;
  const progress = Math.min(1, (t - 1) / Math.max(1, schedule.totalSteps));
  return config.lr * 0.5 * (1 + Math.cos(Math.PI * progress));
}

/** Number of state vectors the rule keeps per parameter vector. */
export function stateCount(kind: OptimizerKind): number {
  return kind === "sgd" ? 0 : kind === "momentum" ? 1 : 2;
}

/** The constants of update number `t` every implementation of the rules reads (JS below, WASM). */
export interface UpdateConstants {
  lr: number;
  /** Weight decay. */
  wd: number;
  /** Momentum's coefficient, and 1 for Nesterov momentum, else 0. */
  mu: number;
  nesterov: number;
  /** Adam: beta1, beta2, eps, 1 - beta1, 1 - beta2, lr / (1 - beta1^t), 1 / (1 - beta2^t), 1 - lr wd. */
  b1: number;
  b2: number;
  eps: number;
  a1: number;
  a2: number;
  stepSize: number;
  invC2: number;
  decay: number;
}

/** The constants of update number `t` (1-based) under `config`, computed once per update. */
export function updateConstants(config: OptimizerConfig, t: number): UpdateConstants {
  const lr = learningRateAt(config, t);
  const wd = config.weightDecay ?? 0;
  const b1 = config.beta1 ?? 0.9;
  const b2 = config.beta2 ?? 0.999;
  // Adam's lr * m^ / (sqrt(v^) + eps) with m^ = m/c1, v^ = v/c2, its constants out of the loop.
  const c1 = 1 - Math.pow(b1, t);
  const c2 = 1 - Math.pow(b2, t);
  return {
    lr,
    wd,
    mu: config.momentum ?? 0.9,
    nesterov: config.nesterov ? 1 : 0,
    b1,
    b2,
    eps: config.eps ?? 1e-8,
    a1: 1 - b1,
    a2: 1 - b2,
    stepSize: lr / c1,
    invC2: 1 / c2,
    decay: 1 - lr * wd,
  };
}

/** The WASM update's rule code of each optimizer (wasm-codes.ts, which asm/train.ts imports). */
const WASM_RULES: Record<OptimizerConfig["kind"], UpdateRule> = {
  sgd: UpdateRule.sgd,
  momentum: UpdateRule.momentum,
  adam: UpdateRule.adam,
};

/**
 * Update number `t` under `config` as the WASM update kernel takes it (asm/train.ts): its
 * constants written into `into` in that kernel's order (lr, weight decay, then the rule's own
 * eight), its rule number returned. `into` is the caller's, reused every step.
 */
export function wasmRule(config: OptimizerConfig, t: number, into: Float64Array): UpdateRule {
  const c = updateConstants(config, t);
  const adam = config.kind === "adam";
  into[0] = c.lr;
  into[1] = c.wd;
  into[2] = adam ? c.b1 : c.mu;
  into[3] = adam ? c.b2 : c.nesterov;
  into[4] = adam ? c.eps : 0;
  into[5] = adam ? c.a1 : 0;
  into[6] = adam ? c.a2 : 0;
  into[7] = adam ? c.stepSize : 0;
  into[8] = adam ? c.invC2 : 0;
  into[9] = adam ? c.decay : 0;
  return WASM_RULES[config.kind];
}

/**
 * Applies update number `t` (1-based) to elements [start, end) of `params`, reading `grads` and
 * reading/writing `state`; results go to `outParams`/`outState` (which may alias the inputs).
 */
export function applyUpdate(
  config: OptimizerConfig,
  t: number,
  params: TypedArray,
  grads: TypedArray,
  state: readonly TypedArray[],
  outParams: TypedArray,
  outState: readonly TypedArray[],
  start = 0,
  end = params.length,
): void {
  const { lr, wd, mu, b1, b2, eps, a1, a2, stepSize, invC2, decay } = updateConstants(config, t);
  if (config.kind === "sgd") {
    for (let i = start; i < end; i++) {
      const g = grads[i] + wd * params[i];
      outParams[i] = params[i] - lr * g;
    }
  } else if (config.kind === "momentum") {
    const [buf] = state;
    const [outBuf] = outState;
    for (let i = start; i < end; i++) {
      const g = grads[i] + wd * params[i];
      const b = mu * buf[i] + g;
      outBuf[i] = b;
      outParams[i] = params[i] - lr * (config.nesterov ? g + mu * b : b);
    }
  } else {
    const [m, v] = state;
    const [outM, outV] = outState;
    for (let i = start; i < end; i++) {
      const g = grads[i];
      const mi = b1 * m[i] + a1 * g;
      const vi = b2 * v[i] + a2 * (g * g);
      outM[i] = mi;
      outV[i] = vi;
      outParams[i] = params[i] * decay - (stepSize * mi) / (Math.sqrt(vi * invC2) + eps);
    }
  }
}
