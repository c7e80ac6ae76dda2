/** Optimizers over parameter tensors: SGD, momentum (optionally Nesterov) and Adam(W). */
import { applyUpdate, stateCount, type OptimizerConfig } from "./parallel/optimizer-kernels.js";
import { fmt, sameShape } from "../tensor/shape.js";
import { allocate, type Tensor } from "../tensor/tensor.js";
import { checkOptions, typeName } from "../tensor/options.js";

export type { OptimizerConfig, OptimizerKind } from "./parallel/optimizer-kernels.js";

/** The keys an optimizer config may have. */
const OPTIMIZER_KEYS: (keyof OptimizerConfig)[] = [
  "kind",
  "lr",
  "momentum",
  "nesterov",
  "beta1",
  "beta2",
  "eps",
  "weightDecay",
  "schedule",
];

/** Validates an optimizer config; throws a RangeError naming the bad field. */
export function checkOptimizerConfig(config: OptimizerConfig): OptimizerConfig {
  const positive = (name: string, v: number | undefined, allowZero = false) => {
    if (v === undefined) return;
    if (!Number.isFinite(v) || v < 0 || (!allowZero && v === 0)) {
      throw new RangeError(
        `optimizer ${config.kind}: ${name} must be a ${allowZero ? "non-negative" : "positive"} number, got ${v}`,
      );
    }
  };
  const example = '{ kind: "adam", lr: 1e-3 }';
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    const given = typeof config === "string" ? `the string "${config}"` : typeName(config);
    throw new TypeError(`optimizer must be an object such as ${example}, got ${given}`);
  }
  checkOptions("optimizer", config, OPTIMIZER_KEYS, example);
  if (!["sgd", "momentum", "adam"].includes(config.kind)) {
    throw new RangeError(
      `unknown optimizer kind ${JSON.stringify(config.kind)} (expected "sgd", "momentum" or "adam"), as in ${example}`,
    );
  }
  if (config.lr === undefined) {
    throw new RangeError(`optimizer ${config.kind}: lr is required, as in ${example}`);
  }
  positive("lr", config.lr);
  if (config.nesterov !== undefined && typeof config.nesterov !== "boolean") {
    throw new TypeError(
      `optimizer ${config.kind}: nesterov must be true or false, got ${typeName(config.nesterov)}`,
    );
  }
  const schedule = config.schedule;
  if (schedule !== undefined) {
    const ok =
      typeof schedule === "object" &&
      schedule !== null &&
      (schedule.kind === "constant" ||
        (schedule.kind === "cosine" &&
          Number.isSafeInteger(schedule.totalSteps) &&
          schedule.totalSteps > 0));
    if (!ok) {
      throw new RangeError(
        `optimizer ${config.kind}: schedule must be { kind: "constant" } or { kind: "cosine", totalSteps: N } with N a positive integer, got ${JSON.stringify(schedule)}`,
      );
    }
  }
  positive("momentum", config.momentum, true);
  positive("weightDecay", config.weightDecay, true);
  positive("eps", config.eps);
  for (const b of [config.beta1, config.beta2]) {
    if (b !== undefined && !(b >= 0 && b < 1))
      throw new RangeError(`optimizer adam: betas must be in [0, 1), got ${b}`);
  }
  return config;
}

/**
 * Updates parameter tensors in place from gradient tensors.
 * Example: `const opt = new Optimizer([W, b], { kind: "adam", lr: 1e-3 }); opt.step([dW, db]);`
 */
export class Optimizer {
  /** Number of steps taken so far. */
  t = 0;
  /** Per parameter, the rule's state tensors (momentum buffer; Adam's m and v). */
  readonly state: Tensor[][];

  /** Creates zeroed state for `params` under `config`. */
  constructor(
    readonly params: readonly Tensor[],
    readonly config: OptimizerConfig,
  ) {
    checkOptimizerConfig(config);
    this.state = params.map((p) =>
      Array.from({ length: stateCount(config.kind) }, () => allocate(p.shape, p.dtype)),
    );
  }

  /** Applies one update with `grads` (one per parameter, same shapes). */
  step(grads: readonly Tensor[]): void {
    if (grads.length !== this.params.length) {
      throw new Error(
        `Optimizer.step: ${grads.length} gradients for ${this.params.length} parameters`,
      );
    }
    this.t++;
    this.params.forEach((p, i) => {
      if (!sameShape(p.shape, grads[i].shape)) {
        throw new Error(
          `Optimizer.step: gradient ${i} has shape ${fmt(grads[i].shape)}, parameter has ${fmt(p.shape)}`,
        );
      }
      const state = this.state[i].map((s) => s.data);
      applyUpdate(this.config, this.t, p.data, grads[i].data, state, p.data, state);
    });
  }
}
