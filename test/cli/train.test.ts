/** The trainer CLI through main(): usage errors, JSON summary, save/load, plots, checkpoints. */
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { usage } from "../../src/cli/args.js";
import { main, type CliIO } from "../../src/cli/train.js";
import { loadParams, paramsHash } from "../../src/train/serialize.js";

const tmp = mkdtempSync(join(tmpdir(), "adjoint-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let dirCounter = 0;
const freshDir = (): string => mkdtempSync(join(tmp, `${dirCounter++}-`));

interface Captured {
  io: CliIO;
  out: string[];
  err: string[];
  progress: string[];
}

function capture(isTTY = false, onProgress?: (text: string) => void): Captured {
  const out: string[] = [];
  const err: string[] = [];
  const progress: string[] = [];
  return {
    out,
    err,
    progress,
    io: {
      out: (line) => out.push(line),
      err: (line) => err.push(line),
      progress: (text) => {
        progress.push(text);
        onProgress?.(text);
      },
      isTTY,
    },
  };
}

interface Summary {
  dataset: string;
  model: string;
  threads: number;
  epochs: number;
  steps: number;
  batchSize: number;
  dtype: string;
  seconds: number;
  samplesPerSecond: number;
  trainLoss: number;
  testAccuracy: number;
  paramsHash: string;
  stopped: string | null;
}

// --threads 1: in-process, whatever "auto" would pick on this machine (results are the same).
const DIGITS = ["--dataset", "digits", "--model", "logreg", "--threads", "1"];
// 1437 training rows at the default batch size 32: 45 steps per epoch.
const STEPS_PER_EPOCH = 45;

/** Runs main with --json; returns the exit code, the parsed summary and the captured output. */
async function runJson(
  argv: string[],
  c: Captured = capture(),
): Promise<{ code: number; summary: Summary } & Captured> {
  const code = await main([...argv, "--json"], c.io);
  const last = c.out[c.out.length - 1];
  return { code, summary: JSON.parse(last) as Summary, ...c };
}

describe("train CLI: bad command lines", () => {
  const cases: [string, string[], RegExp][] = [
    ["an unknown flag", ["--bogus"], /^error: unknown option "--bogus"$/],
    [
      "a mistyped flag",
      ["--batch_size", "64"],
      /^error: unknown option "--batch_size"; did you mean --batch-size\?$/,
    ],
    [
      "a one-dash flag",
      ["-epochs", "3"],
      /^error: unknown option "-epochs"; did you mean --epochs\?$/,
    ],
    [
      "a non-numeric value",
      ["--epochs", "abc"],
      /^error: --epochs: expected a non-negative integer, got "abc"$/,
    ],
    [
      "batch size 0",
      ["--batch-size", "0"],
      /^error: --batch-size: expected a positive integer, got "0"$/,
    ],
    ["an unknown data set", ["--dataset", "foo"], /^error: --dataset: unknown dataset "foo"/],
    ["a negative learning rate", ["--lr", "-1"], /^error: --lr: must be > 0, got "-1"$/],
    [
      "--resume and --load together",
      ["--resume", "--load", "x.adj"],
      /^error: --resume and --load/,
    ],
  ];
  for (const [what, bad, message] of cases) {
    it(`rejects ${what}: exit 2, one error line and a pointer to --help, nothing written`, async () => {
      const dir = freshDir();
      const c = capture();
      const argv = [
        ...DIGITS,
        "--epochs",
        "1",
        "--save",
        join(dir, "out.adj"),
        "--checkpoint",
        join(dir, "ckpt.adj"),
        "--plot",
        join(dir, "curves.svg"),
        ...bad,
      ];
      expect(await main(argv, c.io)).toBe(2);
      expect(c.err).toHaveLength(2);
      expect(c.err[0]).toMatch(message);
      expect(c.err[0]).not.toContain("\n");
      expect(c.err[1]).toBe("run with --help for the options");
      expect(c.out).toEqual([]);
      expect(readdirSync(dir)).toEqual([]);
    });
  }

  it("--help and -h print the usage and exit 0", async () => {
    for (const flag of ["--help", "-h"]) {
      const c = capture();
      expect(await main([flag], c.io)).toBe(0);
      expect(c.out).toEqual([usage()]);
      expect(c.err).toEqual([]);
    }
    expect(usage()).toMatch(/--dataset digits\|mnist/);
  });
});

describe("train CLI: runs on digits", () => {
  let threeEpochHash = "";
  let threeEpochLoss = NaN;

  it("--json: the last line is a summary with the documented fields", async () => {
    const { code, summary, out, err } = await runJson([...DIGITS, "--epochs", "2"]);
    expect(code).toBe(0);
    expect(err).toEqual([]);
    expect(summary).toMatchObject({
      dataset: "digits",
      model: "logreg",
      threads: 1,
      epochs: 2,
      steps: 2 * STEPS_PER_EPOCH,
      batchSize: 32,
      dtype: "float32",
      stopped: null,
    });
    expect(summary.paramsHash).toMatch(/^[0-9a-f]{64}$/);
    expect(summary.seconds).toBeGreaterThan(0);
    // Samples per second of optimizer steps: the two epochs' samples over the step time.
    expect(summary.samplesPerSecond * summary.seconds).toBeCloseTo(2 * 1437, 6);
    expect(Number.isFinite(summary.trainLoss)).toBe(true);
    expect(summary.trainLoss).toBeLessThan(1);
    expect(summary.testAccuracy).toBeGreaterThan(0.85);
    expect(summary.testAccuracy).toBeLessThanOrEqual(1);
    // Plain (non-TTY) output: a header, one line per epoch, the done line, the JSON.
    expect(out).toHaveLength(5);
    expect(out[1]).toMatch(/^epoch +1\/2 +train loss \d+\.\d{4} +test accuracy \d+\.\d\d%/);
    expect(out[3]).toContain(`params ${summary.paramsHash.slice(0, 16)}`);
  });

  it("draws a progress bar on a TTY", async () => {
    const c = capture(true);
    expect(await main([...DIGITS, "--steps", "3"], c.io)).toBe(0);
    const bars = c.progress.filter((p) => p !== "");
    expect(bars.length).toBeGreaterThan(0);
    expect(bars[0]).toMatch(
      /^epoch 1\/\d+ \[=* *\] step 1\/3 loss \d+\.\d+ \d+ samples\/s, \d+\.\d s left$/,
    );
  });

  it("--save writes the final parameters; --load starts from them", async () => {
    const dir = freshDir();
    const saved = join(dir, "params.adj");
    const first = await runJson([...DIGITS, "--epochs", "1", "--save", saved]);
    const record = loadParams(saved);
    expect(record.model).toEqual({ kind: "logreg", sizes: [64, 10] });
    expect(record.params.map((p) => [p.name, p.shape, p.dtype])).toEqual([
      ["W1", [64, 10], "float32"],
      ["b1", [10], "float32"],
    ]);
    expect(paramsHash(record.params)).toBe(first.summary.paramsHash);

    // One Adam step (t = 1) moves each element by lr * |g| / (|g| + eps) <= lr, after the
    // decoupled decay p *= 1 - lr * wd (defaults: lr 0.01, wd 0.1).
    const next = join(dir, "next.adj");
    const second = await runJson([...DIGITS, "--load", saved, "--steps", "1", "--save", next]);
    expect(second.summary.steps).toBe(1);
    const before = record.params.map((p) => p.data);
    const after = loadParams(next).params.map((p) => p.data);
    let changed = 0;
    before.forEach((b, i) =>
      b.forEach((v, k) => {
        const delta = Math.abs(after[i][k] - v * (1 - 0.01 * 0.1));
        expect(delta).toBeLessThanOrEqual(0.01 * (1 + 1e-5));
        if (after[i][k] !== v) changed++;
      }),
    );
    expect(changed).toBeGreaterThan(0);
    // A fresh start is far from the saved parameters.
    const fresh = join(dir, "fresh.adj");
    await runJson([...DIGITS, "--steps", "1", "--save", fresh]);
    const freshW = loadParams(fresh).params[0].data;
    const far = freshW.some((v, k) => Math.abs(v - before[0][k]) > 0.05);
    expect(far).toBe(true);
  });

  it("--load of another model's parameters or of a truncated file fails clearly, writing nothing", async () => {
    const dir = freshDir();
    const mlp = join(dir, "mlp.adj");
    const mlpRun = await runJson([
      "--dataset",
      "digits",
      "--model",
      "mlp",
      "--hidden",
      "8",
      "--steps",
      "1",
      "--threads",
      "1",
      "--save",
      mlp,
    ]);
    expect(mlpRun.code).toBe(0);
    const outputs = ["--save", join(dir, "o.adj"), "--checkpoint", join(dir, "c.adj")];
    // Bad input: one line naming the file and what is wrong, exit 2, nothing written.
    const refused = async (file: string, message: string | RegExp) => {
      const run = capture();
      expect(await main([...DIGITS, "--load", file, ...outputs], run.io)).toBe(2);
      expect(run.out).toEqual([]);
      expect(run.err.join("\n")).toMatch(message);
    };
    await refused(
      mlp,
      `${mlp}: parameters are for a model of sizes [64,8,10], this run builds [64,10]`,
    );
    const truncated = join(dir, "truncated.adj");
    copyFileSync(mlp, truncated);
    truncateSync(truncated, readFileSync(mlp).length - 100);
    await refused(
      truncated,
      /loadParams\(.*truncated\.adj\): truncated file: the payload should be \d+ bytes, found \d+/,
    );
    await refused(join(dir, "missing.adj"), /cannot read the file/);
    expect(readdirSync(dir).sort()).toEqual(["mlp.adj", "truncated.adj"]);
  });

  it("--plot writes an SVG with one point per epoch in each curve", async () => {
    const dir = freshDir();
    const plot = join(dir, "curves.svg");
    const { code } = await runJson([...DIGITS, "--epochs", "3", "--plot", plot]);
    expect(code).toBe(0);
    const svg = readFileSync(plot, "utf8");
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(svg.trimEnd()).toMatch(/<\/svg>$/);
    const series = [...svg.matchAll(/<polyline [^>]*data-series="(\w+)"[^>]* points="([^"]*)"/g)];
    expect(series.map((m) => m[1])).toEqual(["trainLoss", "testLoss", "testAccuracy"]);
    for (const m of series) expect(m[2].trim().split(/\s+/)).toHaveLength(3);
    expect(svg.match(/<circle /g)).toHaveLength(9);
    expect(readdirSync(dir)).toEqual(["curves.svg"]);
  });

  it("--epochs 3 straight equals --epochs 2 --checkpoint, then --epochs 3 --resume", async () => {
    const straight = await runJson([...DIGITS, "--epochs", "3"]);
    threeEpochHash = straight.summary.paramsHash;
    threeEpochLoss = straight.summary.trainLoss;
    const dir = freshDir();
    const ckpt = join(dir, "run.ckpt");
    const first = await runJson([...DIGITS, "--epochs", "2", "--checkpoint", ckpt]);
    expect(first.summary.steps).toBe(2 * STEPS_PER_EPOCH);
    expect(first.summary.paramsHash).not.toBe(threeEpochHash);
    const resumed = await runJson([...DIGITS, "--epochs", "3", "--checkpoint", ckpt, "--resume"]);
    expect(resumed.code).toBe(0);
    expect(resumed.summary.steps).toBe(STEPS_PER_EPOCH);
    expect(resumed.summary.epochs).toBe(3);
    expect(resumed.summary.paramsHash).toBe(threeEpochHash);
    expect(resumed.summary.trainLoss).toBe(straight.summary.trainLoss);
    expect(resumed.summary.testAccuracy).toBe(straight.summary.testAccuracy);
    expect(readdirSync(dir)).toEqual(["run.ckpt"]);
  });

  it("resumes a run that started from --load (resume itself may not take --load)", async () => {
    const dir = freshDir();
    const saved = join(dir, "start.adj");
    await runJson([...DIGITS, "--epochs", "1", "--seed", "3", "--save", saved]);
    const straight = await runJson([...DIGITS, "--epochs", "2", "--load", saved]);
    const ckpt = join(dir, "run.ckpt");
    const cut = await runJson([
      ...DIGITS,
      ...["--epochs", "2", "--steps", "20", "--load", saved, "--checkpoint", ckpt],
    ]);
    expect(cut.summary.steps).toBe(20);
    const resumed = await runJson([...DIGITS, "--epochs", "2", "--checkpoint", ckpt, "--resume"]);
    expect(resumed.summary.steps).toBe(2 * STEPS_PER_EPOCH - 20);
    expect(resumed.summary.paramsHash).toBe(straight.summary.paramsHash);
  });

  it("resumes a run cut short mid-epoch by --steps to the same parameters", async () => {
    const dir = freshDir();
    const ckpt = join(dir, "run.ckpt");
    const cut = await runJson([...DIGITS, "--epochs", "3", "--steps", "50", "--checkpoint", ckpt]);
    expect(cut.summary.steps).toBe(50);
    const resumed = await runJson([...DIGITS, "--epochs", "3", "--checkpoint", ckpt, "--resume"]);
    expect(resumed.summary.steps).toBe(3 * STEPS_PER_EPOCH - 50);
    expect(resumed.summary.paramsHash).toBe(threeEpochHash);
    expect(resumed.summary.trainLoss).toBe(threeEpochLoss);
  });

  it("SIGINT stops at a step boundary with a checkpoint; --resume reaches the same parameters", async () => {
    const dir = freshDir();
    const ckpt = join(dir, "run.ckpt");
    const listenersBefore = process.listenerCount("SIGINT");
    let sent = false;
    const c = capture(true, (text) => {
      if (!sent && text.startsWith("epoch 2/")) {
        sent = true;
        process.emit("SIGINT");
      }
    });
    const code = await main([...DIGITS, "--epochs", "3", "--checkpoint", ckpt, "--json"], c.io);
    expect(code).toBe(130);
    expect(sent).toBe(true);
    expect(process.listenerCount("SIGINT")).toBe(listenersBefore);
    expect(c.err.join("\n")).toContain("SIGINT: stopping at the next step boundary");
    const summary = JSON.parse(c.out[c.out.length - 1]) as Summary;
    expect(summary.stopped).toBe("SIGINT");
    expect(summary.steps).toBeGreaterThan(STEPS_PER_EPOCH);
    expect(summary.steps).toBeLessThan(3 * STEPS_PER_EPOCH);
    const resumed = await runJson([...DIGITS, "--epochs", "3", "--checkpoint", ckpt, "--resume"]);
    expect(resumed.code).toBe(0);
    expect(summary.steps + resumed.summary.steps).toBe(3 * STEPS_PER_EPOCH);
    expect(resumed.summary.paramsHash).toBe(threeEpochHash);
  });

  it("--resume with another configuration is refused", async () => {
    const dir = freshDir();
    const ckpt = join(dir, "run.ckpt");
    await runJson([...DIGITS, "--epochs", "1", "--checkpoint", ckpt]);
    await expect(
      main(
        [...DIGITS, "--epochs", "2", "--batch-size", "16", "--checkpoint", ckpt, "--resume"],
        capture().io,
      ),
    ).rejects.toThrow(
      /checkpoint was written by a run with other settings; batchSize: checkpoint 32, this run 16/,
    );
    const missing = capture();
    const none = join(dir, "none.ckpt");
    expect(
      await main([...DIGITS, "--epochs", "2", "--checkpoint", none, "--resume"], missing.io),
    ).toBe(2);
    expect(missing.err).toEqual([
      `error: --resume: checkpoint ${none} does not exist: there is nothing to resume`,
    ]);
    expect(existsSync(join(dir, "none.ckpt"))).toBe(false);
  });
});

describe("train CLI: learning-rate schedule", () => {
  it("--lr-schedule cosine decays to 0 over the run: a different run, the same over re-runs", async () => {
    const constant = await runJson([...DIGITS, "--steps", "20"]);
    const cosine = await runJson([...DIGITS, "--steps", "20", "--lr-schedule", "cosine"]);
    const again = await runJson([...DIGITS, "--steps", "20", "--lr-schedule", "cosine"]);
    expect(constant.code).toBe(0);
    expect(cosine.code).toBe(0);
    expect(cosine.summary.paramsHash).not.toBe(constant.summary.paramsHash);
    expect(again.summary.paramsHash).toBe(cosine.summary.paramsHash);
  });

  it("the first scheduled step takes the full rate: one cosine step equals one constant step", async () => {
    const dir = freshDir();
    const saved = join(dir, "p.adj");
    const first = await runJson([...DIGITS, "--steps", "1", "--save", saved]);
    expect(first.code).toBe(0);
    // Step 1 runs at lr * 0.5 * (1 + cos 0) = lr, so one step equals the constant run; the
    // schedule only differs from the second step on.
    const cosine = await runJson([...DIGITS, "--steps", "1", "--lr-schedule", "cosine"]);
    expect(cosine.summary.paramsHash).toBe(first.summary.paramsHash);
  });
});
