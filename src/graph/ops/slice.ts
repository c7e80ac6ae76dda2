/** Slices and concatenation along an axis, each with its adjoint op (unslice, concatPart). */
import { backend } from "../../tensor/active.js";
import { fmt, normalizeAxis } from "../../tensor/shape.js";
import { checkArity, checkNodeList, checkOptions, label, makeNode, Node } from "../node.js";
import { declareOp, zerosOf, type Op } from "../op.js";
import { fmtType, promoteTypes, type Dim, type NodeType } from "../types.js";

/** The attrs of slice: `end` null for the axis' size. */
interface SliceAttrs {
  axis: number;
  start: number;
  end: number | null;
}

/** [start, end) resolved against the axis' size (negatives count from the end); throws out of bounds. */
function sliceBounds(attrs: SliceAttrs, size: number, shape: readonly Dim[]): [number, number] {
  const resolve = (i: number) => (i < 0 ? i + size : i);
  const [start, end] = [resolve(attrs.start), attrs.end === null ? size : resolve(attrs.end)];
  if (start < 0 || end > size || start > end) {
    throw new RangeError(
      `slice: start ${attrs.start}, end ${attrs.end ?? "(the size)"} out of bounds for axis ${attrs.axis} of size ${size} (${fmtType(shape)})`,
    );
  }
  return [start, end];
}

/** The elements at start..end-1 along `axis`. */
export const sliceOp: Op = declareOp<SliceAttrs>({
  name: "slice",
  sameAs: { dtype: 0 },
  type: ([x], attrs) => {
    if (x.shape === null) return { shape: null, dtype: x.dtype };
    const axis = normalizeAxis(attrs.axis, x.shape.length);
    const shape = [...x.shape];
    const size = shape[axis];
    if (size !== null) {
      const [start, end] = sliceBounds(attrs, size, x.shape);
      shape[axis] = end - start;
    } else {
      const known = attrs.start >= 0 && attrs.end !== null && attrs.end >= 0;
      shape[axis] = known ? Math.max(0, attrs.end! - attrs.start) : null;
    }
    return { shape, dtype: x.dtype };
  },
  compute: (node, [x]) => {
    const axis = normalizeAxis(node.attrs.axis, x.rank);
    const [start, end] = sliceBounds(node.attrs, x.shape[axis], x.shape);
    return backend().slice(x, axis, start, end);
  },
  gradient: (node, g) => [unslice(g, node.inputs[0], node.attrs)],
  jvp: (node, [t]) => sliceBy(t!, node.attrs),
});

/** g put back where `slice` took it, zeros elsewhere: x's shape (the adjoint of slice). */
export const unsliceOp: Op = declareOp<SliceAttrs>({
  name: "unslice",
  sameAs: { shape: 1, dtype: 0 },
  compute: (node, [g, x]) => {
    const axis = normalizeAxis(node.attrs.axis, x.rank);
    const [start] = sliceBounds(node.attrs, x.shape[axis], x.shape);
    return backend().unslice(g, x.shape, axis, start);
  },
  gradient: (node, g) => [sliceBy(g, node.attrs), null],
  jvp: (node, [t]) => (t ? unslice(t, node.inputs[1], node.attrs) : null),
});

/** Options of {@link slice}. */
export interface SliceOptions {
  axis: number;
  start?: number;
  /** One past the last index (default: the axis' size); negatives count from the end. */
  end?: number;
}

/**
 * The elements of x at indices start..end-1 along `axis`, as NumPy's `x[:, start:end]` (negative
 * indices count from the end; out of bounds is an error, not a clamp). Example:
 * `slice(x, { axis: 1, start: 0, end: 14 })`.
 */
export function slice(x: Node, options: SliceOptions): Node {
  const example = "slice(x, { axis: 1, start: 0, end: 14 })";
  checkArity("slice(x, options)", arguments.length, 2, example);
  const {
    axis,
    start = 0,
    end,
  } = checkOptions("slice(x, options)", options, ["axis", "start", "end"], example);
  for (const [name, value] of [
    ["axis", axis],
    ["start", start],
    ["end", end],
  ] as const) {
    if ((name === "axis" || value !== undefined) && !Number.isInteger(value)) {
      throw new TypeError(`slice: ${name} must be an integer, got ${String(value)} (${example})`);
    }
  }
  const attrs = { axis, start, end: end ?? null };
  return makeNode(sliceOp, [x], attrs, `slice(${label(x)},${axis},${start}:${end ?? ""})`);
}

/** slice() from a slice node's attrs. */
function sliceBy(x: Node, { axis, start, end }: SliceAttrs): Node {
  return slice(x, end === null ? { axis, start } : { axis, start, end });
}

/** g placed where slice(x, attrs) took its elements (internal: slice's gradient). */
function unslice(g: Node, x: Node, attrs: SliceAttrs): Node {
  return makeNode(unsliceOp, [g, x], { ...attrs }, `unslice(${label(g)},${label(x)})`);
}

/** The types of concat's inputs joined along `axis`; throws where known dims differ off it. */
function concatType(inputs: readonly NodeType[], attrs: { axis: number }): NodeType {
  const dtype = promoteTypes(...inputs.map((t) => t.dtype));
  const shapes = inputs.map((t) => t.shape);
  const known = shapes.filter((s): s is Dim[] => s !== null);
  if (known.length === 0) return { shape: null, dtype };
  const rank = known[0].length;
  const axis = normalizeAxis(attrs.axis, rank);
  for (const s of known) {
    const differs =
      s.length !== rank ||
      s.some((d, i) => i !== axis && d !== null && known[0][i] !== null && d !== known[0][i]);
    if (differs) {
      throw new Error(
        `concat: shapes differ off axis ${attrs.axis}: ${shapes.map(fmtType).join(", ")}`,
      );
    }
  }
  if (known.length < shapes.length) return { shape: known[0].map(() => null), dtype };
  const shape = known[0].map((d, i) =>
    i === axis
      ? known.reduce<Dim>((total, s) => (total === null || s[i] === null ? null : total + s[i]!), 0)
      : (known.find((s) => s[i] !== null)?.[i] ?? d),
  );
  return { shape, dtype };
}

/** Inputs joined along `axis`. */
export const concatOp: Op = declareOp<{ axis: number }>({
  name: "concat",
  sameAs: { dtype: "promote" },
  type: concatType,
  compute: (node, xs) => {
    const axis = normalizeAxis(node.attrs.axis, xs[0].rank);
    const first = xs[0].shape;
    for (const x of xs) {
      if (x.rank !== first.length || x.shape.some((d, i) => i !== axis && d !== first[i])) {
        throw new Error(
          `concat: shapes differ off axis ${node.attrs.axis}: ${xs.map((t) => fmt(t.shape)).join(", ")}`,
        );
      }
    }
    return backend().concat(xs, axis);
  },
  // Input i's share is g's part at i's place along the axis, found from the inputs' run-time
  // sizes (so unknown sizes, a null batch, need no declaration).
  gradient: (node, g) => node.inputs.map((_, i) => concatPart(g, node.inputs, node.attrs.axis, i)),
  jvp: (node, tangents) => {
    return concat(
      tangents.map((t, i) => t ?? zerosOf(node.inputs[i])),
      { axis: node.attrs.axis },
    );
  },
});

/**
 * The nodes joined along `axis` (equal sizes elsewhere), as NumPy's `concatenate`. Example:
 * `concat([a, b], { axis: 1 })`.
 */
export function concat(nodes: readonly Node[], options: { axis: number }): Node {
  const example = "concat([a, b], { axis: 1 })";
  checkArity("concat(nodes, options)", arguments.length, 2, example);
  checkNodeList("concat(nodes, options)", "nodes", nodes, example);
  if (nodes.length === 0) throw new Error(`concat: needs at least one node (${example})`);
  const { axis } = checkOptions("concat(nodes, options)", options, ["axis"], example);
  if (!Number.isInteger(axis)) {
    throw new TypeError(`concat: axis must be an integer, got ${String(axis)} (${example})`);
  }
  return makeNode(concatOp, [...nodes], { axis }, `concat(${nodes.map(label).join(",")})`);
}

/** The attrs of concatPart: which input's part of a concatenation. */
interface PartAttrs {
  axis: number;
  index: number;
}

/** The part of g (a concatenation's shape) that input `index` of `parts` holds along `axis`. */
export const concatPartOp: Op = declareOp<PartAttrs>({
  name: "concatPart",
  sameAs: { dtype: 0 },
  type: ([g, ...parts], attrs) => ({ shape: parts[attrs.index].shape, dtype: g.dtype }),
  compute: (node, [g, ...parts]) => {
    const axis = normalizeAxis(node.attrs.axis, g.rank);
    let start = 0;
    for (let i = 0; i < node.attrs.index; i++) start += parts[i].shape[axis];
    return backend().slice(g, axis, start, start + parts[node.attrs.index].shape[axis]);
  },
  // Linear in g: its adjoint puts gg at the part's place among zeros shaped like the others.
  gradient: (node, gg) => {
    const [, ...parts] = node.inputs;
    const { axis, index } = node.attrs;
    const pieces = parts.map((x, i) => (i === index ? gg : zerosOf(x)));
    return [concat(pieces, { axis }), ...parts.map(() => null)];
  },
  jvp: (node, [t]) =>
    t ? concatPart(t, node.inputs.slice(1), node.attrs.axis, node.attrs.index) : null,
});

/** g's part for `parts[index]` (internal: concat's gradient). */
function concatPart(g: Node, parts: readonly Node[], axis: number, index: number): Node {
  return makeNode(concatPartOp, [g, ...parts], { axis, index }, `concatPart(${label(g)},${index})`);
}
