/**
 * No data lost: outputs never replace a device or a directory, two outputs never share a file, a
 * dead run's lock (a zombie, a reused pid) never blocks its resume, a lock that cannot be removed
 * never hides the real failure, and what cannot be loaded says why.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { outputPathProblem, processStat, writeFileAtomic } from "../../src/train/files.js";
import { PARAMS_VERSION, saveParams } from "../../src/train/serialize.js";
import { acquireLock } from "../../src/train/files.js";
import { train, type TrainerOptions } from "../../src/train/trainer.js";
import { loadDigits, randomSplit, standardize } from "../../src/train/data.js";
import { inProcessEngine } from "../../src/train/parallel/engine.js";
import { modelSpec } from "../../src/train/models.js";
import * as adj from "../../src/index.js";
import { runCli as run, tempDirs } from "../helpers/cli.js";

const freshDir = tempDirs("adjoint-data-loss-");

describe("outputs never replace what is not a regular file", () => {
  it("a character device, a FIFO and a directory are refused before any write", () => {
    expect(outputPathProblem("/dev/full")).toBe("is a character device, not a regular file");
    const dir = freshDir();
    const fifo = join(dir, "pipe");
    execFileSync("mkfifo", [fifo]);
    expect(outputPathProblem(fifo)).toBe("is a FIFO, not a regular file");
    expect(() => writeFileAtomic(fifo, "x")).toThrow(`refusing to write ${fifo}: it is a FIFO`);
    expect(statSync(fifo).isFIFO()).toBe(true);
    const sub = join(dir, "sub");
    mkdirSync(sub);
    const record = {
      format: "adjoint-params" as const,
      version: PARAMS_VERSION as typeof PARAMS_VERSION,
      model: { kind: "test" },
      params: [{ name: "W", shape: [1], dtype: "float32" as const, data: new Float32Array([1]) }],
    };
    expect(() => saveParams(sub, record)).toThrow(/it is a directory, not a regular file/);
    expect(statSync(sub).isDirectory()).toBe(true);
    expect(outputPathProblem("")).toBe("is empty: give a file name");
  });

  // NOTE: the CLI is pointed at a FIFO of its own, never at /dev/full: a regression would then
  // replace a device node of the machine running the tests (as root, rename() may).
  it("the CLI refuses --save onto a FIFO (or a device) before training, and leaves it as it was", async () => {
    const fifo = join(freshDir(), "pipe");
    execFileSync("mkfifo", [fifo]);
    const { code, err } = await run(["--dataset", "digits", "--model", "logreg", "--save", fifo]);
    expect(code).not.toBe(0);
    expect(err.join("\n")).toContain(`--save ${fifo}: is a FIFO, not a regular file`);
    expect(statSync(fifo).isFIFO()).toBe(true);
  });

  it("the CLI refuses --checkpoint and --save on one file", async () => {
    const file = join(freshDir(), "f");
    const { code, err } = await run(["--dataset", "digits", "--checkpoint", file, "--save", file]);
    expect(code).not.toBe(0);
    expect(err.join("\n")).toContain(`--save and --checkpoint name the same file ${file}`);
  });

  it("fit() checks its checkpoint path before training", async () => {
    const x = adj.variable("x", { shape: [null, 1], dtype: "float32" });
    const W = adj.variable("W", { shape: [1, 1], dtype: "float32" });
    const base = {
      loss: adj.mean(adj.matmul(x, W)),
      params: new Map([[W, adj.zeros([1, 1], "float32")]]),
      data: new Map([[x, adj.zeros([4, 1], "float32")]]),
    };
    await expect(adj.fit({ ...base, checkpoint: "" })).rejects.toThrow(
      'fit: checkpoint "": is empty: give a file name',
    );
    const dir = freshDir();
    await expect(adj.fit({ ...base, checkpoint: dir })).rejects.toThrow(
      `fit: checkpoint "${dir}": is a directory, not a regular file`,
    );
  });
});

describe("locks of dead runs", () => {
  it("a zombie (killed, not yet reaped) does not hold its lock", async () => {
    // sh starts a short child, then becomes `sleep`, which never reaps it: a zombie for 3 s.
    const parent = spawn("sh", ["-c", "sleep 0.05 & echo $!; exec sleep 3"]);
    const pid = await new Promise<number>((resolve) =>
      parent.stdout.once("data", (chunk: Buffer) => resolve(Number(String(chunk).trim()))),
    );
    try {
      for (let i = 0; i < 100 && processStat(pid)?.state !== "Z"; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(processStat(pid)?.state).toBe("Z");
      const path = join(freshDir(), "c.ckpt");
      writeFileSync(`${path}.lock`, `${pid}\n`);
      const notices: string[] = [];
      const release = acquireLock(path, (line) => notices.push(line));
      expect(notices.join("\n")).toContain(`process ${pid} is not running`);
      release();
    } finally {
      parent.kill();
    }
  });

  it("a lock whose pid now belongs to another process (another start time) is stale", async () => {
    const other = spawn("sleep", ["3"]);
    try {
      const pid = other.pid!;
      const path = join(freshDir(), "c.ckpt");
      const started = processStat(pid)!.startTime;
      writeFileSync(`${path}.lock`, `${pid} ${started}\n`);
      expect(() => acquireLock(path)).toThrow(`is in use by process ${pid}`);
      writeFileSync(`${path}.lock`, `${pid} ${Number(started) - 1}\n`);
      const release = acquireLock(path);
      release();
    } finally {
      other.kill();
    }
  });

  it("a lock that cannot be removed is reported, never thrown over the real error", () => {
    const path = join(freshDir(), "c.ckpt");
    const notices: string[] = [];
    const release = acquireLock(path, (line) => notices.push(line));
    // Stand-in for a directory made read-only (root ignores modes): rmSync cannot remove this.
    rmSync(`${path}.lock`);
    mkdirSync(`${path}.lock`);
    writeFileSync(join(`${path}.lock`, "x"), "");
    expect(() => release()).not.toThrow();
    expect(notices.join("\n")).toContain(`could not remove the lock ${path}.lock`);
  });
});

describe("--load says what it got", () => {
  it("a missing file: one line naming it, exit 2", async () => {
    const missing = join(freshDir(), "none.bin");
    const args = ["--dataset", "digits", "--model", "logreg", "--threads", "1", "--epochs", "1"];
    const { code, err } = await run([...args, "--load", missing]);
    expect(code).toBe(2);
    expect(err.join("\n")).toContain(`error: loadParams(${missing}): cannot read the file`);
  });
  it("a checkpoint is named as one, with how to resume it", async () => {
    const dir = freshDir();
    const checkpoint = join(dir, "c.ckpt");
    const args = ["--dataset", "digits", "--model", "logreg", "--threads", "1", "--epochs", "1"];
    expect((await run([...args, "--checkpoint", checkpoint])).code).toBe(0);
    const { code, err } = await run([...args, "--load", checkpoint]);
    expect(code).toBe(2);
    expect(err.join("\n")).toContain(
      `${checkpoint} is a training checkpoint, not a parameter file: continue its run with --checkpoint ${checkpoint} --resume`,
    );
  });
  it("non-finite weights are refused, naming the tensor and the element", async () => {
    const dir = freshDir();
    const file = join(dir, "p.bin");
    const args = ["--dataset", "digits", "--model", "logreg", "--threads", "1", "--epochs", "1"];
    const plot = join(dir, "curves.svg");
    const saved = await run([...args, "--save", file, "--plot", plot]);
    expect(saved.code).toBe(0);
    // Every file the CLI writes is said, with what it is.
    expect(saved.out).toContain(`wrote ${file} (parameters)`);
    expect(saved.out).toContain(`wrote ${plot} (learning curves)`);
    const { loadParams } = await import("../../src/train/serialize.js");
    const record = loadParams(file);
    record.params[0].data[3] = NaN;
    saveParams(file, record);
    const { code, err } = await run([...args, "--load", file]);
    expect(code).toBe(2);
    expect(err.join("\n")).toMatch(
      /parameter "W1" holds NaN at element 3: a diverged or corrupt file/,
    );
  });
});

describe("the parameters are handed over before anything after training can fail", () => {
  /** A run whose test set cannot be evaluated (63 features for a 64-input model). */
  function broken(): TrainerOptions {
    const split = standardize(randomSplit(loadDigits({ dtype: "float32" }), 0.2, 0));
    const test = split.test;
    const rows = test.X.shape[0];
    const X = adj.tensor(test.X.data.slice(0, rows * 63), { shape: [rows, 63] });
    return {
      spec: modelSpec("logreg", 64, [], 10),
      split: { ...split, test: { ...test, X } },
      dtype: "float32",
      batchSize: 32,
      epochs: 1,
      optimizer: { kind: "sgd", lr: 0.05 },
      seed: 0,
      shardCount: 1,
      createEngine: inProcessEngine,
    };
  }
  it("a stopped run: onTrained has the parameters before the evaluation fails", async () => {
    const saved: number[] = [];
    const error = await train({
      ...broken(),
      maxSteps: 3,
      onTrained: (p) => saved.push(p.length),
    }).catch((e: unknown) => e as Error);
    expect(saved).toEqual([2]);
    expect(String(error)).toMatch(/matmul/);
  });
  it("an epoch's evaluation that fails saves that epoch's parameters first and says so", async () => {
    const saved: number[] = [];
    const error = await train({ ...broken(), onTrained: (p) => saved.push(p.length) }).catch(
      (e: unknown) => e as Error,
    );
    expect(saved).toEqual([2]);
    expect(String(error)).toMatch(
      /evaluating the test accuracy failed .* \(the parameters were saved first\)/,
    );
  });
});
