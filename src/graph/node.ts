/** Node, Op and variable(): the vocabulary of the define-then-run graph. */
import { add, addByConst, div, divByConst, mul, mulByConst, neg, sub } from "./ops/elementwise.js";
import { matmul, type MatmulOptions } from "./ops/matmul.js";
import { defineOp, type Attrs, type Op } from "./op.js";

let nextId = 0;
const MAX_NAME = 48;

/** A graph vertex: an op applied to input nodes with static attrs. */
export class Node {
  readonly id: number;
  readonly inputs: Node[];
  readonly op: Op;
  readonly attrs: Attrs;
  readonly name: string;

  /** Builds a node; builders such as `add()` call this, user code rarely does. */
  constructor(inputs: Node[], op: Op, attrs: Attrs, name: string) {
    this.id = nextId++;
    this.inputs = inputs;
    this.op = op;
    this.attrs = attrs;
    this.name = name;
  }

  /** this + other (a Node, or a number via addByConst). */
  add(other: Node | number): Node {
    return typeof other === "number" ? addByConst(this, other) : add(this, checkNode(other, "add"));
  }

  /** this - other (a number c is addByConst(this, -c)). */
  sub(other: Node | number): Node {
    return typeof other === "number"
      ? addByConst(this, -other)
      : sub(this, checkNode(other, "sub"));
  }

  /** this * other (a Node, or a number via mulByConst). */
  mul(other: Node | number): Node {
    return typeof other === "number" ? mulByConst(this, other) : mul(this, checkNode(other, "mul"));
  }

  /** this / other (a Node, or a number via divByConst). */
  div(other: Node | number): Node {
    return typeof other === "number" ? divByConst(this, other) : div(this, checkNode(other, "div"));
  }

  /** -this. */
  neg(): Node {
    return neg(this);
  }

  /** op(this) @ op(other) for 2-D values. */
  matmul(other: Node, options: MatmulOptions = {}): Node {
    return matmul(this, checkNode(other, "matmul"), options);
  }

  /** The name, for messages. */
  toString(): string {
    return this.name;
  }
}

function checkNode(value: unknown, method: string): Node {
  if (value instanceof Node) return value;
  throw new TypeError(`Node.${method}: expected a Node or a number, got ${describe(value)}`);
}

/** A short description of a value's type for error messages. */
export function describe(value: unknown): string {
  if (Array.isArray(value)) return "an array";
  if (value === null) return "null";
  return typeof value === "object" ? (value.constructor?.name ?? "an object") : typeof value;
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
      throw new TypeError(`${op.name}: input ${i} must be a Node, got ${describe(input)}`);
    }
  }
  return new Node(inputs, op, attrs, name);
}

/** The placeholder op: its value comes from the feed map, never from compute. */
export const placeholderOp: Op = defineOp({
  name: "placeholder",
  compute: (node) => {
    throw new Error(`variable "${node.name}" has no value: feed it`);
  },
  gradient: () => [],
});

/** A placeholder fed at run time. Example: `const x = variable("x"); new Evaluator([x.mul(2)])`. */
export function variable(name: string): Node {
  if (typeof name !== "string")
    throw new TypeError(`variable: name must be a string, got ${describe(name)}`);
  return new Node([], placeholderOp, {}, name);
}

/** True for nodes built by variable(). */
export function isPlaceholder(node: Node): boolean {
  return node.op === placeholderOp;
}
