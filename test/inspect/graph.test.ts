/** formatGraph and toDot: a listing a learner can read, and a drawing Graphviz accepts. */
import { expect, it } from "vitest";
import * as adj from "../../src/index.js";
import { topoSort } from "../../src/index.js";

it("formatGraph lists each node once in topological order, typed, gradient nodes marked", () => {
  const x1 = adj.variable("x1", { shape: [2], dtype: "float64" });
  const x2 = adj.variable("x2", { shape: [2], dtype: "float64" });
  const y = x1.mul(x2).add(x1);
  const [g1] = adj.gradients(y, [x1]);
  expect(adj.formatGraph([y, g1])).toBe(
    [
      '%0 = variable "x1" : float64[2]',
      '%1 = variable "x2" : float64[2]',
      "%2 = mul(%0 x1, %1 x2) : float64[2]",
      "%3 = add(%2, %0 x1) : float64[2]",
      "%4 = onesLike(%3) : float64[2]  # gradient",
      "%5 = sumLike(%4, %0 x1) : float64[2]  # gradient",
      "%6 = sumLike(%4, %2) : float64[2]  # gradient",
      "%7 = mul(%6, %1 x2) : float64[2]  # gradient",
      "%8 = sumLike(%7, %0 x1) : float64[2]  # gradient",
      "%9 = add(%5, %8) : float64[2]  # gradient",
      "outputs: %3, %9",
    ].join("\n"),
  );
});

it("with values: shape, min/mean/max, and NaN and Inf counted", () => {
  const x = adj.variable("x");
  const y = adj.log(x);
  const [xv, yv] = new adj.Evaluator([x, y]).run({ x: adj.tensor([-1, 0, 1, Math.E]) });
  const listing = adj.formatGraph([y], {
    values: new Map([
      [x, xv],
      [y, yv],
    ]),
  });
  expect(listing.split("\n")[1]).toBe(
    "%1 = log(%0 x) : ?[?]  = [4] min 0 mean 0.5000 max 1 NaN 1 Inf 1",
  );
});

it("toDot: every node and edge (labelled by input index), gradient nodes filled, highlight red", () => {
  const a = adj.variable("a");
  const b = adj.variable("b");
  const y = adj.sum(adj.mul(a, b));
  const [ga] = adj.gradients(y, [a]);
  const dot = adj.toDot([y, ga], { highlight: [y] });
  const nodes = topoSort([y, ga]);
  expect(dot.startsWith("digraph adjoint {")).toBe(true);
  expect(dot.trimEnd().endsWith("}")).toBe(true);
  expect(dot.match(/^ {2}n\d+ \[label=/gm)).toHaveLength(nodes.length);
  const edges = nodes.reduce((n, node) => n + node.inputs.length, 0);
  expect(dot.match(/ -> /g)).toHaveLength(edges);
  expect(dot).toContain('n0 -> n2 [label="0"];');
  expect(dot).toContain('n1 -> n2 [label="1"];');
  expect(dot).toMatch(/n3 \[label="%3 sum[^\n]*color=red, penwidth=2\];/);
  // Labels break lines with DOT's \n escape, never a raw newline inside quotes.
  for (const line of dot.split("\n")) expect(line.split('"').length % 2, line).toBe(1);
  expect(dot).toMatch(/fillcolor="#cfe3ff"/);
});
