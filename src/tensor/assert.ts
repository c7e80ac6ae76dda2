/** Exhaustiveness: the default of a switch over a union of kinds. */

/**
 * Marks a branch no value can reach: a switch over every kind of a union ends in
 * `default: return assertNever(kind)`, so a kind added without its case fails to compile (and a
 * value that slips past the types at run time is an error, never another kind's kernel).
 */
export function assertNever(value: never, what = "kind"): never {
  throw new Error(`unhandled ${what} ${JSON.stringify(value)}`);
}
