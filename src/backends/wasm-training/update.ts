/**
 * The trainer's reduce-and-update in WASM (build/train.wasm, from asm/train.ts): where the engine
 * has shared WebAssembly memory, the parameters, optimizer state and gradient slots live in one
 * shared `WebAssembly.Memory` that every thread maps (the shared state carries it to workers), and
 * each thread runs the index-order slot sum fused with the optimizer update over its slice there,
 * bitwise the same as the JS reference (slots.ts, optimizer-kernels.ts) that runs elsewhere.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../../package.js";
import { wasmApi, wasmSimdSupported, type WasmMemory } from "../wasm-module.js";
import type { DType, TypedArray } from "../../tensor/tensor.js";

type ReduceUpdate = (
  width: number,
  kind: number,
  slots: number,
  count: number,
  stride: number,
  start: number,
  end: number,
  scale: number,
  params: number,
  next: number,
  s0: number,
  s0next: number,
  s1: number,
  s1next: number,
  ...constants: number[]
) => void;

interface TrainExports {
  heapBase(): number;
  reduceUpdateOf: ReduceUpdate;
}

/** Bytes the module keeps for itself at the start of the memory (its heap base must fit). */
const RESERVED_BYTES = 65536;
const PAGE_BYTES = 65536;
/** wasm32's limit: 65536 pages of 64 KiB. */
const MAX_PAGES = 65536;

let compiled: object | null | undefined;

/** The compiled build/train.wasm, or null where the engine or the build lacks it. */
function trainModule(): object | null {
  if (compiled !== undefined) return compiled;
  const api = wasmApi();
  const path = join(packageRoot(), "build", "train.wasm");
  compiled =
    api && wasmSimdSupported() && existsSync(path) ? new api.Module(readFileSync(path)) : null;
  return compiled;
}

/**
 * A shared memory with room for `sizes` arrays of `dtype` (each 64-byte aligned) and those arrays
 * carved out of it, or undefined where the engine or build lacks what the kernels need or the
 * arrays do not fit in 4 GiB (callers then use SharedArrayBuffers and the JS update).
 */
export function allocateInMemory(
  dtype: DType,
  sizes: readonly number[],
): { memory: WasmMemory; arrays: TypedArray[] } | undefined {
  const api = wasmApi();
  if (!api || trainModule() === null) return undefined;
  const elem = dtype === "float32" ? 4 : 8;
  const offsets: number[] = [];
  let top = RESERVED_BYTES;
  for (const n of sizes) {
    offsets.push(top);
    top += Math.ceil((n * elem) / 64) * 64;
  }
  const pages = Math.ceil(top / PAGE_BYTES);
  if (pages > MAX_PAGES) return undefined;
  let memory: WasmMemory;
  try {
    memory = new api.Memory({ initial: pages, maximum: pages, shared: true });
  } catch {
    return undefined; // the engine could not reserve it: the SharedArrayBuffer path still works
  }
  const buffer = memory.buffer;
  const arrays = sizes.map((n, i) =>
    dtype === "float32"
      ? new Float32Array(buffer, offsets[i], n)
      : new Float64Array(buffer, offsets[i], n),
  );
  return { memory, arrays };
}

/** The arrays one reduce-and-update reads and writes, all views of the kernels' memory. */
export interface UpdateArrays {
  slots: TypedArray;
  count: number;
  stride: number;
  params: TypedArray;
  next: TypedArray;
  state: readonly TypedArray[];
  nextState: readonly TypedArray[];
}

/**
 * The fused slot sum and update over `memory`, instantiated for this thread: `run(arrays, start,
 * end, scale, rule, constants)` does for elements [start, end) what sumSlots then applyUpdate do.
 */
export function updateKernels(memory: WasmMemory): UpdateRunner {
  const api = wasmApi();
  const module = trainModule();
  if (!api || module === null) throw new Error("build/train.wasm cannot run in this engine");
  const exports = new api.Instance(module, { env: { memory } }).exports as TrainExports;
  if (exports.heapBase() > RESERVED_BYTES) {
    throw new Error(`build/train.wasm needs ${exports.heapBase()} bytes of its own memory`);
  }
  return new UpdateRunner(exports);
}

/** One thread's instance of the update kernels. */
export class UpdateRunner {
  /** Wraps an instance's exports. */
  constructor(private readonly exports: TrainExports) {}

  /**
   * Sums the slots over [start, end) in slot order, scales, and applies optimizer `rule` with its
   * ten `constants` (asm/train.ts's numbering and order: optimizer-kernels.ts's wasmRule gives both).
   */
  run(
    a: UpdateArrays,
    start: number,
    end: number,
    scale: number,
    rule: number,
    constants: Float64Array,
  ): void {
    const at = (x: TypedArray | undefined) => (x === undefined ? 0 : x.byteOffset);
    this.exports.reduceUpdateOf(
      a.params.BYTES_PER_ELEMENT,
      rule,
      a.slots.byteOffset,
      a.count,
      a.stride,
      start,
      end,
      scale,
      a.params.byteOffset,
      a.next.byteOffset,
      at(a.state[0]),
      at(a.nextState[0]),
      at(a.state[1]),
      at(a.nextState[1]),
      // NOTE: written out, not spread: a spread call allocated its arguments every step.
      constants[0],
      constants[1],
      constants[2],
      constants[3],
      constants[4],
      constants[5],
      constants[6],
      constants[7],
      constants[8],
      constants[9],
    );
  }
}
