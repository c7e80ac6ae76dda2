/**
 * Optimizer update kernels over flat parameter vectors: element-wise, so any slicing of the vector
 * (one thread or sixteen) gives bitwise the same result.
 */
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
  const lr = learningRateAt(config, t);
  const wd = config.weightDecay ?? 0;
  if (config.kind === "sgd") {
    for (let i = start; i < end; i++) {
      const g = grads[i] + wd * params[i];
      outParams[i] = params[i] - lr * g;
    }
  } else if (config.kind === "momentum") {
    const mu = config.momentum ?? 0.9;
    const [buf] = state;
    const [outBuf] = outState;
    for (let i = start; i < end; i++) {
      const g = grads[i] + wd * params[i];
      const b = mu * buf[i] + g;
      outBuf[i] = b;
      outParams[i] = params[i] - lr * (config.nesterov ? g + mu * b : b);
    }
  } else {
    const b1 = config.beta1 ?? 0.9;
    const b2 = config.beta2 ?? 0.999;
    const eps = config.eps ?? 1e-8;
    const c1 = 1 - Math.pow(b1, t);
    const c2 = 1 - Math.pow(b2, t);
    const [m, v] = state;
    const [outM, outV] = outState;
    // Constants hoisted out of the loop: lr * m^ / (sqrt(v^) + eps) with m^ = m/c1, v^ = v/c2.
    const a1 = 1 - b1;
    const a2 = 1 - b2;
    const stepSize = lr / c1;
    const invC2 = 1 / c2;
    const decay = 1 - lr * wd;
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
