/**
 * Nothing silently wrong through the CLI: output paths checked before training, checkpoints
 * locked and never silently replaced, divergence stops the run, nonsense options refused.
 */
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { main, type CliIO } from "../../src/cli/train.js";
import { checkModelMemory } from "../../src/cli/model-files.js";
import { decodeParams, loadParams, PARAMS_VERSION, saveParams } from "../../src/train/serialize.js";
import { loadDigits, randomSplit, standardize } from "../../src/train/data.js";
import { inProcessEngine } from "../../src/train/parallel/engine.js";
import { modelSpec } from "../../src/train/models.js";
import { DivergenceError } from "../../src/train/loop.js";
import { train, type TrainerOptions } from "../../src/train/trainer.js";

const tmp = mkdtempSync(join(tmpdir(), "adjoint-reliability-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const freshDir = (): string => mkdtempSync(join(tmp, `${counter++}-`));

function capture(): { io: CliIO; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (l) => out.push(l), err: (l) => err.push(l), isTTY: false } };
}

const DIGITS = ["--dataset", "digits", "--model", "logreg", "--threads", "1"];

/** Runs main() and returns its exit code with what it printed (a thrown error is exit 1). */
async function run(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const c = capture();
  try {
    return { code: await main(args, c.io), out: c.out, err: c.err };
  } catch (error) {
    c.err.push(`error: ${(error as Error).message}`);
    return { code: 1, out: c.out, err: c.err };
  }
}

/** A pid that is certainly not running: a child that has already exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]);
  return Number(child.stdout.toString());
}

describe("output paths are checked before training (exit 2, one line, nothing trained)", () => {
  it.each([
    [
      "--save",
      "nodir/m.bin",
      /^error: --save .*nodir\/m\.bin: the directory .*nodir does not exist$/,
    ],
    [
      "--checkpoint",
      "nodir/c.ckpt",
      /^error: --checkpoint .*nodir\/c\.ckpt: the directory .*nodir does not exist$/,
    ],
    [
      "--plot",
      "nodir/p.svg",
      /^error: --plot .*nodir\/p\.svg: the directory .*nodir does not exist$/,
    ],
    ["--save", "adir", /^error: --save .*adir: is a directory, not a regular file$/],
    ["--save", "afile/m.bin", /^error: --save .*afile\/m\.bin: .*afile is not a directory$/],
  ])("%s %s", async (option, relative, message) => {
    const dir = freshDir();
    mkdirSync(join(dir, "adir"));
    writeFileSync(join(dir, "afile"), "x");
    const path = join(dir, relative);
    const result = await run([...DIGITS, "--epochs", "1", option, path]);
    expect(result.code).toBe(2);
    expect(result.err).toHaveLength(1);
    expect(result.err[0]).toMatch(message);
    expect(result.out).toEqual([]); // no header line: nothing started
  });

  it("an unwritable directory is refused (as root: a read-only file system, when there is one)", async () => {
    // Root may write anywhere on a writable file system; /proc is mounted read-only for files.
    const ro = process.getuid?.() === 0 ? "/proc/sys/adjoint.bin" : join(freshDir(), "ro/m.bin");
    if (process.getuid?.() !== 0) {
      mkdirSync(join(ro, ".."));
      chmodSync(join(ro, ".."), 0o555);
    }
    const result = await run([...DIGITS, "--epochs", "1", "--save", ro]);
    expect(result.code).toBe(2);
    expect(result.err[0]).toMatch(/^error: --save .*: cannot write in .*\((EROFS|EACCES)\)$/);
  });
});

describe("checkpoints: never silently replaced, locked for the run", () => {
  it("an existing checkpoint is refused without --resume or --overwrite; --overwrite replaces it", async () => {
    const ckpt = join(freshDir(), "c.ckpt");
    expect((await run([...DIGITS, "--epochs", "1", "--checkpoint", ckpt])).code).toBe(0);
    const before = readFileSync(ckpt);
    const again = await run([...DIGITS, "--epochs", "2", "--checkpoint", ckpt]);
    expect(again.code).toBe(2);
    expect(again.err).toEqual([
      `error: --checkpoint ${ckpt}: the file exists; continue it with --resume, or replace it with --overwrite`,
    ]);
    expect(readFileSync(ckpt).equals(before)).toBe(true);
    const replaced = await run([
      ...DIGITS,
      "--epochs",
      "2",
      "--seed",
      "1",
      "--checkpoint",
      ckpt,
      "--overwrite",
    ]);
    expect(replaced.code).toBe(0);
    expect(loadParams(ckpt).extra!.position).toMatchObject({ epoch: 2 });
    expect(existsSync(`${ckpt}.lock`)).toBe(false);
  });

  it("a live process's lock refuses the run; a dead one's is taken over with a notice", async () => {
    const dir = freshDir();
    const ckpt = join(dir, "c.ckpt");
    writeFileSync(`${ckpt}.lock`, `${process.ppid}\n`); // the test runner's parent: alive
    const locked = await run([...DIGITS, "--epochs", "1", "--checkpoint", ckpt]);
    expect(locked.code).toBe(1);
    expect(locked.err.at(-1)).toBe(
      `error: checkpoint ${ckpt} is in use by process ${process.ppid} (lock file ${ckpt}.lock); wait for that run to end or choose another --checkpoint`,
    );
    expect(existsSync(ckpt)).toBe(false);
    const dead = deadPid();
    writeFileSync(`${ckpt}.lock`, `${dead}\n`);
    const stale = `c.ckpt.tmp-${dead}-0123456789ab`;
    writeFileSync(join(dir, stale), "half a checkpoint");
    const taken = await run([...DIGITS, "--epochs", "1", "--checkpoint", ckpt]);
    expect(taken.code).toBe(0);
    expect(taken.err).toContain(
      `note: taking over the stale lock ${ckpt}.lock (process ${dead} is not running)`,
    );
    expect(taken.err).toContain(`note: removed 1 temp file(s) a killed run left: ${stale}`);
    expect(readdirSync(dir).sort()).toEqual(["c.ckpt"]);
  });

  it("two runs on one checkpoint at once: the second is refused, the first's checkpoint intact", async () => {
    const ckpt = join(freshDir(), "c.ckpt");
    const first = run([...DIGITS, "--epochs", "3", "--checkpoint", ckpt]);
    const second = run([...DIGITS, "--epochs", "3", "--seed", "1", "--checkpoint", ckpt]);
    const [a, b] = await Promise.all([first, second]);
    expect(a.code).toBe(0);
    expect(b.code).not.toBe(0);
    expect(b.err.at(-1)).toMatch(/in use|the file exists|already exists/);
    expect(loadParams(ckpt).extra!.position).toMatchObject({ epoch: 3 });
  });
});

describe("divergence stops the run", () => {
  it.each([[["--lr", "1e300"]], [["--optimizer", "sgd", "--lr", "1e30"]]])(
    "%j: exit 1, one line naming the step, epoch and last finite loss",
    async (flags) => {
      const ckpt = join(freshDir(), "c.ckpt");
      const result = await run([...DIGITS, "--epochs", "3", ...flags, "--checkpoint", ckpt]);
      expect(result.code).toBe(1);
      expect(result.err.at(-1)).toMatch(
        /^error: training diverged at step \d+ \(epoch 1\): the (training loss|parameters) (is|are) not finite \((last finite loss [\d.e+-]+|no finite loss before it)\); try a learning rate below 1e\+\d+ \(--lr\)$/,
      );
      expect(result.out.some((l) => l.startsWith("done"))).toBe(false);
      // Stopped in the first epoch: no checkpoint was ever good, so none was written.
      expect(existsSync(ckpt)).toBe(false);
    },
  );

  it("the library: a resumed run that diverges leaves the checkpoint and parameters as they were", async () => {
    const ckpt = join(freshDir(), "c.ckpt");
    const split = standardize(randomSplit(loadDigits({ dtype: "float32" }), 0.2, 0));
    const base: TrainerOptions = {
      spec: modelSpec("logreg", 64, [], 10),
      split,
      dtype: "float32",
      batchSize: 32,
      epochs: 1,
      optimizer: { kind: "sgd", lr: 0.05 },
      seed: 0,
      shardCount: 1,
      createEngine: inProcessEngine,
      checkpointPath: ckpt,
      fingerprint: { run: "same" },
    };
    await train(base);
    const good = readFileSync(ckpt);
    const error = await train({
      ...base,
      epochs: 3,
      resume: true,
      optimizer: { kind: "sgd", lr: 1e30, weightDecay: 0.1 },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DivergenceError);
    expect((error as DivergenceError).epoch).toBe(2);
    expect((error as DivergenceError).lastFiniteLoss).toBeGreaterThan(0);
    expect(readFileSync(ckpt).equals(good)).toBe(true);
    expect(existsSync(`${ckpt}.lock`)).toBe(false);
  });

  it("a run stopped inside its first epoch reports the mean loss of the steps it did", async () => {
    const result = await run([...DIGITS, "--steps", "3", "--json"]);
    const summary = JSON.parse(result.out.at(-1)!);
    expect(summary.steps).toBe(3);
    expect(Number.isFinite(summary.trainLoss)).toBe(true);
    expect(summary.trainLoss).toBeGreaterThan(0);
  });
});

describe("nonsense options", () => {
  it.each([
    [
      ["--augment", "8"],
      "error: --augment 8: shifts of up to 8 px move half or more of the 8x8 digits images out of the frame; use at most 3",
    ],
    [
      ["--augment", "4"],
      "error: --augment 4: shifts of up to 4 px move half or more of the 8x8 digits images out of the frame; use at most 3",
    ],
    [
      ["--batch-size", "5000"],
      "error: --batch-size 5000 is larger than the 1437 training images of digits; use at most 1437",
    ],
  ])("%j is refused with exit 2", async (flags, message) => {
    const result = await run([...DIGITS, "--epochs", "1", ...flags]);
    expect(result.code).toBe(2);
    expect(result.err).toEqual([message]);
  });

  it("--hidden too large for memory names the option and the memory it needs", async () => {
    const huge = await run(["--dataset", "digits", "--hidden", "100000,100000"]);
    expect(huge.code).toBe(2);
    expect(huge.err).toEqual([
      "error: --hidden gives a [64-100000-100000-10] model with 10,007,600,010 parameters: one weight matrix of 10,000,000,000 values exceeds the 4,294,967,295 one tensor can hold",
    ]);
    const big = await run(["--dataset", "digits", "--hidden", "60000,60000"]);
    expect(big.code).toBe(2);
    expect(big.err[0]).toMatch(
      /^error: --hidden gives a \[64-60000-60000-10\] model with 3,604,560,010 parameters: each training thread's WebAssembly memory would need about 40\.3 GiB .*over the 4 GiB a wasm32 memory can hold$/,
    );
  });

  it("the memory check counts each thread's WebAssembly memory and the evaluation", () => {
    const check = (hidden: number, shards: number, threads: number) =>
      checkModelMemory(
        "--hidden",
        modelSpec("mlp", 784, [hidden], 10),
        "float32",
        "adam",
        shards,
        64,
        threads,
      );
    // 79.4M parameters: three weight copies per thread (0.9 GiB), the main thread evaluating too.
    expect(check(100000, 2, 2)).toBeUndefined();
    // 159M: a thread fits, but the main thread's training share and evaluation do not (a run
    // measured "cannot grow the linear memory" there, after training, before this check).
    expect(check(200000, 2, 2)).toMatch(
      /the main thread's WebAssembly memory would need about 5\.2 GiB \(a training thread's 1\.9 GiB and the evaluation's 0\.7 GiB/,
    );
    expect(check(600000, 2, 1)).toMatch(
      /each training thread's WebAssembly memory would need about 5\.6 GiB/,
    );
    // 64 threads of 0.4 GiB each: the total is over half of any machine this runs on.
    expect(check(50000, 64, 64)).toMatch(
      /training it needs about \d\d\.\d GiB \(float32 parameters, gradients and adam state [\d.]+ GiB, 64 threads at 0\.4 GiB each, evaluation\)/,
    );
  });

  it("--threads above the micro-shards is cut to them, with a note; the result is the same", async () => {
    const base = ["--dataset", "digits", "--model", "logreg", "--epochs", "1", "--json"];
    const many = await run([...base, "--threads", "4"]);
    expect(many.code).toBe(0);
    expect(many.err[0]).toBe(
      "note: --threads 4 but a step has 1 micro-shard (batch 32): using 1 thread; more would idle (--micro-shards or --batch-size give more)",
    );
    const one = await run([...base, "--threads", "1"]);
    expect(JSON.parse(many.out.at(-1)!).paramsHash).toBe(JSON.parse(one.out.at(-1)!).paramsHash);
    expect(JSON.parse(many.out.at(-1)!).threads).toBe(1);
  });

  it("--threads above the cores runs with a note that they share cores", async () => {
    const cores = availableParallelism();
    const threads = String(cores + 1);
    const result = await run([
      ...["--dataset", "digits", "--model", "logreg", "--steps", "2", "--micro-shards", "16"],
      ...["--threads", threads],
    ]);
    expect(result.code).toBe(0);
    expect(result.err).toContain(
      `note: --threads ${threads} on ${cores} cores: threads will share cores, which is usually slower than --threads ${cores} (results are identical)`,
    );
  });
});

describe("a checkpoint's position is validated field by field", () => {
  const start = {
    epoch: 0,
    batch: 0,
    t: 0,
    rngState: [1, 2, 3, 4, 0, 0],
    history: [],
    epochLossSum: 0,
    epochSamples: 0,
  };
  it.each([
    [{}, /corrupt checkpoint position: epoch is missing/],
    [{ ...start, extra: 1 }, /unknown field "extra"/],
    [{ ...start, batch: 99, t: 99 }, /batch is 99, expected an integer from 0 to 44/],
    [
      { ...start, batch: 2, t: 7, epochLossSum: 1, epochSamples: 64 },
      /step 7 does not match epoch 0, batch 2/,
    ],
    [
      { ...start, batch: 2, t: 2, epochLossSum: 1, epochSamples: 60 },
      /epochSamples is 60, expected an integer from 64 to 64/,
    ],
    [
      { ...start, rngState: [0, 0, 0, 0, 0, 0] },
      /rngState: Rng.setState: the four state words are all zero/,
    ],
    [{ ...start, epoch: 1, t: 45 }, /history must list the 1 completed epochs/],
    [{ ...start, epoch: 9, t: 405 }, /checkpoint is at epoch 9, past this run's 2 epochs/],
  ])("position %j is refused", async (position, message) => {
    const ckpt = join(freshDir(), "c.ckpt");
    expect((await run([...DIGITS, "--epochs", "1", "--checkpoint", ckpt])).code).toBe(0);
    const record = loadParams(ckpt);
    saveParams(ckpt, {
      ...record,
      version: PARAMS_VERSION,
      extra: { ...record.extra, position },
    });
    const result = await run([...DIGITS, "--epochs", "2", "--checkpoint", ckpt, "--resume"]);
    expect(result.code).toBe(1);
    expect(result.err.at(-1)).toMatch(message);
    expect(result.err.at(-1)).not.toMatch(/is not iterable|Cannot read/);
  });
});

describe("every single-bit flip of a real checkpoint is refused", () => {
  it("a 1-epoch SGD checkpoint of softmax regression on digits, each bit flipped in turn", async () => {
    const dir = freshDir();
    const ckpt = join(dir, "c.ckpt");
    const flags = ["--optimizer", "sgd", "--lr", "0.05", "--epochs", "1"];
    expect((await run([...DIGITS, ...flags, "--checkpoint", ckpt])).code).toBe(0);
    const good = readFileSync(ckpt);
    // In memory: loadParams reads the file, then decodes it with decodeParams.
    const accepted: number[] = [];
    for (let bit = 0; bit < good.length * 8; bit++) {
      const bytes = Buffer.from(good);
      bytes[bit >> 3] ^= 1 << (bit & 7);
      try {
        decodeParams(bytes, ckpt);
        accepted.push(bit);
      } catch (error) {
        if (!(error as Error).message.startsWith(`loadParams(${ckpt}): `)) accepted.push(bit);
      }
    }
    expect(accepted).toEqual([]);
    expect(good.length).toBeGreaterThan(2000);
  });
});

describe("--load FILE --epochs 0 evaluates a saved model without training", () => {
  it("prints the test accuracy the training run printed, and trains nothing", async () => {
    const dir = freshDir();
    const model = join(dir, "m.bin");
    const trained = await run([...DIGITS, "--epochs", "3", "--save", model, "--json"]);
    const summary = JSON.parse(trained.out.at(-1)!);
    const evaluated = await run([...DIGITS, "--epochs", "0", "--load", model, "--json"]);
    expect(evaluated.code).toBe(0);
    const result = JSON.parse(evaluated.out.at(-1)!);
    expect(result.steps).toBe(0);
    expect(result.testAccuracy).toBe(summary.testAccuracy);
    expect(result.paramsHash).toBe(summary.paramsHash);
    expect(evaluated.out[0]).toMatch(
      /^evaluated .*m\.bin: digits logreg \[64-10\], test accuracy \d+\.\d\d% on 360 images/,
    );
    const none = await run([...DIGITS, "--epochs", "0"]);
    expect(none.code).toBe(2);
    expect(none.err[0]).toBe(
      "error: --epochs 0 trains nothing: it evaluates the model given with --load FILE",
    );
  });
});
