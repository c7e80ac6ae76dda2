/**
 * Graph simplification: common subexpressions merged and exact identities removed (x*1, --x,
 * sumLike to an equal shape, x + zeros), every rewrite bitwise exact in values, shapes and dtypes.
 */
import { isPlaceholder, Node } from "../graph/node.js";
import type { Attrs, Op } from "../graph/op.js";
import {
  addByConst,
  addByConstOp,
  addOp,
  divByConstOp,
  mulByConstOp,
  mulOp,
  negOp,
  onesLikeOp,
  subOp,
  zerosLikeOp,
} from "../graph/ops/elementwise.js";
import { reshapeLikeOp, sumLikeOp } from "../graph/ops/shape.js";
import { topoSort } from "../graph/topo.js";
import { knownSize } from "../graph/types.js";

/** Node counts of a graph split into the forward part and what only the gradients need. */
export interface NodeCounts {
  /** Nodes the forward outputs need (placeholders included). */
  forward: number;
  /** Nodes only the other outputs (the gradients) need. */
  backward: number;
  total: number;
}

/** Forward and backward node counts. Example: `countNodes([loss], [loss, ...grads])`. */
export function countNodes(forwardOutputs: readonly Node[], outputs: readonly Node[]): NodeCounts {
  const forward = topoSort(forwardOutputs).length;
  const total = topoSort([...forwardOutputs, ...outputs]).length;
  return { forward, backward: total - forward, total };
}

// NOTE: what simplify knows about shapes and dtypes is proved from the graph's structure (the
// facts each op declares in `sameAs`) and from the types known at build time: a node's "shape
// representative" is an earlier node whose value provably has the same shape (itself when
// nothing better is known), and its "dtype sources" a set of nodes whose dtypes it promotes
// (float64 if any of them is). An op that declares nothing is its own representative and its
// own source: always sound, only less useful.

/** Dtype-source sets larger than this are replaced by the node itself (keeps the pass linear). */
const MAX_SOURCES = 32;

/** Sorted node ids whose dtypes a value promotes. */
type Sources = readonly number[];

interface Facts {
  shape: Node;
  dtype: Sources;
}

/** The union of two sorted id lists (one of them when it contains the other). */
function union(a: Sources, b: Sources): Sources {
  if (a === b || isSubset(b, a)) return a;
  if (isSubset(a, b)) return b;
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (j >= b.length || (i < a.length && a[i] < b[j])) out.push(a[i++]);
    else if (i >= a.length || b[j] < a[i]) out.push(b[j++]);
    else {
      out.push(a[i++]);
      j++;
    }
  }
  return out;
}

/** True when every id of sorted `a` is in sorted `b`. */
function isSubset(a: Sources, b: Sources): boolean {
  if (a === b) return true;
  let j = 0;
  for (const id of a) {
    while (j < b.length && b[j] < id) j++;
    if (j >= b.length || b[j] !== id) return false;
    j++;
  }
  return true;
}

/** A canonical string for deep-equal attrs; undefined when a value cannot be compared safely. */
export function attrsKey(value: unknown): string | undefined {
  switch (typeof value) {
    case "undefined":
      return "u";
    case "boolean":
      return value ? "t" : "f";
    case "string":
      return JSON.stringify(value);
    case "number":
      // -0 and 0 are different constants (x * -0 and x * 0 differ in the sign of zero).
      return Object.is(value, -0) ? "-0" : String(value);
    case "object": {
      if (value === null) return "n";
      if (Array.isArray(value)) {
        const parts: string[] = [];
        for (const item of value) {
          const key = attrsKey(item);
          if (key === undefined) return undefined;
          parts.push(key);
        }
        return `[${parts.join(",")}]`;
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return undefined;
      const record = value as Record<string, unknown>;
      const parts: string[] = [];
      // An undefined attr reads the same as an absent one (`node.attrs.axis`): both are skipped.
      for (const name of Object.keys(record).sort()) {
        if (record[name] === undefined) continue;
        const key = attrsKey(record[name]);
        if (key === undefined) return undefined;
        parts.push(`${JSON.stringify(name)}:${key}`);
      }
      return `{${parts.join(",")}}`;
    }
    default:
      return undefined;
  }
}

/** A rewrite's result: an existing node, or a new node to canonicalize in turn. */
type Rewrite = Node | { op: Op; build: () => Node } | undefined;

/** The rewriting pass over one graph: hash-consing table and structural facts. */
class Simplifier {
  private readonly facts = new Map<Node, Facts>();
  private readonly table = new Map<Op, Map<string, Node>>();

  /** The canonical node equivalent to `candidate` (whose inputs are canonical already). */
  canonical(candidate: Node): Node {
    let node = candidate;
    // Each rewrite removes a node or turns one into a cheaper one: the loop ends.
    for (;;) {
      const rewritten = this.rewrite(node);
      if (rewritten === undefined) break;
      if (rewritten instanceof Node) {
        if (this.facts.has(rewritten)) return rewritten;
        node = rewritten;
      } else {
        node = rewritten.build();
      }
    }
    const key = isPlaceholder(node) ? undefined : attrsKey(node.attrs);
    let byKey: Map<string, Node> | undefined;
    let fullKey = "";
    if (key !== undefined) {
      fullKey = `${node.inputs.map((input) => input.id).join(",")}|${key}`;
      byKey = this.table.get(node.op);
      if (byKey === undefined) {
        byKey = new Map();
        this.table.set(node.op, byKey);
      }
      const existing = byKey.get(fullKey);
      if (existing !== undefined) return existing;
    }
    byKey?.set(fullKey, node);
    this.facts.set(node, this.derive(node));
    return node;
  }

  /** The shape representative and dtype sources of a canonical node, from its op's facts. */
  private derive(node: Node): Facts {
    const { op, inputs } = node;
    const own: Facts = { shape: node, dtype: [node.id] };
    const facts = op.sameAs;
    if (inputs.length === 0 || facts === undefined) return own;
    const of = (i: number) => this.facts.get(inputs[i])!;
    let shape: Node = node;
    if (facts.shape === "broadcast") {
      if (of(0).shape === of(1).shape) shape = of(0).shape;
      else if (broadcastsInto(inputs[1].shape, inputs[0].shape)) shape = of(0).shape;
      else if (broadcastsInto(inputs[0].shape, inputs[1].shape)) shape = of(1).shape;
    } else if (facts.shape !== undefined && facts.shape < inputs.length) {
      shape = of(facts.shape).shape;
    }
    let dtype: Sources = own.dtype;
    if (facts.dtype === "promote") {
      dtype = inputs.reduce<Sources>((sources, _, i) => union(sources, of(i).dtype), []);
      if (dtype.length > MAX_SOURCES) dtype = own.dtype;
    } else if (facts.dtype !== undefined) {
      dtype = of(facts.dtype).dtype;
    }
    return { shape, dtype };
  }

  /** True when a and b provably have one shape: by structure, or both fully known and equal. */
  private sameShape(a: Node, b: Node): boolean {
    if (this.facts.get(a)!.shape === this.facts.get(b)!.shape) return true;
    if (knownSize(a.shape) === null || knownSize(b.shape) === null) return false;
    return a.shape!.length === b.shape!.length && a.shape!.every((d, i) => d === b.shape![i]);
  }

  /** True when `x op other` provably has x's shape and dtype (other broadcasts to nothing new). */
  private absorbs(x: Node, other: Node): boolean {
    if (!this.sameShape(x, other) && !broadcastsInto(other.shape, x.shape)) return false;
    if (isSubset(this.facts.get(other)!.dtype, this.facts.get(x)!.dtype)) return true;
    // Known dtypes: other's must not widen x's.
    return x.dtype !== null && (other.dtype === x.dtype || other.dtype === "float32");
  }

  /** One exact identity applied to `node`, or undefined when none applies. */
  private rewrite(node: Node): Rewrite {
    const { op, inputs, attrs } = node;
    const [a, b] = inputs;
    if (op === negOp && a.op === negOp) return a.inputs[0]; // -(-x) = x, bit for bit
    if ((op === mulByConstOp || op === divByConstOp) && isOne(attrs)) return a; // x*1 = x/1 = x
    if (op === sumLikeOp || op === reshapeLikeOp) {
      // Both return g itself (as a view) when the shapes already agree.
      return this.sameShape(a, b) ? a : undefined;
    }
    if (op === mulOp) {
      // x * 1 = x exactly, but ones of another shape or of float64 would broadcast or promote x.
      if (b.op === onesLikeOp && this.absorbs(a, b)) return a;
      if (a.op === onesLikeOp && this.absorbs(b, a)) return b;
    }
    if (op === subOp && b.op === zerosLikeOp && this.absorbs(a, b)) return a; // x - (+0) = x
    if (op === addOp) {
      // NOTE: x + (+0) is not x: it turns -0 into +0. addByConst(x, 0) does exactly that, with no
      // zeros tensor allocated and filled.
      const x = b.op === zerosLikeOp ? a : a.op === zerosLikeOp ? b : undefined;
      const zeros = x === a ? b : a;
      if (x !== undefined && this.absorbs(x, zeros)) {
        return { op: addByConstOp, build: () => addByConst(x, 0) };
      }
    }
    return undefined;
  }
}

/**
 * True when a value of shape `small` broadcast against one of `big` provably gives `big`'s shape:
 * `small` fully known and of no higher rank, each of its dims 1 or equal to `big`'s known dim
 * there (a bias (k,) against (null, k); a 0-d tensor against anything of known rank).
 */
function broadcastsInto(small: Node["shape"], big: Node["shape"]): boolean {
  if (small == null || big == null || small.length > big.length) return false;
  const offset = big.length - small.length;
  return small.every((d, i) => d === 1 || (d !== null && big[offset + i] === d));
}

function isOne(attrs: Attrs): boolean {
  return attrs.constant === 1;
}

/**
 * Equivalent outputs of a simplified graph: common subexpressions merged (same op, same inputs,
 * deep-equal attrs; placeholders never), and identities removed only where they are exact (same
 * values bit for bit, same shapes and dtypes): -(-x), x*1, x/1, sumLike to an equal shape,
 * x * onesLike(y) and x - zerosLike(y) when y provably has x's shape and no wider dtype, and
 * x + zerosLike(y) turned into addByConst(x, 0). Iterative: 100,000-node graphs are fine.
 * Placeholders keep their identity; untouched nodes are reused.
 * Example: `const [y2, g2] = simplify([y, g])`, then `new Evaluator([y2, g2])`.
 */
export function simplify(outputs: readonly Node[]): Node[] {
  const simplifier = new Simplifier();
  const replacement = new Map<Node, Node>();
  for (const node of topoSort(outputs)) {
    const inputs = node.inputs.map((input) => replacement.get(input)!);
    const same = inputs.every((input, i) => input === node.inputs[i]);
    const candidate = same ? node : new Node(inputs, node.op, node.attrs, node.name);
    replacement.set(node, simplifier.canonical(candidate));
  }
  return outputs.map((output) => replacement.get(output)!);
}
