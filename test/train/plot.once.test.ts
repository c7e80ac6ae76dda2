import { describe, expect, it } from "vitest";
import { escapeXml, renderCurvesSvg } from "../../src/train/plot.js";
import { type EpochRecord } from "../../src/train/loop.js";

interface Element {
  name: string;
  attrs: Record<string, string>;
  text: string;
}

/** A minimal well-formedness check: balanced tags, quoted attributes, only known entities. */
function parseXmlish(svg: string): Element[] {
  const elements: Element[] = [];
  const stack: Element[] = [];
  const tag = /<(\/?)([a-zA-Z][\w-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|([^<]+)/gy;
  let match: RegExpExecArray | null;
  let consumed = 0;
  while ((match = tag.exec(svg)) !== null) {
    consumed = tag.lastIndex;
    const [, closing, name, attrText, selfClosing, text] = match;
    if (text !== undefined) {
      if (/&(?!(amp|lt|gt|quot|apos);)/.test(text)) throw new Error(`bad entity in ${text}`);
      if (stack.length > 0) stack[stack.length - 1].text += text;
      else if (text.trim() !== "") throw new Error(`text outside the root: ${text}`);
      continue;
    }
    if (closing) {
      const open = stack.pop();
      if (!open || open.name !== name) throw new Error(`</${name}> closes ${open?.name}`);
      continue;
    }
    const attrs: Record<string, string> = {};
    for (const [, key, value] of attrText.matchAll(/([\w:-]+)="([^"]*)"/g)) {
      if (key in attrs) throw new Error(`duplicate attribute ${key} on <${name}>`);
      attrs[key] = value;
    }
    const element = { name, attrs, text: "" };
    elements.push(element);
    if (!selfClosing) stack.push(element);
  }
  if (consumed !== svg.length)
    throw new Error(`unparsable at ${consumed}: ${svg.slice(consumed, consumed + 40)}`);
  if (stack.length > 0) throw new Error(`unclosed <${stack[stack.length - 1].name}>`);
  return elements;
}

const NUMERIC = new Set(["x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "width", "height"]);

function history(n: number): EpochRecord[] {
  return Array.from({ length: n }, (_, i) => ({
    epoch: i + 1,
    trainLoss: 2 / (i + 1),
    testAccuracy: 0.8 + 0.15 * (1 - 1 / (i + 1)),
  }));
}

describe("renderCurvesSvg", () => {
  it("produces a well-formed standalone SVG with one point per epoch in each series", () => {
    const svg = renderCurvesSvg(history(12), "MNIST <mlp> & friends");
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"');
    const elements = parseXmlish(svg);
    expect(elements[0].name).toBe("svg");
    const lines = elements.filter((e) => e.name === "polyline");
    expect(lines.map((e) => e.attrs["data-series"])).toEqual(["trainLoss", "testAccuracy"]);
    for (const line of lines) {
      const points = line.attrs.points.trim().split(/\s+/);
      expect(points).toHaveLength(12);
      for (const p of points) {
        const [x, y] = p.split(",").map(Number);
        expect(Number.isFinite(x) && Number.isFinite(y)).toBe(true);
      }
    }
    for (const e of elements) {
      for (const [key, value] of Object.entries(e.attrs)) {
        if (NUMERIC.has(key))
          expect(Number.isFinite(Number(value)), `${e.name} ${key}=${value}`).toBe(true);
      }
    }
    // The title is escaped, both in <title> and in the heading.
    expect(svg).toContain("MNIST &lt;mlp&gt; &amp; friends");
    expect(svg).not.toContain("<mlp>");
    // Legend and axis labels.
    const texts = elements.filter((e) => e.name === "text").map((e) => e.text);
    expect(texts).toContain("train loss");
    expect(texts).toContain("test accuracy");
    expect(texts).toContain("epoch");
  });

  it("maps larger loss higher up the page and orders points by epoch", () => {
    const svg = renderCurvesSvg(history(5));
    const lines = parseXmlish(svg).filter((e) => e.name === "polyline");
    const loss = lines[0].attrs.points.split(" ").map((p) => p.split(",").map(Number));
    for (let i = 1; i < loss.length; i++) {
      expect(loss[i][0]).toBeGreaterThan(loss[i - 1][0]);
      // Loss decreases, so its y coordinate (downwards in SVG) increases.
      expect(loss[i][1]).toBeGreaterThan(loss[i - 1][1]);
    }
    const acc = lines[1].attrs.points.split(" ").map((p) => p.split(",").map(Number));
    for (let i = 1; i < acc.length; i++) expect(acc[i][1]).toBeLessThan(acc[i - 1][1]);
  });

  it("has tick labels on both axes", () => {
    const elements = parseXmlish(renderCurvesSvg(history(20)));
    const labels = elements.filter((e) => e.name === "text").map((e) => e.text);
    // Epoch ticks 0..20 in steps of 5; loss and accuracy ticks as decimals.
    expect(labels).toEqual(expect.arrayContaining(["0", "5", "10", "15", "20"]));
    expect(labels.some((t) => /^0\.\d+$/.test(t))).toBe(true);
  });

  it("handles one epoch, no epochs and non-finite values without NaN in the output", () => {
    for (const h of [
      history(1),
      [],
      [
        { epoch: 1, trainLoss: Number.NaN, testAccuracy: 0.5 },
        { epoch: 2, trainLoss: 1, testAccuracy: 0.6 },
      ],
    ]) {
      const svg = renderCurvesSvg(h);
      expect(svg).not.toMatch(/NaN|Infinity/);
      parseXmlish(svg);
    }
    const svg = renderCurvesSvg([
      { epoch: 1, trainLoss: Number.POSITIVE_INFINITY, testAccuracy: 0.5 },
      { epoch: 2, trainLoss: 1, testAccuracy: 0.6 },
    ]);
    const lines = parseXmlish(svg).filter((e) => e.name === "polyline");
    expect(lines[0].attrs.points.split(" ")).toHaveLength(1);
    expect(lines[1].attrs.points.split(" ")).toHaveLength(2);
    expect(svg).toContain("1 non-finite value left out");
    expect(renderCurvesSvg([])).toContain("no epochs recorded");
  });

  it("escapes all five XML special characters", () => {
    expect(escapeXml(`<a href="x">Tom & Jerry's</a>`)).toBe(
      "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&apos;s&lt;/a&gt;",
    );
  });
});
