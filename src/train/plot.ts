/** Training curves as a standalone SVG: train loss and test accuracy per epoch, no dependencies. */
import type { EpochRecord } from "./loop.js";

const WIDTH = 720;
const PANEL_HEIGHT = 240;
const MARGIN = { left: 72, right: 24, top: 56, bottom: 48, between: 64 };
const LOSS_COLOR = "#1f77b4";
const ACCURACY_COLOR = "#d62728";
const TEST_LOSS_COLOR = "#ff7f0e";

/** Escapes text for SVG element content and attribute values. */
export function escapeXml(text: string): string {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

/**
 * Renders loss (top panel) and accuracy (bottom panel) per epoch as one standalone SVG string.
 * Points with a non-finite value are left out of their line and counted in a note.
 * Example: `writeFileSync("curves.svg", renderCurvesSvg(history, "MNIST MLP"))`.
 */
export function renderCurvesSvg(
  history: readonly EpochRecord[],
  title = "Training curves",
): string {
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const height = MARGIN.top + 2 * PANEL_HEIGHT + MARGIN.between + MARGIN.bottom;
  const epochs = history.map((h) => h.epoch).filter(Number.isFinite);
  const xRange = niceRange(epochs, { integer: true });
  const xTicks = ticks(xRange, { integer: true });
  const toX = (epoch: number): number =>
    MARGIN.left + ((epoch - xRange.lo) / (xRange.hi - xRange.lo)) * plotWidth;

  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="${WIDTH / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(title)}</text>`,
  ];
  // Legend at the top, one swatch per series.
  const legendY = 42;
  parts.push(
    `<g class="legend">`,
    `<line x1="${MARGIN.left}" y1="${legendY}" x2="${MARGIN.left + 24}" y2="${legendY}" stroke="${LOSS_COLOR}" stroke-width="2"/>`,
    `<text x="${MARGIN.left + 30}" y="${legendY + 4}">train loss</text>`,
    `<line x1="${MARGIN.left + 130}" y1="${legendY}" x2="${MARGIN.left + 154}" y2="${legendY}" stroke="${ACCURACY_COLOR}" stroke-width="2"/>`,
    `<text x="${MARGIN.left + 160}" y="${legendY + 4}">test accuracy</text>`,
  );
  const withTestLoss = history.some((h) => h.testLoss !== undefined);
  if (withTestLoss) {
    parts.push(
      `<line x1="${MARGIN.left + 270}" y1="${legendY}" x2="${MARGIN.left + 294}" y2="${legendY}" stroke="${TEST_LOSS_COLOR}" stroke-width="2" stroke-dasharray="5,3"/>`,
      `<text x="${MARGIN.left + 300}" y="${legendY + 4}">test loss</text>`,
    );
  }
  parts.push(`</g>`);

  type Key = "trainLoss" | "testLoss" | "testAccuracy";
  const value = (h: EpochRecord, key: Key): number => h[key] ?? NaN;
  const panels: { label: string; clampUnit: boolean; series: { key: Key; color: string }[] }[] = [
    {
      label: withTestLoss ? "loss" : "train loss",
      clampUnit: false,
      series: [
        { key: "trainLoss", color: LOSS_COLOR },
        ...(withTestLoss ? [{ key: "testLoss" as const, color: TEST_LOSS_COLOR }] : []),
      ],
    },
    {
      label: "test accuracy",
      clampUnit: true,
      series: [{ key: "testAccuracy", color: ACCURACY_COLOR }],
    },
  ];
  let skipped = 0;
  panels.forEach((panel, index) => {
    const top = MARGIN.top + index * (PANEL_HEIGHT + MARGIN.between);
    const bottom = top + PANEL_HEIGHT;
    const finite = (key: Key) =>
      history.filter((h) => Number.isFinite(h.epoch) && Number.isFinite(value(h, key)));
    const all = panel.series.flatMap(({ key }) => finite(key).map((h) => value(h, key)));
    let yRange = niceRange(all);
    if (panel.clampUnit) yRange = { lo: Math.max(0, yRange.lo), hi: Math.min(1, yRange.hi) };
    if (yRange.hi <= yRange.lo) yRange = { lo: yRange.lo, hi: yRange.lo + 1 };
    const toY = (v: number): number =>
      bottom - ((v - yRange.lo) / (yRange.hi - yRange.lo)) * PANEL_HEIGHT;

    parts.push(`<g class="panel" id="${panel.series[0].key}">`);
    // Grid lines and tick labels.
    const yTicks = ticks(yRange);
    for (const t of yTicks.values) {
      const y = round(toY(t));
      parts.push(
        `<line x1="${MARGIN.left}" y1="${y}" x2="${MARGIN.left + plotWidth}" y2="${y}" stroke="#e0e0e0"/>`,
        `<text x="${MARGIN.left - 6}" y="${round(y + 4)}" text-anchor="end">${formatTick(t, yTicks.step)}</text>`,
      );
    }
    for (const t of xTicks.values) {
      const x = round(toX(t));
      parts.push(
        `<line x1="${x}" y1="${bottom}" x2="${x}" y2="${bottom + 5}" stroke="#000000"/>`,
        `<text x="${x}" y="${bottom + 18}" text-anchor="middle">${formatTick(t, xTicks.step)}</text>`,
      );
    }
    // Axes.
    parts.push(
      `<line x1="${MARGIN.left}" y1="${top}" x2="${MARGIN.left}" y2="${bottom}" stroke="#000000"/>`,
      `<line x1="${MARGIN.left}" y1="${bottom}" x2="${MARGIN.left + plotWidth}" y2="${bottom}" stroke="#000000"/>`,
      `<text x="${MARGIN.left + plotWidth / 2}" y="${bottom + 34}" text-anchor="middle">epoch</text>`,
      `<text x="18" y="${top + PANEL_HEIGHT / 2}" text-anchor="middle" transform="rotate(-90 18 ${top + PANEL_HEIGHT / 2})">${escapeXml(panel.label)}</text>`,
    );
    for (const { key, color } of panel.series) {
      const points = finite(key);
      // A series recorded on only some epochs (test loss from older checkpoints) skips the rest.
      if (key === "testLoss")
        skipped += history.filter((h) => h.testLoss !== undefined).length - points.length;
      else skipped += history.length - points.length;
      const coords = points.map((h) => `${round(toX(h.epoch))},${round(toY(value(h, key)))}`);
      const dash = key === "testLoss" ? ` stroke-dasharray="5,3"` : "";
      parts.push(
        `<polyline class="series" data-series="${key}" fill="none" stroke="${color}" stroke-width="2"${dash} points="${coords.join(" ")}"/>`,
      );
      for (const c of coords) {
        const [cx, cy] = c.split(",");
        parts.push(`<circle cx="${cx}" cy="${cy}" r="2.5" fill="${color}"/>`);
      }
    }
    parts.push(`</g>`);
  });
  if (history.length === 0 || skipped > 0) {
    const note =
      history.length === 0
        ? "no epochs recorded"
        : `${skipped} non-finite value${skipped === 1 ? "" : "s"} left out`;
    parts.push(
      `<text x="${WIDTH - MARGIN.right}" y="${legendY + 4}" text-anchor="end" fill="#666666">${escapeXml(note)}</text>`,
    );
  }
  parts.push(`</svg>`);
  return parts.join("\n") + "\n";
}

interface Range {
  lo: number;
  hi: number;
}

/** The data's range, widened to whole tick steps; a degenerate range gets some room. */
function niceRange(values: number[], opts: { integer?: boolean } = {}): Range {
  if (values.length === 0) return { lo: 0, hi: 1 };
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (hi === lo) {
    const pad = opts.integer ? 1 : Math.abs(lo) * 0.1 || 1;
    lo -= opts.integer ? 0 : pad;
    hi += pad;
  }
  const step = niceStep((hi - lo) / 5, opts.integer);
  return { lo: Math.floor(lo / step) * step, hi: Math.ceil(hi / step) * step };
}

/** 1, 2 or 5 times a power of ten, at least `raw` (at least 1 for integer axes). */
function niceStep(raw: number, integer = false): number {
  if (!(raw > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  const step = (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
  return integer ? Math.max(1, Math.round(step)) : step;
}

function ticks(range: Range, opts: { integer?: boolean } = {}): { values: number[]; step: number } {
  const step = niceStep((range.hi - range.lo) / 5, opts.integer);
  const values: number[] = [];
  const first = Math.ceil(range.lo / step - 1e-9);
  const last = Math.floor(range.hi / step + 1e-9);
  for (let k = first; k <= last; k++) values.push(k * step);
  return { values, step };
}

function formatTick(value: number, step: number): string {
  const decimals = Math.max(0, Math.min(10, -Math.floor(Math.log10(step) + 1e-9)));
  return value.toFixed(decimals);
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}
