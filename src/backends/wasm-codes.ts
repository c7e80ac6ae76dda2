/**
 * The codes the WASM kernels take, defined once: asm/kernels.ts and asm/train.ts import this file
 * (AssemblyScript compiles it as it is) and the host's tables map op kinds and optimizers to them.
 */

/** x (op) y: binaryF32/F64, rowBinary (y per column), channelBinary (y per channel). */
export enum BinaryCode {
  add = 0,
  sub = 1,
  mul = 2,
  div = 3,
}

/** f(x): unaryF32/F64. */
export enum UnaryCode {
  relu = 0,
  step = 1,
}

/** The optimizer rule of the fused reduce-and-update (asm/train.ts reduceUpdateOf). */
export enum UpdateRule {
  sgd = 0,
  momentum = 1,
  adam = 2,
}
