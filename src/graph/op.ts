/** Op: one kind of operation, and the registry that lets workers rebuild graphs by op name. */
import type { Tensor } from "../tensor/tensor.js";
import type { Node } from "./node.js";
import { broadcastDims, promoteTypes, type NodeType } from "./types.js";
import type { BuiltinOpName } from "./op-names.js";

/** Static parameters of a node: plain, structured-cloneable data. */
export type Attrs = Record<string, unknown>;

/** One kind of operation: its type rule, how to compute a node's value, and its gradient rule. */
export interface Op {
  readonly name: string;
  /**
   * The output's type (shape with null where unknown, dtype) from the inputs' types and the
   * attrs, run when a node is built; throws when known input types are incompatible.
   */
  type(inputTypes: readonly NodeType[], attrs: Attrs): NodeType;
  /** The node's value from its inputs' values; inputs are never modified. */
  compute(node: Node, inputValues: Tensor[]): Tensor;
  /**
   * The course's contract: one gradient node per input, in input order, given the gradient of
   * the output; `zerosLike(input)` for an input that gets no gradient (a shape reference, a
   * condition, a constant). Example: `const [dx, dTarget] = y.op.gradient(y, yGrad)`.
   */
  gradient(node: Node, outputGrad: Node): Node[];
  /**
   * The rule as declared, what the reverse sweep calls when present (else `gradient`): null for
   * an input that gets no gradient, so that nothing is built for it.
   */
  pullback?(node: Node, outputGrad: Node): (Node | null)[];
  /**
   * The forward rule: the output's tangent given one tangent per input (null where the input has
   * none), or null when there is none. Optional: jvp() derives it from the gradient rule.
   */
  jvp?(node: Node, inputTangents: readonly (Node | null)[]): Node | null;
  /**
   * Structural facts for graph rewrites, true whatever the input shapes (simplify() reads them):
   * the value has the shape of input `shape` (or the broadcast of inputs 0 and 1, which is input
   * 0's shape when both inputs have one shape), and the dtype of input `dtype` (or the promotion of
   * every input's). Absent: nothing is claimed, which is always sound.
   */
  readonly sameAs?: { shape?: number | "broadcast"; dtype?: number | "promote" };
}

/** A node whose attrs are known to be an op's `A`: what the op's own rules receive. */
export type NodeOf<A> = Node & { readonly attrs: A };

/** An op's declaration with its attrs typed `A` (the rules read them without casts). */
export interface OpSpec<A extends object> {
  readonly name: string;
  /** The type rule; optional where `sameAs` names both the shape and the dtype. */
  type?(inputTypes: readonly NodeType[], attrs: A): NodeType;
  compute(node: NodeOf<A>, inputValues: Tensor[]): Tensor;
  gradient(node: NodeOf<A>, outputGrad: Node): (Node | null)[];
  jvp?(node: NodeOf<A>, inputTangents: readonly (Node | null)[]): Node | null;
  readonly sameAs?: Op["sameAs"];
}

const registry = new Map<string, Op>();

// NOTE: zerosLike is an op like any other (graph/ops/elementwise.ts), which imports this module:
// it installs its builder here when it is defined, so op.ts needs no import of an op family.
let zeroGradient: ((input: Node) => Node) | undefined;

/** Installs the builder of the zero gradient that {@link Op.gradient} gives for a null. */
export function setZeroGradient(build: (input: Node) => Node): void {
  zeroGradient = build;
}

/** zerosLike(x), for op families that elementwise.ts imports (so they cannot import it back). */
export function zerosOf(x: Node): Node {
  return zeroGradient!(x);
}

/**
 * Declares a built-in op under its name from {@link BUILTIN_OP_NAMES} (so plans can be rebuilt in
 * workers) and returns it. Its builder is the one place that makes nodes of it, with attrs of type
 * `A`. (Users define their own ops with autodiff's `declareOp`.)
 */
export function declareOp<A extends object = Attrs>(
  spec: OpSpec<A> & { readonly name: BuiltinOpName },
): Op {
  return registerOp(makeOp(spec));
}

/** The Op a declaration describes, not registered (a custom op is checked before it is). */
export function makeOp<A extends object = Attrs>(spec: OpSpec<A>): Op {
  const facts = spec.sameAs;
  if (!spec.type && (facts?.shape === undefined || facts.dtype === undefined)) {
    throw new Error(`op "${spec.name}" needs a type rule or sameAs facts for shape and dtype`);
  }
  // NOTE: the one cast between an op's typed attrs and the registry's plain records.
  const pullback = spec.gradient as NonNullable<Op["pullback"]>;
  return {
    type: (inputs: readonly NodeType[]) => typeOf(facts!, inputs),
    ...spec,
    pullback,
    gradient: (node: Node, outputGrad: Node) =>
      pullback(node, outputGrad).map((grad, i) => grad ?? zerosOf(node.inputs[i])),
  } as Op;
}

/** Registers `op` under its unique name, so that plans can be rebuilt in workers; returns it. */
export function registerOp(op: Op): Op {
  if (registry.has(op.name)) throw new Error(`op "${op.name}" is already defined`);
  registry.set(op.name, op);
  return op;
}

/** The type the `sameAs` facts give: an input's shape or the broadcast, its dtype or the promotion. */
function typeOf(facts: NonNullable<Op["sameAs"]>, inputs: readonly NodeType[]): NodeType {
  const { shape, dtype } = facts;
  return {
    shape:
      shape === "broadcast"
        ? broadcastDims(inputs[0].shape, inputs[1].shape)
        : inputs[shape!].shape,
    dtype: dtype === "promote" ? promoteTypes(...inputs.map((t) => t.dtype)) : inputs[dtype!].dtype,
  };
}

/** The registered op called `name`; throws when there is none. */
export function opByName(name: string): Op {
  const op = registry.get(name);
  if (!op) throw new Error(`unknown op "${name}"`);
  return op;
}

/** Names of every registered op. */
export function registeredOps(): string[] {
  return [...registry.keys()];
}
