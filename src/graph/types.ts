/**
 * Node types known when a graph is built (PyTensor's TensorType, JAX's abstract values): a shape
 * whose dimensions may be unknown (`null`, e.g. the batch), or an unknown rank, and a dtype.
 */
import { resultDType, type DType } from "../tensor/tensor.js";

/** One dimension: its size, or null when it is known only at run time. */
export type Dim = number | null;

/** What is known of a node's value before it runs: shape (null: unknown rank) and dtype. */
export interface NodeType {
  readonly shape: readonly Dim[] | null;
  readonly dtype: DType | null;
}

/** Nothing known: the type of a variable declared without shape or dtype. */
export const UNKNOWN: NodeType = Object.freeze({ shape: null, dtype: null });

/** Formats a shape with unknown dims as `[null,64]`; an unknown rank as `[?]`. */
export function fmtType(shape: readonly Dim[] | null): string {
  return shape === null ? "[?]" : `[${shape.map((d) => (d === null ? "null" : d)).join(",")}]`;
}

/** The dtype of a value computed from these dtypes: float64 if any is, null if undecided. */
export function promoteTypes(...dtypes: (DType | null)[]): DType | null {
  if (dtypes.includes("float64")) return "float64";
  if (dtypes.includes(null)) return null;
  return resultDType(...(dtypes as DType[]));
}

/** A type with the given shape and the dtype of `like`. */
export function withShape(like: NodeType, shape: readonly Dim[] | null): NodeType {
  return { shape, dtype: like.dtype };
}

/**
 * NumPy broadcasting with unknown dims: throws when two known dims differ and neither is 1; an
 * unknown dim against 1 stays unknown, against n > 1 becomes n (the run-time check confirms it).
 */
export function broadcastDims(
  a: readonly Dim[] | null,
  b: readonly Dim[] | null,
): readonly Dim[] | null {
  if (a === null || b === null) return null;
  const rank = Math.max(a.length, b.length);
  const out = new Array<Dim>(rank);
  for (let i = 0; i < rank; i++) {
    const da = i < rank - a.length ? 1 : a[i - (rank - a.length)];
    const db = i < rank - b.length ? 1 : b[i - (rank - b.length)];
    if (da === 1) out[i] = db;
    else if (db === 1) out[i] = da;
    else if (da === null) out[i] = db;
    else if (db === null || da === db) out[i] = da;
    else throw new Error(`shapes ${fmtType(a)} and ${fmtType(b)} do not broadcast`);
  }
  return out;
}

/** Whether a concrete shape fits a declared one (same rank, equal where the declared is known). */
export function shapeFits(shape: readonly number[], declared: readonly Dim[] | null): boolean {
  return shapesAgree(shape, declared);
}

/**
 * Whether two partly known shapes can be one: unknown (null) shapes or dims agree with anything.
 * A plain loop: the Evaluator checks every computed value with it.
 */
export function shapesAgree(a: readonly Dim[] | null, b: readonly Dim[] | null): boolean {
  if (a === null || b === null) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== null && b[i] !== null && a[i] !== b[i]) return false;
  }
  return true;
}

/** The number of elements when every dim is known, else null. */
export function knownSize(shape: readonly Dim[] | null): number | null {
  if (shape === null) return null;
  let n = 1;
  for (const d of shape) {
    if (d === null) return null;
    n *= d;
  }
  return n;
}

/** Throws unless `shape` is a declared shape: an array of non-negative integers or nulls. */
export function checkDeclaredShape(where: string, shape: unknown): readonly Dim[] {
  const ok =
    Array.isArray(shape) &&
    shape.every((d) => d === null || (Number.isSafeInteger(d) && (d as number) >= 0));
  if (!ok) {
    throw new TypeError(
      `${where}: shape must be an array of sizes or null for unknown ones, e.g. [null, 784]; got ${JSON.stringify(shape)}`,
    );
  }
  return Object.freeze([...(shape as Dim[])]);
}
