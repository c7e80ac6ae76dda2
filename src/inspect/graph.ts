/** See the computation: a listing of a graph (as a jaxpr or debugprint) and a Graphviz drawing. */
import { isPlaceholder, type Node } from "../graph/node.js";
import { topoSort } from "../graph/topo.js";
import { fmtType } from "../graph/types.js";
import type { Tensor } from "../tensor/tensor.js";
import { isGradientNode } from "../autodiff/gradients.js";

/** Options of {@link formatGraph} and {@link toDot}. */
export interface InspectOptions {
  /** Values to summarise beside their nodes (e.g. every node of a run, from the Evaluator). */
  values?: ReadonlyMap<Node, Tensor>;
  /** Nodes to draw highlighted (toDot). */
  highlight?: Iterable<Node>;
}

/**
 * One line per node the outputs need, in topological order, each node once (shared subgraphs
 * are printed once and referred to by number): `%3 = matmul(%0 X, %1 W) : float64[null,10]`,
 * attrs in braces, gradient nodes (built by gradients() or vjp()) marked, and with `values` a
 * summary: shape, min/mean/max, NaN and Inf counts. Example: `console.log(formatGraph([loss, dW]))`.
 */
export function formatGraph(outputs: readonly Node[], options: InspectOptions = {}): string {
  const order = topoSort(outputs);
  const index = new Map(order.map((node, i) => [node, i]));
  const ref = (node: Node) =>
    isPlaceholder(node) ? `%${index.get(node)} ${node.name}` : `%${index.get(node)}`;
  const lines = order.map((node, i) => {
    const type = `${node.dtype ?? "?"}${fmtType(node.shape)}`;
    const head = isPlaceholder(node)
      ? `%${i} = variable "${node.name}"`
      : `%${i} = ${node.op.name}(${node.inputs.map(ref).join(", ")})${formatAttrs(node)}`;
    const value = options.values?.get(node);
    const summary = value ? `  = ${summarize(value)}` : "";
    const mark = isGradientNode(node) ? "  # gradient" : "";
    return `${head} : ${type}${summary}${mark}`;
  });
  lines.push(`outputs: ${outputs.map((o) => `%${index.get(o)}`).join(", ")}`);
  return lines.join("\n");
}

/**
 * The graph in Graphviz DOT: forward nodes white, gradient nodes blue, variables as ellipses,
 * edges labelled with the input index, `highlight`ed nodes in red; with `values`, each node's
 * summary under its type. Example: `writeFileSync("g.dot", toDot([loss, ...grads]))`.
 */
export function toDot(outputs: readonly Node[], options: InspectOptions = {}): string {
  const order = topoSort(outputs);
  const index = new Map(order.map((node, i) => [node, i]));
  const highlight = new Set(options.highlight ?? []);
  const escape = (text: string) => text.replace(/\\/g, "\\\\").replace(/"/g, '\\"');
  const lines = ["digraph adjoint {", "  rankdir=TB;", '  node [fontname="monospace"];'];
  for (const [i, node] of order.entries()) {
    const value = options.values?.get(node);
    const label = [
      `%${i} ${isPlaceholder(node) ? "variable" : node.op.name}${formatAttrs(node)}`,
      isPlaceholder(node) ? node.name : "",
      `${node.dtype ?? "?"}${fmtType(node.shape)}`,
      value ? summarize(value) : "",
    ].filter((part) => part !== "");
    const style = [
      `shape=${isPlaceholder(node) ? "ellipse" : "box"}`,
      "style=filled",
      `fillcolor=${isGradientNode(node) ? '"#cfe3ff"' : "white"}`,
      highlight.has(node) ? "color=red, penwidth=2" : "",
    ].filter((part) => part !== "");
    // DOT's line break inside a label is the two characters \n.
    lines.push(`  n${i} [label="${label.map(escape).join("\\n")}", ${style.join(", ")}];`);
    node.inputs.forEach((input, k) => {
      lines.push(`  n${index.get(input)} -> n${i} [label="${k}"];`);
    });
  }
  lines.push("}");
  return lines.join("\n");
}

/** ` {axis=1, keepdims=false}`: a node's attrs (large constants abbreviated), or "". */
export function formatAttrs(node: Node): string {
  // A variable's declared shape and dtype are its type, printed already.
  if (isPlaceholder(node)) return "";
  const parts = Object.entries(node.attrs)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) =>
      Array.isArray(value) && value.length > 8
        ? `${key}=[${value.length} values]`
        : `${key}=${JSON.stringify(value)}`,
    );
  return parts.length > 0 ? ` {${parts.join(", ")}}` : "";
}

/** A value's range over its finite elements (null when none) and its NaN and Inf counts. */
export function valueStats(value: Tensor): {
  range: { min: number; mean: number; max: number } | null;
  nan: number;
  inf: number;
} {
  let min = Infinity;
  let max = -Infinity;
  let total = 0;
  let finite = 0;
  let nan = 0;
  let inf = 0;
  for (const v of value.data) {
    if (Number.isNaN(v)) nan++;
    else if (!Number.isFinite(v)) inf++;
    else {
      min = Math.min(min, v);
      max = Math.max(max, v);
      total += v;
      finite++;
    }
  }
  return { range: finite > 0 ? { min, mean: total / finite, max } : null, nan, inf };
}

/** `[2,3] min -1 mean 0.25 max 2 NaN 1`: a value's shape, range and non-finite counts. */
function summarize(value: Tensor): string {
  const { range: r, nan, inf } = valueStats(value);
  const num = (v: number) => (Number.isInteger(v) ? String(v) : v.toPrecision(4));
  const range = r ? ` min ${num(r.min)} mean ${num(r.mean)} max ${num(r.max)}` : "";
  const bad = `${nan > 0 ? ` NaN ${nan}` : ""}${inf > 0 ? ` Inf ${inf}` : ""}`;
  return `[${value.shape.join(",")}]${range}${bad}`;
}
