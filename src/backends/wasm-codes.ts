/**
 * The op codes of the WASM element-wise kernels, defined once: asm/kernels.ts imports this file
 * (AssemblyScript compiles it as it is) and the host's tables map op kinds to these codes.
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
