/** Checking what a caller passed: an options object, the argument count, a value's type in words. */

/** A value's type in words, for messages: `Int32Array`, `number 3`, `an array`. */
export function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return value.constructor?.name ?? "an object";
  if (typeof value === "number" || typeof value === "boolean") return `${typeof value} ${value}`;
  return typeof value;
}

/**
 * The options object of a builder call, checked: undefined becomes {}, anything but a plain
 * object (a number or boolean passed the Python way, `sum(x, 1)`) and any key not in `keys` is a
 * TypeError that names the call's expected form, e.g. `sum(x, { axis: 1 })`.
 */
export function checkOptions<T extends object>(
  call: string,
  options: T | undefined,
  keys: readonly (keyof T & string)[],
  example: string,
): T {
  if (options === undefined) return {} as T;
  const plain =
    typeof options === "object" &&
    options !== null &&
    !Array.isArray(options) &&
    (Object.getPrototypeOf(options) === Object.prototype ||
      Object.getPrototypeOf(options) === null);
  if (!plain) {
    throw new TypeError(
      `${call}: options must be an object, as in ${example}; got ${typeName(options)}`,
    );
  }
  for (const key of Object.keys(options)) {
    if (!(keys as readonly string[]).includes(key)) {
      throw new TypeError(
        `${call}: unknown option ${JSON.stringify(key)} (expected ${keys.join(", ")}), as in ${example}`,
      );
    }
  }
  return options;
}

/** Throws a TypeError when a builder got more arguments than it takes (`matmul(a, b, true, false)`). */
export function checkArity(call: string, got: number, most: number, example: string): void {
  if (got > most) {
    throw new TypeError(`${call}: takes at most ${most} arguments, got ${got}; write ${example}`);
  }
}
