/** Tensor: a shape, a dtype and a contiguous row-major typed array (plain or shared memory). */
import { checkOptions, typeName } from "./options.js";
import { fmt, sizeOf } from "./shape.js";

/** Element types adjoint computes in. */
export type DType = "float32" | "float64";
/** The typed arrays that back a tensor. */
export type TypedArray = Float32Array | Float64Array;
/** Nested number arrays of any depth, or a number for a 0-d tensor. */
export type NestedArray = number | NestedArray[];

/** Options of {@link tensor}. */
export interface TensorOptions {
  shape?: readonly number[];
  dtype?: DType;
  shared?: boolean;
}

/**
 * Debug counters (read by `npm run bench:train`): Tensor objects constructed, fresh typed arrays
 * allocated (the pool's misses) and their elements, and arrays taken from the pool (its hits), so
 * a bench can show what a training step allocates.
 */
export const tensorStats = {
  constructed: 0,
  arraysAllocated: 0,
  elementsAllocated: 0,
  arraysReused: 0,
};

/** An immutable-by-convention n-dimensional array; ops never write into their inputs. */
export class Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly data: TypedArray;
  readonly size: number;

  /** Wraps `data` (not copied) with `shape`; throws when the lengths disagree. */
  constructor(data: TypedArray, shape: readonly number[]) {
    tensorStats.constructed++;
    if (!(data instanceof Float32Array || data instanceof Float64Array)) {
      throw new TypeError(
        `new Tensor(data, shape): data must be a Float32Array or a Float64Array, got ${typeName(data)} (tensor(values) converts nested arrays)`,
      );
    }
    validateShape(shape, "new Tensor(data, shape)");
    const size = sizeOf(shape);
    if (data.length !== size) {
      throw new Error(
        `tensor: data length ${data.length} does not match shape ${fmt(shape)} (size ${size})`,
      );
    }
    this.data = data;
    this.shape = Object.freeze([...shape]);
    this.size = size;
    this.dtype = data instanceof Float32Array ? "float32" : "float64";
  }

  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }

  /** Nested JS arrays in row-major order; a plain number for a 0-d tensor. */
  toArray(): NestedArray {
    if (this.shape.length === 0) return this.data[0];
    const build = (dim: number, offset: number, stride: number): NestedArray[] => {
      const n = this.shape[dim];
      const inner = stride / n;
      const out: NestedArray[] = new Array(n);
      for (let i = 0; i < n; i++) {
        out[i] =
          dim === this.shape.length - 1
            ? this.data[offset + i]
            : build(dim + 1, offset + i * inner, inner);
      }
      return out;
    };
    return build(0, 0, this.size);
  }

  /** The single value of a tensor with one element. */
  item(): number {
    if (this.size !== 1)
      throw new Error(`item(): tensor of shape ${fmt(this.shape)} has ${this.size} elements`);
    return this.data[0];
  }

  /** A deep copy, optionally into another dtype or onto shared memory. */
  clone(opts: { dtype?: DType; shared?: boolean } = {}): Tensor {
    const out = allocate(this.shape, opts.dtype ?? this.dtype, opts.shared ?? false);
    out.data.set(this.data);
    return out;
  }

  /** The same data viewed under another shape of equal size (no copy). */
  reshapeView(shape: readonly number[]): Tensor {
    return new Tensor(this.data, shape);
  }
}

/** The largest element count a tensor may have: what one typed array can hold in V8 (2^32 - 1). */
export const MAX_TENSOR_SIZE = 2 ** 32 - 1;

/** Throws unless `shape` is an array of non-negative integers whose product can be allocated. */
function validateShape(shape: readonly number[], where = "tensor"): void {
  if (!Array.isArray(shape)) {
    throw new TypeError(`${where}: shape must be an array of sizes, got ${typeName(shape)}`);
  }
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0)
      throw new RangeError(
        `${where}: invalid shape [${(shape as readonly unknown[]).map((d) => (typeof d === "number" ? String(d) : JSON.stringify(d))).join(",")}]: dimensions must be non-negative integers`,
      );
  }
  const size = sizeOf(shape);
  if (size > MAX_TENSOR_SIZE) {
    throw new RangeError(
      `${where}: shape ${fmt(shape)} has ${size} elements, more than the ${MAX_TENSOR_SIZE} one tensor can hold`,
    );
  }
}

/** Throws unless `dtype` is one adjoint computes in. */
function validateDType(dtype: unknown, where: string): asserts dtype is DType {
  if (dtype !== "float32" && dtype !== "float64") {
    throw new TypeError(
      `${where}: dtype must be "float32" or "float64", got ${typeof dtype === "string" ? JSON.stringify(dtype) : typeName(dtype)}`,
    );
  }
}

// NOTE: the buffer pool. Allocating a 128x256 fp32 array costs more than relu over it, so arrays
// released by their owner (the Evaluator, for intermediates past their last use) are kept in free
// lists by dtype and exact length, per thread (module state: each worker has its own), and
// allocateArray hands them out again zero-filled, exactly as a fresh array would be. Only arrays
// allocateArray itself created (on plain memory, or in the wasm backend's arena) are ever pooled
// (a WeakSet lookup, ~4x cheaper than inspecting `.buffer`): views, SharedArrayBuffer arrays and
// arrays made elsewhere never are.
const freeFloat32 = new Map<number, Float32Array[]>();
const freeFloat64 = new Map<number, Float64Array[]>();
/** The free lists of arrays in a backend's memory: handed out only inside placeInBackend(). */
const backendFloat32 = new Map<number, Float32Array[]>();
const backendFloat64 = new Map<number, Float64Array[]>();
const poolable = new WeakSet<TypedArray>();
/** Arrays now in a free list: a release checks it in O(1) (a list scan was quadratic in a chain). */
const inPool = new WeakSet<TypedArray>();
let pooling = true;

/** Turns the buffer pool on or off (off also empties it); returns the previous setting. */
export function setPooling(enabled: boolean): boolean {
  const previous = pooling;
  pooling = enabled;
  if (!enabled) clearPool();
  return previous;
}

/** Whether allocateArray takes released arrays from the pool. */
export function poolingEnabled(): boolean {
  return pooling;
}

/** Drops the arrays held by the pool (they become garbage): "plain" keeps the backend memory's. */
export function clearPool(which: "all" | "plain" = "all"): void {
  const pools = [freeFloat32, freeFloat64];
  if (which === "all") pools.push(backendFloat32, backendFloat64);
  for (const lists of pools) {
    for (const list of lists.values()) for (const data of list) inPool.delete(data);
    lists.clear();
  }
}

/**
 * Returns `data` to this thread's pool for a later allocateArray of the same dtype and length;
 * the caller must hold no other reference to it. Only arrays allocateArray created (not shared)
 * are taken; views, shared memory, other arrays and an array already pooled are not (returns
 * false), nor anything while pooling is off.
 */
export function releaseArray(data: TypedArray): boolean {
  if (!pooling || !poolable.has(data) || inPool.has(data)) return false;
  const f32 = data instanceof Float32Array;
  const lists: Map<number, TypedArray[]> = inBackend.has(data)
    ? f32
      ? backendFloat32
      : backendFloat64
    : f32
      ? freeFloat32
      : freeFloat64;
  const list = lists.get(data.length);
  if (list === undefined) lists.set(data.length, [data]);
  else list.push(data);
  inPool.add(data);
  return true;
}

/** Returns a tensor's data to the pool (see {@link releaseArray}); the tensor must not be used again. */
export function release(t: Tensor): boolean {
  return releaseArray(t.data);
}

/**
 * A zero-filled typed array of `dtype`: on a SharedArrayBuffer when `shared`, else a released
 * array of this length from the pool when there is one, else a fresh one. `zero` false (for a
 * kernel that writes every element) skips zeroing a pooled array, which may then hold old values.
 */
export function allocateArray(size: number, dtype: DType, shared = false, zero = true): TypedArray {
  if (!Number.isSafeInteger(size) || size < 0 || size > MAX_TENSOR_SIZE) {
    throw new RangeError(
      `allocateArray: size ${size} is not an element count from 0 to ${MAX_TENSOR_SIZE}`,
    );
  }
  if (pooling && !shared) {
    // Outside placeInBackend() only plain arrays are handed out (see the NOTE on placement).
    // Inside it, an arena's arrays only while the arena places arrays (a plain array there would
    // cost the kernels a copy), else plain ones.
    const arena = placing > 0 && arrayAllocator !== undefined && arrayAllocator.placing();
    const lists: Map<number, TypedArray[]> = arena
      ? dtype === "float32"
        ? backendFloat32
        : backendFloat64
      : dtype === "float32"
        ? freeFloat32
        : freeFloat64;
    const list = lists.get(size);
    if (list !== undefined && list.length > 0) {
      tensorStats.arraysReused++;
      const data = list.pop()!;
      inPool.delete(data);
      if (zero && (arrayAllocator === undefined || !arrayAllocator.zero(data))) data.fill(0);
      return data;
    }
  }
  tensorStats.arraysAllocated++;
  tensorStats.elementsAllocated += size;
  if (shared) {
    return dtype === "float32"
      ? new Float32Array(new SharedArrayBuffer(size * 4))
      : new Float64Array(new SharedArrayBuffer(size * 8));
  }
  const hooked = pooling && placing > 0 ? arrayAllocator?.allocate(size, dtype) : undefined;
  if (hooked !== undefined) inBackend.add(hooked);
  const data = hooked ?? plainArray(size, dtype);
  poolable.add(data);
  return data;
}

// NOTE: placement. Arrays go to the backend's memory only inside placeInBackend(): while the
// Evaluator computes (its intermediates go back to the pool at their last use, its outputs are
// copied out) and where a training shard plans buffers it holds and reuses. A tensor a user makes
// (tensor(), zeros(), clone()) is a plain array that the garbage collector frees under memory
// pressure; in the arena it would wait for a FinalizationRegistry callback, which a synchronous
// loop never lets run, and the arena would grow by it every iteration.
let placing = 0;

/**
 * Runs `fn` with fresh arrays placed in the active backend's memory (the wasm arena), for code
 * that gives them back to the pool or holds them for reuse. Example: `placeInBackend(() => ev.runInPlace(f))`.
 */
export function placeInBackend<T>(fn: () => T): T {
  placing++;
  try {
    return fn();
  } finally {
    placing--;
  }
}

/** A fresh plain array; an allocation the engine refuses names the size it was asked for. */
function plainArray(size: number, dtype: DType): TypedArray {
  try {
    return dtype === "float32" ? new Float32Array(size) : new Float64Array(size);
  } catch (error) {
    const bytes = size * (dtype === "float32" ? 4 : 8);
    throw new RangeError(
      `cannot allocate ${size.toLocaleString("en-US")} ${dtype} values (${(bytes / 2 ** 30).toFixed(1)} GiB): ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/** Arrays the {@link ArrayAllocator} placed in a backend's memory (the wasm arena). */
const inBackend = new WeakSet<TypedArray>();

/**
 * Whether `data` lives in a backend's own memory (the wasm arena), where it is freed only when
 * released to the pool or collected: what the Evaluator copies out before handing it to a caller.
 */
export function inBackendMemory(data: TypedArray): boolean {
  return inBackend.has(data);
}

/**
 * Where allocateArray takes the fresh (non-shared) arrays the pool then recycles. The wasm backend
 * installs one that places arrays in its linear memory, so its kernels read and write them in
 * place.
 */
export interface ArrayAllocator {
  /** A zero-filled array of `size` elements, or undefined for a plain one. */
  allocate(size: number, dtype: DType): TypedArray | undefined;
  /** Whether it places arrays now (the active backend has an arena). */
  placing(): boolean;
  /** Zeroes `data` if it is one of its own (faster than `fill(0)` there) and says whether it did. */
  zero(data: TypedArray): boolean;
}

// NOTE: consulted only while pooling is on: an array in the linear memory is handed back to it
// when the array is garbage collected, which a loop that never yields to the event loop would
// delay without bound; with the pool off every step would allocate afresh.
let arrayAllocator: ArrayAllocator | undefined;

/** Installs (or with undefined removes) this thread's {@link ArrayAllocator}; returns the previous. */
export function setArrayAllocator(
  allocator: ArrayAllocator | undefined,
): ArrayAllocator | undefined {
  const previous = arrayAllocator;
  arrayAllocator = allocator;
  return previous;
}

/** A zero-filled tensor of `shape` and `dtype` (`zero` false: see {@link allocateArray}). */
export function allocate(
  shape: readonly number[],
  dtype: DType = "float64",
  shared = false,
  zero = true,
): Tensor {
  validateShape(shape);
  validateDType(dtype, "tensor");
  return new Tensor(allocateArray(sizeOf(shape), dtype, shared, zero), shape);
}

/** A tensor of `shape` filled with `value`. */
export function full(shape: readonly number[], value: number, dtype: DType = "float64"): Tensor {
  const t = allocate(shape, dtype);
  if (value !== 0) t.data.fill(value);
  return t;
}

/** Zeros of `shape`. Example: `zeros([2, 3]).toArray()` is `[[0,0,0],[0,0,0]]`. */
export function zeros(shape: readonly number[], dtype: DType = "float64"): Tensor {
  return allocate(shape, dtype);
}

/** Ones of `shape`. */
export function ones(shape: readonly number[], dtype: DType = "float64"): Tensor {
  return full(shape, 1, dtype);
}

/** The dtype an op on inputs of these dtypes returns: float64 if any is float64. */
export function resultDType(...dtypes: DType[]): DType {
  return dtypes.includes("float64") ? "float64" : "float32";
}

/**
 * Builds a tensor from a number, nested arrays, or a typed array with `opts.shape`.
 * Example: `tensor([[1, 2], [3, 4]]).shape` is `[2, 2]`; `tensor(new Float32Array(6), { shape: [2, 3] })`.
 */
export function tensor(
  values: NestedArray | TypedArray | readonly number[],
  opts: TensorOptions = {},
): Tensor {
  checkOptions(
    "tensor(values, options)",
    opts,
    ["shape", "dtype", "shared"],
    'tensor(values, { dtype: "float32" })',
  );
  if (opts.shared !== undefined && typeof opts.shared !== "boolean") {
    throw new TypeError(`tensor: shared must be a boolean, got ${typeName(opts.shared)}`);
  }
  if (opts.dtype !== undefined) validateDType(opts.dtype, "tensor");
  if (values instanceof Float32Array || values instanceof Float64Array) {
    // A view checks the data length against the shape; the copy converts and places it.
    const shape = opts.shape ?? [values.length];
    validateShape(shape);
    return new Tensor(values, shape).clone(opts);
  }
  if (ArrayBuffer.isView(values)) {
    throw new TypeError(
      `tensor: ${typeName(values)} is not supported: pass a Float32Array, a Float64Array or nested number arrays (e.g. Float64Array.from(values))`,
    );
  }
  if (typeof values !== "number" && !Array.isArray(values)) {
    throw new TypeError(
      `tensor: values must be a number, nested number arrays or a Float32Array/Float64Array, got ${typeName(values)}`,
    );
  }
  if (opts.shape) validateShape(opts.shape);
  const shape = inferShape(values as NestedArray);
  if (opts.shape && sizeOf(opts.shape) !== sizeOf(shape)) {
    throw new Error(
      `tensor: data length ${sizeOf(shape)} does not match shape ${fmt(opts.shape)} (size ${sizeOf(opts.shape)})`,
    );
  }
  const out = allocate(opts.shape ?? shape, opts.dtype ?? "float64", opts.shared ?? false);
  let k = 0;
  const fill = (v: NestedArray): void => {
    if (typeof v === "number") out.data[k++] = v;
    else for (const e of v) fill(e);
  };
  fill(values as NestedArray);
  return out;
}

/** Shape of nested arrays; throws on ragged arrays and non-numbers. */
function inferShape(values: NestedArray): number[] {
  const shape: number[] = [];
  let probe: NestedArray = values;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    if (probe.length === 0) break;
    probe = probe[0];
  }
  const check = (v: NestedArray, dim: number, path: string): void => {
    if (dim === shape.length) {
      if (typeof v !== "number") {
        throw new Error(
          `tensor: ragged nested array: element ${path || "(root)"} is ${Array.isArray(v) ? "an array" : typeof v}, expected a number`,
        );
      }
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[dim]) {
      throw new Error(
        `tensor: ragged nested array: element ${path || "(root)"} has ${Array.isArray(v) ? `length ${v.length}` : "a number"}, expected length ${shape[dim]}`,
      );
    }
    v.forEach((e, i) => check(e, dim + 1, `${path}[${i}]`));
  };
  check(values, 0, "");
  return shape;
}

/**
 * The index of the first NaN or infinite value of `data`, or -1: one plain pass (x - x is 0 for
 * every finite x), about 11x a findIndex with Number.isFinite over 47M floats.
 * Example: `firstNonFinite(Float32Array.of(1, NaN))` is 1.
 */
export function firstNonFinite(data: TypedArray): number {
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v - v !== 0) return i;
  }
  return -1;
}
