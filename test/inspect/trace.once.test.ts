/**
 * The trace page in a real browser: headless Chromium (Debian's `chromium`, driven by
 * puppeteer-core, which downloads no browser) loads a generated page, steps through it and checks
 * what it shows against the Evaluator; where no browser exists the suite says so in one line.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";
import type { Node, Tensor } from "../../src/index.js";

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));
if (!CHROMIUM) {
  console.log(
    "trace.test: no chromium here (apt-get install chromium); the browser checks are skipped",
  );
}

const tmp = mkdtempSync(join(tmpdir(), "adjoint-trace-"));
let browser: Browser;

/** The exercise's softmax regression on a small batch: loss, W, b, and the feeds. */
function exercise(nan = false) {
  const X = adj.variable("X", { shape: [null, 3], dtype: "float64" });
  const Y = adj.variable("Y", { shape: [null, 2], dtype: "float64" });
  const W = adj.variable("W", { shape: [3, 2], dtype: "float64" });
  const b = adj.variable("b", { shape: [2], dtype: "float64" });
  const logits = adj.add(adj.matmul(X, W), b);
  const hidden = nan ? adj.log(logits) : logits; // log of a negative logit: NaN
  // With an L2 penalty, W feeds three consumers (matmul, and mul twice): its adjoint is a sum.
  const penalty = adj.mulByConst(adj.sum(adj.mul(W, W)), 0.01);
  const loss = adj.add(adj.divByConst(adj.softmaxCrossEntropy(hidden, Y), 4), penalty);
  const feeds = new Map<Node, Tensor>([
    [
      X,
      adj.tensor([
        [0.5, -1, 2],
        [1, 0.25, -0.5],
        [-1, 1, 0],
        [0.3, 0.3, 0.3],
      ]),
    ],
    [
      Y,
      adj.tensor([
        [1, 0],
        [0, 1],
        [1, 0],
        [0, 1],
      ]),
    ],
    [
      W,
      adj.tensor([
        [0.1, -0.2],
        [0.3, 0.05],
        [-0.4, 0.2],
      ]),
    ],
    [b, adj.tensor([0.01, -0.02])],
  ]);
  return { loss, feeds, wrt: [W, b] };
}

/** Opens a page for `html`, collecting console errors and page errors. */
async function open(html: string, name: string): Promise<{ page: Page; errors: string[] }> {
  const path = join(tmp, name);
  writeFileSync(path, html);
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("request", (r) => {
    if (!r.url().startsWith("file:")) errors.push(`network request: ${r.url()}`);
  });
  await page.goto(pathToFileURL(path).href);
  await page.waitForSelector("body[data-ready=true]", { timeout: 20_000 });
  return { page, errors };
}

/** The numbers a value block on the page shows, parsed from its text. */
const shownNumbers = (page: Page, selector: string) =>
  page.$$eval(`${selector} .numbers .num`, (spans) => spans.map((s) => s.textContent ?? ""));

const parse = (text: string) =>
  text === "NaN" ? NaN : text === "Inf" ? Infinity : text === "-Inf" ? -Infinity : Number(text);

describe.skipIf(!CHROMIUM)("the trace page in headless Chromium", () => {
  beforeAll(async () => {
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu"],
    });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it("shows each forward node's value as the Evaluator computes it, in topological order", async () => {
    const { loss, feeds, wrt } = exercise();
    const { page, errors } = await open(adj.traceHtml(loss, feeds, wrt), "forward.html");
    const order = adj.topoSort([loss]);
    const values = new adj.Evaluator(order).run(feeds);
    for (let k = 0; k < order.length; k++) {
      const id = await page.$eval("#step", (el) => Number(el.getAttribute("data-node")));
      expect(id).toBe(order[k].id);
      const shown = (await shownNumbers(page, "#step [data-role=value]")).map(parse);
      const want = [...values[k].data];
      expect(shown.length).toBe(want.length);
      shown.forEach((v, i) =>
        expect(Math.abs(v - want[i])).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(want[i]))),
      );
      // The lit node in the drawing is this one.
      expect(
        await page.$eval(`#forward [data-node="${id}"]`, (el) => el.classList.contains("lit")),
      ).toBe(true);
      await page.keyboard.press("ArrowRight");
    }
    expect(errors).toEqual([]);
    await page.close();
  });

  it("in the reverse sweep, the partial adjoints shown sum to the adjoint shown, and dW is the gradient", async () => {
    const { loss, feeds, wrt } = exercise();
    const { page, errors } = await open(adj.traceHtml(loss, feeds, wrt), "reverse.html");
    await page.keyboard.press("End");
    const sweepLength = adj.tracedGradients(loss, wrt).steps.length;
    const [dW] = new adj.Evaluator(adj.gradients(loss, wrt)).run(feeds);
    let sawW = false;
    let sawFanIn = false;
    for (let s = sweepLength - 1; s >= 0; s--) {
      expect(await page.$eval("#step", (el) => el.getAttribute("data-kind"))).toBe("reverse");
      const parts = await page.$$eval("#step tr.part", (rows) => rows.length);
      const adjoint = (await shownNumbers(page, "#step [data-role=adjoint]")).map(parse);
      const sums = new Array<number>(adjoint.length).fill(0);
      for (let p = 0; p < parts; p++) {
        const values = (
          await shownNumbers(page, `#step tr.part:nth-of-type(${p + 2}) [data-role=part]`)
        ).map(parse);
        // A part of a smaller (broadcast) shape is not summed elementwise here; equal shapes are.
        if (values.length === adjoint.length) values.forEach((v, i) => (sums[i] += v));
      }
      if (parts > 1) sawFanIn = true;
      const sameShape = await page.$$eval(
        "#step tr.part [data-role=part]",
        (els, n) => els.every((e) => e.querySelectorAll(".num").length === n),
        adjoint.length,
      );
      if (sameShape)
        adjoint.forEach((a, i) =>
          expect(Math.abs(sums[i] - a)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(a))),
        );
      const nodeId = await page.$eval("#step", (el) => Number(el.getAttribute("data-node")));
      if (nodeId === wrt[0].id) {
        sawW = true;
        adjoint.forEach((a, i) => expect(Math.abs(a - dW.data[i])).toBeLessThanOrEqual(1e-5));
      }
      await page.keyboard.press("ArrowLeft");
    }
    expect(sawW).toBe(true);
    expect(sawFanIn).toBe(true); // W's adjoint: the parts from matmul and from W*W
    expect(errors).toEqual([]);
    await page.close();
  });

  it("draws a 4-D value as one heatmap per channel of its first example", async () => {
    const x = adj.variable("x", { shape: [2, 1, 6, 6], dtype: "float64" });
    const w = adj.variable("w", { shape: [3, 1, 3, 3], dtype: "float64" });
    const conv = adj.conv2d(x, w);
    const loss = adj.sum(adj.maxPool2d(adj.relu(conv), { size: 2 }));
    const wave = (shape: number[]) =>
      adj.tensor(
        Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) =>
          Math.sin(0.7 * i),
        ),
        { shape },
      );
    const feeds = new Map<Node, Tensor>([
      [x, wave([2, 1, 6, 6])],
      [w, wave([3, 1, 3, 3])],
    ]);
    const { page, errors } = await open(adj.traceHtml(loss, feeds, [w]), "planes.html");
    const order = adj.topoSort([loss]);
    for (const node of order) {
      if (node === conv) break;
      await page.keyboard.press("ArrowRight");
    }
    expect(await page.$eval("#step", (el) => Number(el.getAttribute("data-node")))).toBe(conv.id);
    // conv2d's value [2,3,4,4]: three channels, each a 4 x 4 map of 16 cells.
    const planes = await page.$$eval("#step [data-role=value] .plane svg.heat", (els) =>
      els.map((e) => e.querySelectorAll("rect").length),
    );
    expect(planes).toEqual([16, 16, 16]);
    const [value] = new adj.Evaluator([conv]).run(feeds);
    const firstCell = await page.$eval("#step [data-role=value] .plane svg.heat rect title", (el) =>
      Number(el.textContent),
    );
    expect(Math.abs(firstCell - value.data[0])).toBeLessThanOrEqual(1e-5);
    expect(errors).toEqual([]);
    await page.close();
  });

  it("marks a NaN, names the first node where one appears, and a click shows a node's details", async () => {
    const { loss, feeds, wrt } = exercise(true);
    const { page, errors } = await open(
      adj.traceHtml(loss, feeds, wrt, { title: "NaN hunt" }),
      "nan.html",
    );
    const first = adj.topoSort([loss]).find((n) => n.op.name === "log")!;
    expect(await page.$eval("#banner", (el) => el.getAttribute("data-node"))).toBe(
      String(first.id),
    );
    expect(await page.$eval("#banner", (el) => el.textContent)).toMatch(
      /NaN or Inf first appears at %\d+ log/,
    );
    expect(
      await page.$eval(`#forward [data-node="${first.id}"]`, (el) => el.classList.contains("bad")),
    ).toBe(true);
    await page.click(`#forward [data-node="${first.id}"]`);
    const details = await page.$eval("#details", (el) => el.textContent ?? "");
    expect(details).toContain("log");
    expect(await shownNumbers(page, "#details [data-role=detail-value]")).toContain("NaN");
    expect(errors).toEqual([]);
    await page.close();
  });

  it("a graph of 10,000 nodes opens in seconds, as a listing", async () => {
    let x: Node = adj.variable("x", { shape: [4], dtype: "float64" });
    const x0 = x;
    for (let i = 0; i < 2500; i++) x = adj.tanh(x);
    const loss = adj.sum(x);
    const html = adj.traceHtml(loss, new Map([[x0, adj.tensor([0.1, 0.2, 0.3, 0.4])]]), [x0]);
    const started = Date.now();
    const { page, errors } = await open(html, "big.html");
    const seconds = (Date.now() - started) / 1000;
    const rows = await page.$$eval(".listing div", (els) => els.length);
    expect(rows).toBeGreaterThan(10_000);
    console.log(`trace.test: ${rows} nodes opened in ${seconds.toFixed(1)} s`);
    expect(errors).toEqual([]);
    await page.close();
  });
});

it("the CLI's --trace writes the page of one step of the chosen model; a non-.html name is refused", async () => {
  const { main } = await import("../../src/cli/train.js");
  const dir = mkdtempSync(join(tmpdir(), "adjoint-trace-cli-"));
  const path = join(dir, "step.html");
  const io = { out: () => {}, err: () => {}, isTTY: false };
  const args = ["--dataset", "digits", "--model", "logreg", "--epochs", "1", "--threads", "1"];
  expect(await main([...args, "--trace", path], io)).toBe(0);
  const html = readFileSync(path, "utf8");
  const data = JSON.parse(/const TRACE = (.*);<\/script>/.exec(html)![1]) as {
    forward: number[];
    nodes: Record<string, { op: string; value: { shape: number[] } }>;
    sweep: unknown[];
  };
  const ops = data.forward.map((id) => data.nodes[id].op);
  expect(ops).toContain("matmul");
  expect(ops).toContain("softmaxCrossEntropy");
  const X = data.forward.find(
    (id) => data.nodes[id].op === "variable" && data.nodes[id].value.shape[1] === 64,
  )!;
  expect(data.nodes[X].value.shape).toEqual([16, 64]);
  expect(data.sweep.length).toBeGreaterThan(3);
  const err: string[] = [];
  expect(
    await main([...args, "--trace", join(dir, "step.svg")], { ...io, err: (l) => err.push(l) }),
  ).toBe(2);
  expect(err.join("\n")).toContain("--trace: expected a .html file name");
  rmSync(dir, { recursive: true, force: true });
});
