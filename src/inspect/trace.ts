/**
 * A step-through page of one forward pass and its reverse sweep: a standalone HTML file (the
 * layout library, styles and data inline; no network) that walks the nodes in topological order
 * with their values, then the reverse sweep, each node's adjoint shown as the sum of the partial
 * adjoints its consumers sent, the dictionary of the notes this project grew from, on the screen.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { tracedGradients } from "../autodiff/gradients.js";
import { isPlaceholder, type Node } from "../graph/node.js";
import { topoSort } from "../graph/topo.js";
import { fmtType } from "../graph/types.js";
import { Evaluator } from "../runtime/evaluator.js";
import type { Tensor } from "../tensor/tensor.js";
import { formatAttrs, valueStats } from "./graph.js";

/** Options of {@link traceHtml}. */
export interface TraceOptions {
  /** The page's title (default "adjoint trace"). */
  title?: string;
  /** Values kept per node for the page (default 64; the summary covers them all). */
  maxValues?: number;
}

/** Above this many nodes the page shows a listing instead of laid-out graphs (see README). */
export const TRACE_LAYOUT_LIMIT = 1500;

/** A number as JSON can carry it: NaN and the infinities as strings. */
type Num = number | "NaN" | "Infinity" | "-Infinity";
const num = (v: number): Num =>
  Number.isFinite(v) ? v : Number.isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";

/** What the page shows of a value. */
interface ValueView {
  shape: number[];
  dtype: string;
  size: number;
  min: Num | null;
  mean: Num | null;
  max: Num | null;
  nan: number;
  inf: number;
  values: Num[];
  /** For a 4-D value [N,C,H,W]: the first example's channels, each an H x W plane (capped). */
  planes?: Num[][];
}

/** Channels of a 4-D value the page draws, and the largest plane it ships. */
const PLANES = 8;
const PLANE_VALUES = 32 * 32;

function view(value: Tensor, maxValues: number): ValueView {
  const planes: Num[][] = [];
  if (value.rank === 4 && value.shape[2] * value.shape[3] <= PLANE_VALUES) {
    const area = value.shape[2] * value.shape[3];
    for (let c = 0; c < Math.min(value.shape[1], PLANES); c++) {
      planes.push(Array.from(value.data.subarray(c * area, (c + 1) * area), num));
    }
  }
  const { range, nan, inf } = valueStats(value);
  return {
    shape: [...value.shape],
    dtype: value.dtype,
    size: value.size,
    min: range ? num(range.min) : null,
    mean: range ? num(range.mean) : null,
    max: range ? num(range.max) : null,
    nan,
    inf,
    values: Array.from(value.data.subarray(0, maxValues), num),
    ...(planes.length > 0 ? { planes } : {}),
  };
}

/** The page's data: nodes by id, the forward order, the sweep. */
interface TraceData {
  title: string;
  nodes: Record<
    number,
    {
      name: string;
      op: string;
      attrs: string;
      type: string;
      inputs: number[];
      gradient: boolean;
      value: ValueView | null;
    }
  >;
  forward: number[];
  backward: number[];
  sweep: {
    node: number;
    adjoint: number;
    parts: { partial: number; consumer: number | null; index: number }[];
  }[];
  wrt: { node: number; gradient: number }[];
  firstNonFinite: number | null;
  layout: boolean;
}

/**
 * The trace page of `loss` at `feeds`, differentiated with respect to `wrt`: one HTML string,
 * everything inline. Example: `writeFileSync("trace.html", traceHtml(loss, { X: x, W: w }, [W]))`.
 */
export function traceHtml(
  loss: Node,
  feeds: ReadonlyMap<Node, Tensor> | Readonly<Record<string, Tensor>>,
  wrt: readonly Node[],
  options: TraceOptions = {},
): string {
  const maxValues = options.maxValues ?? 64;
  const forward = topoSort([loss]);
  const { gradients, steps } = tracedGradients(loss, wrt);
  const forwardSet = new Set(forward);
  const shown = topoSort([
    ...gradients,
    ...steps.flatMap((s) => [s.adjoint, ...s.parts.map((p) => p.node)]),
  ]);
  const backward = shown.filter((node) => !forwardSet.has(node));
  const all = [...forward, ...backward];
  const values = new Evaluator(all).run(feeds);
  const valueOf = new Map(all.map((node, i) => [node, values[i]]));
  const nodes: TraceData["nodes"] = {};
  for (const node of all) {
    nodes[node.id] = {
      name: node.name,
      op: isPlaceholder(node) ? "variable" : node.op.name,
      attrs: formatAttrs(node).trim(),
      type: `${node.dtype ?? "?"}${fmtType(node.shape)}`,
      inputs: node.inputs.map((input) => input.id),
      gradient: !forwardSet.has(node),
      value: view(valueOf.get(node)!, maxValues),
    };
  }
  const bad = (node: Node) => {
    const v = nodes[node.id].value!;
    return v.nan + v.inf > 0;
  };
  const firstBad = forward.find(bad) ?? backward.find(bad);
  const data: TraceData = {
    title: options.title ?? "adjoint trace",
    nodes,
    forward: forward.map((n) => n.id),
    backward: backward.map((n) => n.id),
    sweep: steps.map((s) => ({
      node: s.node.id,
      adjoint: s.adjoint.id,
      parts: s.parts.map((p) => ({
        partial: p.node.id,
        consumer: p.consumer?.id ?? null,
        index: p.index,
      })),
    })),
    wrt: wrt.map((w, i) => ({ node: w.id, gradient: gradients[i].id })),
    firstNonFinite: firstBad?.id ?? null,
    layout: all.length <= TRACE_LAYOUT_LIMIT,
  };
  const escapeHtml = (text: string) =>
    text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  // NOTE: "<" escaped inside the inline JSON so no value or name can close the script element.
  const json = JSON.stringify(data).replace(/</g, "\\u003c");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(data.title)}</title>
<style>${STYLE}</style></head>
<body>
<header><h1>${escapeHtml(data.title)}</h1>
<div id="controls"><button id="first" title="Home">&laquo; first</button><button id="prev" title="Left arrow">&#x25C0; prev</button>
<button id="next" title="Right arrow">next &#x25B6;</button><button id="last" title="End">last &raquo;</button>
<span id="phase"></span></div><div id="banner"></div></header>
<main><section id="graphs"><h2>Forward graph</h2><div id="forward" class="graph"></div>
<h2>Gradient graph</h2><div id="backward" class="graph"></div></section>
<aside><div id="step"></div><div id="details"><p class="hint">Click a node for its op, attrs, inputs, value and adjoint.</p></div></aside></main>
<script>${dagreSource()}</script>
<script>const TRACE = ${json};</script>
<script>${APP}</script>
</body></html>
`;
}

let dagreCache: string | undefined;
/** The bundled layout library (@dagrejs/dagre's browser build), its source-map comment dropped. */
function dagreSource(): string {
  if (dagreCache === undefined) {
    const require = createRequire(import.meta.url);
    // The package exports only its main entry (dist/dagre.cjs); the browser build sits beside it.
    const path = join(dirname(require.resolve("@dagrejs/dagre")), "dagre.min.js");
    dagreCache = readFileSync(path, "utf8")
      .replace(/\/\/# sourceMappingURL=.*$/m, "")
      .replace(/<\/script/gi, "<\\/script");
  }
  return dagreCache;
}

const STYLE = `
body{font:14px system-ui,sans-serif;margin:0;color:#1d2330;background:#f7f8fa}
header{padding:10px 16px;background:#fff;border-bottom:1px solid #dde1e8;position:sticky;top:0;z-index:2}
h1{font-size:18px;margin:0 0 6px}h2{font-size:14px;margin:12px 0 4px;color:#4a5568}
button{font:inherit;padding:4px 10px;margin-right:4px;border:1px solid #b8c0cc;border-radius:4px;background:#fff;cursor:pointer}
#phase{margin-left:10px;font-weight:600}
#banner{margin-top:6px;color:#b00020;font-weight:600}
main{display:flex;gap:12px;padding:0 16px 16px}
#graphs{flex:3;min-width:0}aside{flex:2;min-width:320px;position:sticky;top:90px;align-self:flex-start}
.graph{background:#fff;border:1px solid #dde1e8;border-radius:6px;overflow:auto;max-height:46vh}
.graph svg{display:block}
.node rect{fill:#fff;stroke:#8a94a6;stroke-width:1}
.node.gradient rect{fill:#e6f0ff}.node.variable rect{rx:14}
.node.done rect{fill:#eef7ee}.node.gradient.done rect{fill:#d6f0dc}
.node.lit rect{stroke:#e07b00;stroke-width:3;fill:#fff4e0}
.node.bad rect{stroke:#b00020;stroke-width:2}
.node.selected rect{stroke:#2d6cdf;stroke-width:3}
.node text{font:11px ui-monospace,monospace;fill:#1d2330;pointer-events:none}
.node{cursor:pointer}
.edge{stroke:#a0a8b8;fill:none;stroke-width:1.2}.edge-label{font:10px monospace;fill:#7a8292}
#step,#details{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:10px;margin-top:12px}
table{border-collapse:collapse;width:100%}td:first-child{width:32%}td,th{border-bottom:1px solid #eef0f4;padding:3px 4px;text-align:left;vertical-align:top;font-size:12px}
.mono{font-family:ui-monospace,monospace}.nan{color:#b00020;font-weight:700}.hint{color:#6b7280}
.heat{display:inline-block;margin:4px 0}.plane{display:inline-block;margin-right:8px;outline:1px solid #c8ced8}.sum td{font-weight:700;border-top:2px solid #c8ced8}
.listing{font:12px ui-monospace,monospace;padding:6px;white-space:pre}.listing div.lit{background:#fff4e0}
`;

// The page's program: lays out both graphs with dagre, then the step control and the panels.
const APP = String.raw`
(function () {
  "use strict";
  const T = TRACE;
  const N = T.nodes;
  const toNum = (v) => (typeof v === "string" ? Number(v) : v);
  const fmt = (v) => {
    if (v === null || v === undefined) return "-";
    const n = toNum(v);
    if (Number.isNaN(n)) return "NaN";
    if (!Number.isFinite(n)) return n > 0 ? "Inf" : "-Inf";
    return Number.isInteger(n) ? String(n) : n.toPrecision(6);
  };
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  const label = (id) => N[id].op === "variable" ? N[id].name : "%" + id + " " + N[id].op;
  const elements = {};
  const SHOWN = 24; // numbers listed per value; the heatmap shows up to 64

  // A 4-D value [N,C,H,W]: one heatmap per channel of its first example, as images are seen.
  function heat(v) {
    if (v && v.planes) {
      return '<div class="planes">' + v.planes.map((p, c) =>
        '<span class="plane" title="example 0, channel ' + c + '">' +
        heatOf(p, v.shape[3]) + "</span>").join("") + "</div>";
    }
    if (!v || v.values.length < 2) return "";
    return heatOf(v.values, v.shape.length >= 2 ? v.shape[v.shape.length - 1] : v.values.length);
  }

  function heatOf(values, cols) {
    const v = { values };
    const shown = v.values.length;
    const rows = Math.ceil(shown / cols);
    const nums = v.values.map(toNum).filter(Number.isFinite);
    const lo = Math.min(...nums), hi = Math.max(...nums);
    const s = cols > 16 ? 5 : 10;
    let out = '<svg class="heat" width="' + (Math.min(cols, 32) * s) + '" height="' + (Math.min(rows, 32) * s) + '">';
    v.values.forEach((raw, i) => {
      const r = Math.floor(i / cols), c = i % cols;
      if (r >= 32 || c >= 32) return;
      const x = toNum(raw);
      let color = "#b00020";
      if (Number.isFinite(x)) {
        const t = hi > lo ? (x - lo) / (hi - lo) : 0.5;
        color = "hsl(" + (220 - 220 * t) + ",70%," + (85 - 35 * Math.abs(t - 0.5)) + "%)";
      }
      out += '<rect x="' + c * s + '" y="' + r * s + '" width="' + s + '" height="' + s + '" fill="' + color + '"><title>' + fmt(raw) + "</title></rect>";
    });
    return out + "</svg>";
  }

  function valueHtml(id, role) {
    const v = N[id].value;
    if (!v) return "-";
    const bad = v.nan + v.inf > 0;
    return '<div class="value" data-role="' + role + '" data-node="' + id + '">' +
      '<div class="mono">' + esc(v.dtype) + "[" + v.shape.join(",") + "] min " + fmt(v.min) + " mean " + fmt(v.mean) + " max " + fmt(v.max) +
      (bad ? ' <span class="nan">NaN ' + v.nan + " Inf " + v.inf + "</span>" : "") + "</div>" +
      heat(v) +
      '<div class="mono numbers">' + v.values.slice(0, SHOWN).map((x) => '<span class="num">' + fmt(x) + "</span>").join(" ") +
      (v.size > SHOWN ? " ... (" + v.size + " values)" : "") + "</div></div>";
  }

  function drawGraph(container, ids) {
    if (!T.layout) {
      const list = document.createElement("div");
      list.className = "listing";
      ids.forEach((id) => {
        const row = document.createElement("div");
        row.textContent = "%" + id + " = " + N[id].op + "(" + N[id].inputs.map((i) => "%" + i).join(", ") + ") : " + N[id].type;
        row.dataset.node = id;
        row.addEventListener("click", () => select(id));
        list.appendChild(row);
        elements[id] = row;
      });
      container.appendChild(list);
      return;
    }
    const g = new dagre.graphlib.Graph({ multigraph: true });
    g.setGraph({ rankdir: "TB", nodesep: 18, ranksep: 28, marginx: 8, marginy: 8 });
    g.setDefaultEdgeLabel(() => ({}));
    const inSet = new Set(ids);
    ids.forEach((id) => {
      const text = label(id);
      g.setNode(String(id), { width: Math.max(60, text.length * 7 + 16), height: 26, text });
    });
    ids.forEach((id) => N[id].inputs.forEach((input, k) => {
      if (inSet.has(input)) g.setEdge(String(input), String(id), { k }, String(id) + ":" + k);
    }));
    dagre.layout(g);
    const svgNS = "http://www.w3.org/2000/svg";
    const graph = g.graph();
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("width", graph.width + 16);
    svg.setAttribute("height", graph.height + 16);
    g.edges().forEach((e) => {
      const points = g.edge(e).points;
      const path = document.createElementNS(svgNS, "path");
      path.setAttribute("class", "edge");
      path.setAttribute("d", points.map((p, i) => (i ? "L" : "M") + p.x + "," + p.y).join(" "));
      path.setAttribute("marker-end", "url(#arrow)");
      svg.appendChild(path);
      const inputs = N[Number(e.w)].inputs;
      if (inputs.length > 1) {
        const mid = points[Math.floor(points.length / 2)];
        const t = document.createElementNS(svgNS, "text");
        t.setAttribute("class", "edge-label");
        t.setAttribute("x", mid.x + 3);
        t.setAttribute("y", mid.y);
        t.textContent = String(inputs.indexOf(Number(e.v)));
        svg.appendChild(t);
      }
    });
    const defs = document.createElementNS(svgNS, "defs");
    defs.innerHTML = '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#a0a8b8"/></marker>';
    svg.appendChild(defs);
    g.nodes().forEach((key) => {
      const n = g.node(key);
      const id = Number(key);
      const group = document.createElementNS(svgNS, "g");
      const v = N[id].value;
      group.setAttribute("class", "node" + (N[id].gradient ? " gradient" : "") + (N[id].op === "variable" ? " variable" : "") + (v && v.nan + v.inf > 0 ? " bad" : ""));
      group.setAttribute("transform", "translate(" + (n.x - n.width / 2) + "," + (n.y - n.height / 2) + ")");
      group.dataset.node = key;
      const rect = document.createElementNS(svgNS, "rect");
      rect.setAttribute("width", n.width);
      rect.setAttribute("height", n.height);
      rect.setAttribute("rx", N[id].op === "variable" ? 13 : 4);
      const text = document.createElementNS(svgNS, "text");
      text.setAttribute("x", 8);
      text.setAttribute("y", 17);
      text.textContent = n.text;
      const title = document.createElementNS(svgNS, "title");
      title.textContent = N[id].name + " : " + N[id].type;
      group.append(rect, text, title);
      group.addEventListener("click", () => select(id));
      svg.appendChild(group);
      elements[id] = group;
    });
    container.appendChild(svg);
  }

  const adjointOf = {};
  T.sweep.forEach((s, i) => (adjointOf[s.node] = i));
  const steps = T.forward.map((id) => ({ kind: "forward", id })).concat(T.sweep.map((s, i) => ({ kind: "reverse", i })));
  let current = -1;

  function mark(id, cls, on) {
    const el = elements[id];
    if (el) el.classList.toggle(cls, on);
  }

  function show(k) {
    current = Math.max(0, Math.min(steps.length - 1, k));
    Object.keys(elements).forEach((id) => { mark(id, "lit", false); mark(id, "done", false); });
    const step = steps[current];
    const panel = document.getElementById("step");
    const phase = document.getElementById("phase");
    if (step.kind === "forward") {
      T.forward.slice(0, current).forEach((id) => mark(id, "done", true));
      mark(step.id, "lit", true);
      phase.textContent = "forward pass: node " + (current + 1) + " of " + T.forward.length;
      const n = N[step.id];
      panel.innerHTML = '<h3>' + esc(label(step.id)) + '</h3><p class="mono">' + esc(n.name) + " : " + esc(n.type) + "</p>" +
        (n.inputs.length ? "<p>inputs: " + n.inputs.map((i) => esc(label(i))).join(", ") + "</p>" : "") +
        "<p>value</p>" + valueHtml(step.id, "value");
      panel.dataset.node = step.id;
      panel.dataset.kind = "forward";
    } else {
      T.forward.forEach((id) => mark(id, "done", true));
      const s = T.sweep[step.i];
      T.sweep.slice(0, step.i).forEach((d) => { mark(d.node, "done", false); mark(d.adjoint, "done", true); });
      mark(s.node, "lit", true);
      mark(s.adjoint, "lit", true);
      phase.textContent = "reverse sweep: step " + (step.i + 1) + " of " + T.sweep.length;
      const rows = s.parts.map((p) => {
        const from = p.consumer === null ? "the seed: d" + esc(label(s.node)) + "/d" + esc(label(s.node)) + " = 1" :
          esc(label(p.consumer)) + " (the gradient rule of " + esc(N[p.consumer].op) + ", input " + p.index + ")";
        return '<tr class="part" data-partial="' + p.partial + '"><td>' + from + "</td><td>" + valueHtml(p.partial, "part") + "</td></tr>";
      }).join("");
      panel.innerHTML = "<h3>adjoint of " + esc(label(s.node)) + "</h3>" +
        "<p>the sum of the " + s.parts.length + " partial adjoint" + (s.parts.length === 1 ? "" : "s") + " its consumers sent</p>" +
        "<table><tr><th>from</th><th>partial adjoint</th></tr>" + rows +
        '<tr class="sum"><td>adjoint (sum) = node ' + esc(label(s.adjoint)) + "</td><td>" + valueHtml(s.adjoint, "adjoint") + "</td></tr></table>";
      panel.dataset.node = s.node;
      panel.dataset.kind = "reverse";
    }
  }

  function select(id) {
    Object.keys(elements).forEach((k) => mark(k, "selected", false));
    mark(id, "selected", true);
    const n = N[id];
    const a = adjointOf[id];
    document.getElementById("details").innerHTML = "<h3>" + esc(label(id)) + "</h3>" +
      '<table><tr><td>name</td><td class="mono">' + esc(n.name) + "</td></tr>" +
      "<tr><td>op</td><td>" + esc(n.op) + (n.gradient ? " (gradient node)" : "") + "</td></tr>" +
      '<tr><td>attrs</td><td class="mono">' + esc(n.attrs || "-") + "</td></tr>" +
      '<tr><td>type</td><td class="mono">' + esc(n.type) + "</td></tr>" +
      "<tr><td>inputs</td><td>" + (n.inputs.map((i) => esc(label(i))).join(", ") || "-") + "</td></tr>" +
      "<tr><td>value</td><td>" + valueHtml(id, "detail-value") + "</td></tr>" +
      "<tr><td>adjoint</td><td>" + (a === undefined ? "-" : valueHtml(T.sweep[a].adjoint, "detail-adjoint")) + "</td></tr></table>";
    document.getElementById("details").dataset.node = id;
  }

  drawGraph(document.getElementById("forward"), T.forward);
  drawGraph(document.getElementById("backward"), T.backward);
  if (T.firstNonFinite !== null) {
    document.getElementById("banner").textContent = "NaN or Inf first appears at " + label(T.firstNonFinite) + " (" + N[T.firstNonFinite].name + ")";
    document.getElementById("banner").dataset.node = T.firstNonFinite;
  }
  document.getElementById("first").onclick = () => show(0);
  document.getElementById("prev").onclick = () => show(current - 1);
  document.getElementById("next").onclick = () => show(current + 1);
  document.getElementById("last").onclick = () => show(steps.length - 1);
  document.addEventListener("keydown", (e) => {
    if (e.key === "ArrowRight") show(current + 1);
    else if (e.key === "ArrowLeft") show(current - 1);
    else if (e.key === "Home") show(0);
    else if (e.key === "End") show(steps.length - 1);
  });
  show(0);
  document.body.dataset.ready = "true";
})();
`;
