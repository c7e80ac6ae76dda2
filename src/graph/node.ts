/** Node, Op and variable(): the vocabulary of the define-then-run graph. */
import { declareOp, type Attrs, type Op } from "./op.js";
import {
  checkDeclaredShape,
  fmtType,
  shapeFits,
  UNKNOWN,
  type Dim,
  type NodeType,
} from "./types.js";
import type { DType } from "../tensor/tensor.js";
import { checkArity, checkOptions, typeName } from "../tensor/options.js";
export { checkArity, checkOptions } from "../tensor/options.js";

let nextId = 0;

/** The id the next node will get: nodes built between two readings were built in between. */
export function peekNextId(): number {
  return nextId;
}
const MAX_NAME = 48;

/** A graph vertex: an op applied to input nodes with static attrs. */
export class Node {
  readonly id: number;
  readonly inputs: Node[];
  readonly op: Op;
  readonly attrs: Attrs;
  readonly name: string;
  /** What is known of the value before it runs: shape (null dims unknown) and dtype. */
  readonly type: NodeType;

  /**
   * Builds a node and infers its type from its inputs' types by the op's type rule, so
   * incompatible inputs throw here, at the line that built the graph. Builders such as `add()`
   * call this; user code rarely does.
   */
  constructor(inputs: Node[], op: Op, attrs: Attrs, name: string) {
    this.id = nextId++;
    this.inputs = inputs;
    this.op = op;
    this.attrs = attrs;
    this.name = name;
    try {
      this.type = op.type(
        inputs.map((input) => input.type),
        attrs,
      );
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(`${op.name}(${inputs.map(label).join(", ")}): ${message}`, { cause: error });
    }
  }

  /** The shape known at build time: null entries where unknown, null when even the rank is. */
  get shape(): readonly Dim[] | null {
    return this.type.shape;
  }

  /** The dtype known at build time, or null. */
  get dtype(): DType | null {
    return this.type.dtype;
  }

  /** The name, for messages. */
  toString(): string {
    return this.name;
  }
}

/**
 * Throws a TypeError unless `value` is an array of Nodes: `new Evaluator(y)` and
 * `gradients(y, x)` name the argument and show the call's form.
 */
export function checkNodeList(
  call: string,
  argument: string,
  value: unknown,
  example: string,
): asserts value is readonly Node[] {
  if (!Array.isArray(value)) {
    const hint = value instanceof Node ? ` (wrap a single node in an array: ${example})` : "";
    throw new TypeError(
      `${call}: ${argument} must be an array of Nodes, got ${value instanceof Node ? `the Node ${value.name}` : typeName(value)}${hint}`,
    );
  }
  value.forEach((item, i) => {
    if (!(item instanceof Node)) {
      throw new TypeError(
        `${call}: ${argument}[${i}] must be a Node, got ${typeof item === "number" ? `the number ${item}` : typeName(item)} (build nodes with variable() and the ops)`,
      );
    }
  });
}

/** A short label for `node` inside another node's name; long names fall back to `op#id`. */
export function label(node: Node): string {
  // Builders compose names before makeNode checks the inputs: a non-Node must reach that check.
  if (!(node instanceof Node)) return "?";
  return node.name.length <= MAX_NAME ? node.name : `${node.op.name}#${node.id}`;
}

/** Builds a node whose name is composed from its inputs' labels. */
export function makeNode(op: Op, inputs: Node[], attrs: Attrs, name: string): Node {
  for (const [i, input] of inputs.entries()) {
    if (!(input instanceof Node)) {
      throw new TypeError(`${op.name}: input ${i} must be a Node, got ${typeName(input)}`);
    }
  }
  return new Node(inputs, op, attrs, name);
}

/** The placeholder op: its value comes from the feed map, never from compute. */
export const placeholderOp: Op = declareOp<VariableOptions>({
  name: "placeholder",
  type: (_inputs, { shape, dtype }) =>
    shape === undefined && dtype === undefined
      ? UNKNOWN
      : { shape: shape ?? null, dtype: dtype ?? null },
  compute: (node) => {
    throw new Error(`variable "${node.name}" has no value: feed it`);
  },
  gradient: () => [],
});

/** Options of {@link variable}: what is known of its value before it is fed. */
export interface VariableOptions {
  /** The shape, with null for dimensions known only when fed (e.g. `[null, 784]`). */
  shape?: readonly Dim[];
  dtype?: DType;
}

/**
 * A placeholder fed at run time, optionally with a declared type that the Evaluator checks every
 * feed against. Example: `const X = variable("X", { shape: [null, 784], dtype: "float32" })`.
 */
export function variable(name: string, options?: VariableOptions): Node {
  if (typeof name !== "string")
    throw new TypeError(`variable: name must be a string, got ${typeName(name)}`);
  const example = 'variable("X", { shape: [null, 784], dtype: "float32" })';
  checkArity("variable(name, options)", arguments.length, 2, example);
  const { shape, dtype } = checkOptions(
    "variable(name, options)",
    options,
    ["shape", "dtype"],
    example,
  );
  const attrs: Attrs = {};
  if (shape !== undefined) attrs.shape = checkDeclaredShape(`variable("${name}")`, shape);
  if (dtype !== undefined) {
    if (dtype !== "float32" && dtype !== "float64") {
      throw new TypeError(
        `variable("${name}"): dtype must be "float32" or "float64", got ${JSON.stringify(dtype)}`,
      );
    }
    attrs.dtype = dtype;
  }
  return new Node([], placeholderOp, attrs, name);
}

/** Throws naming the variable when a fed value does not fit its declared type. */
export function checkFeed(node: Node, value: { shape: readonly number[]; dtype: DType }): void {
  const { shape, dtype } = node.type;
  // A fed intermediate replaces its computation: it must be what the computation would give.
  const known = isPlaceholder(node) ? "declared" : `known from ${node.op.name}'s type rule`;
  if (!shapeFits(value.shape, shape)) {
    throw new Error(
      `${node.name}: fed shape [${value.shape.join(",")}], ${known} ${fmtType(shape)}`,
    );
  }
  if (dtype !== null && dtype !== value.dtype) {
    throw new Error(`${node.name}: fed dtype ${value.dtype}, ${known} ${dtype}`);
  }
}

/** True for nodes built by variable(). */
export function isPlaceholder(node: Node): boolean {
  return node.op === placeholderOp;
}
