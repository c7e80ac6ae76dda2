// `node scripts/screenshot-trace.mjs`: the README's screenshot of the trace page, taken with the
// browser test's tooling (puppeteer-core driving Debian's chromium). Needs `npm run build` first.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import puppeteer from "puppeteer-core";
import { main } from "../dist/src/cli/train.js";

const dir = mkdtempSync(join(tmpdir(), "adjoint-shot-"));
const page = join(dir, "step.html");
const quiet = { out: () => {}, err: (l) => console.error(l), isTTY: false };
// The exercise's model: softmax regression on the 8x8 digits, one step on 16 images.
await main(
  ["--dataset", "digits", "--model", "logreg", "--epochs", "1", "--threads", "1", "--trace", page],
  quiet,
);
const browser = await puppeteer.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
});
const tab = await browser.newPage();
await tab.setViewport({ width: 1280, height: 860 });
await tab.goto(`file://${page}`);
await tab.waitForSelector("body[data-ready=true]");
// Into the reverse sweep, at the logits' adjoint (softmax minus one-hot, through the fused rule).
const forward = await tab.evaluate(() => globalThis.TRACE.forward.length);
for (let i = 0; i < forward + 3; i++) await tab.keyboard.press("ArrowRight");
await tab.screenshot({ path: "docs/trace.png" });
await browser.close();
writeFileSync(join(dir, "done"), "");
console.log("wrote docs/trace.png");
