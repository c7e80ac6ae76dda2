/**
 * A training plan's floating-point work per step, from its products and convolutions at the
 * step's shapes (the ops' type rules give every node's shape; nothing runs): what fit()'s "auto"
 * weighs, as the CLI weighs its models' known costs, before splitting a step across threads.
 */
import type { Node } from "../graph/node.js";
import { topoSort } from "../graph/topo.js";
import { concreteTypes, type ConcreteType } from "../graph/concrete.js";
import { rebuildGraph } from "../runtime/plan.js";
import { productDims, sizeOf } from "../tensor/shape.js";
import type { TrainPlan } from "./parallel/state.js";
import type { DType } from "../tensor/tensor.js";

/** Every node of the plan in order with its type, for `rows` rows of data; undefined if unknown. */
function typedPlan(
  train: TrainPlan,
  rowShapes: readonly (readonly number[])[],
  rows: number,
  dtype: DType,
): { order: Node[]; shapeOf: (n: Node) => readonly number[] } | undefined {
  const { placeholders, outputs } = rebuildGraph(train.graph);
  const given = new Map<Node, ConcreteType>(
    placeholders.map((p, i) => {
      const data = i < train.dataCount;
      return [
        p,
        { shape: data ? [rows, ...rowShapes[i]] : train.paramShapes[i - train.dataCount], dtype },
      ];
    }),
  );
  const order = topoSort(outputs);
  const types = concreteTypes(order, (node) => given.get(node));
  if (types === undefined) return undefined;
  return { order: order.filter((n) => !given.has(n)), shapeOf: (n) => types.get(n)!.shape };
}

/**
 * Multiply-adds x 2 of the plan's matmul and conv2d nodes (forward and gradients) for `rows`
 * rows of data of `rowShapes` in `dtype`; undefined where a type rule leaves a dim unknown.
 */
export function planFlops(
  train: TrainPlan,
  rowShapes: readonly (readonly number[])[],
  rows: number,
  dtype: DType,
): number | undefined {
  const typed = typedPlan(train, rowShapes, rows, dtype);
  if (typed === undefined) return undefined;
  const { order, shapeOf } = typed;
  let flops = 0;
  for (const node of order) flops += nodeFlops(node, node.inputs.map(shapeOf), shapeOf(node));
  return flops;
}

/**
 * Bytes of the values a plan computes for each row of data (every node's output, forward and
 * backward, at 2 rows less at 1): how much a shard's rows fill the caches. Undefined where a
 * type rule leaves a dim unknown.
 */
export function planRowBytes(
  train: TrainPlan,
  rowShapes: readonly (readonly number[])[],
  dtype: DType,
): number | undefined {
  const [one, two] = [1, 2].map((rows) => {
    const typed = typedPlan(train, rowShapes, rows, dtype);
    return typed && typed.order.reduce((sum, n) => sum + sizeOf(typed.shapeOf(n)), 0);
  });
  if (one === undefined || two === undefined) return undefined;
  return (two - one) * (dtype === "float32" ? 4 : 8);
}

/** A matmul's or a convolution's 2 x multiply-adds; 0 for any other op (far cheaper per value). */
function nodeFlops(
  node: Node,
  inputs: readonly (readonly number[])[],
  out: readonly number[],
): number {
  switch (node.op.name) {
    case "matmul": {
      const [a, b] = inputs;
      const [m, k, n] = productDims(a, b, node.attrs.transA === true, node.attrs.transB === true);
      return 2 * m * k * n * sizeOf(out.slice(0, -2));
    }
    case "conv2d": // (x, w): every output value is a C x kh x kw dot product
      return 2 * sizeOf(out) * perFilter(inputs[1]);
    case "conv2dInputGrad": // (g, w, x)
      return 2 * sizeOf(inputs[0]) * perFilter(inputs[1]);
    case "conv2dFilterGrad": // (x, g, w)
      return 2 * sizeOf(inputs[1]) * perFilter(inputs[2]);
    default:
      return 0;
  }
}

/** C x kh x kw of a [F, C, kh, kw] filter bank. */
const perFilter = (w: readonly number[]): number => sizeOf(w) / Math.max(w[0], 1);
