import { describe, expect, it } from "vitest";
import { parseTrainArgs, usage, UsageError } from "../../src/cli/args.js";

/** The UsageError thrown for argv (fails the test if none is thrown). */
function usageError(argv: string[]): UsageError {
  try {
    parseTrainArgs(argv);
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return err as UsageError;
  }
  throw new Error(`parseTrainArgs(${JSON.stringify(argv)}) did not throw`);
}

describe("parseTrainArgs", () => {
  it("gives the documented defaults and leaves numeric settings undefined", () => {
    expect(parseTrainArgs([])).toEqual({
      dataset: "mnist",
      model: "mlp",
      dtype: "float32",
      backend: "wasm",
      seed: 0,
      json: false,
      resume: false,
      overwrite: false,
      help: false,
    });
    const opts = parseTrainArgs([]);
    for (const key of ["epochs", "steps", "batchSize", "lr", "weightDecay", "threads", "hidden"]) {
      expect(opts[key as keyof typeof opts], key).toBeUndefined();
    }
  });

  it("parses every option in both --key value and --key=value forms", () => {
    const spaced = parseTrainArgs([
      "--dataset",
      "digits",
      "--model",
      "mlp",
      "--hidden",
      "256,128",
      "--epochs",
      "30",
      "--steps",
      "500",
      "--batch-size",
      "64",
      "--lr",
      "5e-2",
      "--optimizer",
      "adam",
      "--weight-decay",
      "0.0001",
      "--dtype",
      "float64",
      "--backend",
      "js",
      "--lr-schedule",
      "cosine",
      "--augment",
      "2",
      "--threads",
      "4",
      "--seed",
      "17",
      "--json",
      "--save",
      "out/model.adj",
      "--checkpoint",
      "ckpt.adj",
      "--resume",
      "--plot",
      "curves.svg",
      "--step-timeout",
      "30000",
    ]);
    expect(spaced).toEqual({
      dataset: "digits",
      model: "mlp",
      hidden: [256, 128],
      epochs: 30,
      steps: 500,
      batchSize: 64,
      lr: 0.05,
      optimizer: "adam",
      weightDecay: 0.0001,
      dtype: "float64",
      backend: "js",
      lrSchedule: "cosine",
      augment: 2,
      threads: 4,
      seed: 17,
      json: true,
      save: "out/model.adj",
      checkpoint: "ckpt.adj",
      resume: true,
      overwrite: false,
      plot: "curves.svg",
      stepTimeoutMs: 30000,
      help: false,
    });
    const joined = parseTrainArgs([
      "--dataset=digits",
      "--hidden=256,128",
      "--epochs=30",
      "--steps=500",
      "--batch-size=64",
      "--lr=5e-2",
      "--optimizer=adam",
      "--weight-decay=0.0001",
      "--dtype=float64",
      "--backend=js",
      "--lr-schedule=cosine",
      "--augment=2",
      "--threads=4",
      "--seed=17",
      "--json",
      "--save=out/model.adj",
      "--checkpoint=ckpt.adj",
      "--resume",
      "--plot=curves.svg",
      "--step-timeout=30000",
    ]);
    expect(joined).toEqual(spaced);
  });

  it("accepts --threads auto, --load, --help and -h, logreg, a zero weight decay", () => {
    expect(parseTrainArgs(["--threads", "auto"]).threads).toBe("auto");
    expect(parseTrainArgs(["--load", "m.adj"]).load).toBe("m.adj");
    expect(parseTrainArgs(["--help"]).help).toBe(true);
    expect(parseTrainArgs(["-h"]).help).toBe(true);
    expect(parseTrainArgs(["--model", "logreg"]).model).toBe("logreg");
    expect(parseTrainArgs(["--weight-decay", "0"]).weightDecay).toBe(0);
    expect(parseTrainArgs(["--seed", "0"]).seed).toBe(0);
    expect(parseTrainArgs(["--lr", ".5"]).lr).toBe(0.5);
    expect(parseTrainArgs(["--save", "a=b.adj"]).save).toBe("a=b.adj");
    expect(parseTrainArgs(["--save=a=b.adj"]).save).toBe("a=b.adj");
    // The last of a repeated option wins, as in most command-line tools.
    expect(parseTrainArgs(["--epochs", "3", "--epochs", "5"]).epochs).toBe(5);
  });

  it.each([
    [["--bogus"], /^unknown option "--bogus"$/, "--bogus"],
    [["--bogus=1"], /^unknown option "--bogus"$/, "--bogus"],
    [["-x"], /^unknown option "-x"$/, "-x"],
    [["digits"], /^unexpected argument "digits"/, undefined],
    [["--epochs", "ten"], /^--epochs: expected a non-negative integer, got "ten"$/, "--epochs"],
    [["--epochs", "2.5"], /^--epochs: expected a non-negative integer, got "2.5"$/, "--epochs"],
    [["--batch-size", "0"], /^--batch-size: expected a positive integer, got "0"$/, "--batch-size"],
    [["--batch-size=-5"], /^--batch-size: expected a positive integer, got "-5"$/, "--batch-size"],
    [["--lr", "-0.1"], /^--lr: must be > 0, got "-0.1"$/, "--lr"],
    [["--lr", "0"], /^--lr: must be > 0, got "0"$/, "--lr"],
    [["--lr", "fast"], /^--lr: expected a number, got "fast"$/, "--lr"],
    [["--lr", "Infinity"], /^--lr: expected a number, got "Infinity"$/, "--lr"],
    [["--lr", "0x10"], /^--lr: expected a number/, "--lr"],
    [["--lr="], /^--lr: expected a number, got ""$/, "--lr"],
    [["--weight-decay", "-1"], /^--weight-decay: must be >= 0, got "-1"$/, "--weight-decay"],
    [
      ["--dataset", "cifar"],
      /^--dataset: unknown dataset "cifar" \(expected digits, mnist, mnist-full\)$/,
      "--dataset",
    ],
    [["--model", "rnn"], /^--model: unknown model "rnn"/, "--model"],
    [["--optimizer", "rmsprop"], /^--optimizer: unknown optimizer "rmsprop"/, "--optimizer"],
    [["--dtype", "float16"], /^--dtype: unknown dtype "float16"/, "--dtype"],
    [["--backend", "gpu"], /^--backend: unknown backend "gpu"/, "--backend"],
    [["--threads", "0"], /^--threads: expected a positive integer or auto, got "0"$/, "--threads"],
    [["--seed", "-3"], /^--seed: expected a non-negative integer, got "-3"$/, "--seed"],
    [["--hidden", "128,"], /^--hidden: expected comma-separated positive integers/, "--hidden"],
    [["--hidden", "128,0"], /^--hidden: expected a positive integer, got "0"$/, "--hidden"],
    [["--step-timeout", "soon"], /^--step-timeout: expected a positive integer/, "--step-timeout"],
    [["--epochs"], /^--epochs needs a value$/, "--epochs"],
    [["--save", "--json"], /^--save needs a value$/, "--save"],
    [["--save="], /^--save: needs a file name/, "--save"],
    [["--plot", "curves.png"], /^--plot: expected a \.svg file name, got "curves.png"$/, "--plot"],
    [["--json=yes"], /^--json takes no value, got "yes"$/, "--json"],
    [["--resume"], /^--resume needs --checkpoint FILE/, "--resume"],
    [
      ["--overwrite"],
      /^--overwrite applies to --checkpoint FILE, which is not given$/,
      "--overwrite",
    ],
    [
      ["--checkpoint", "c", "--resume", "--overwrite"],
      /^--overwrite and --resume conflict: resume continues the checkpoint$/,
      "--overwrite",
    ],
    [
      ["--resume", "--checkpoint", "c", "--load", "m"],
      /^--resume and --load "m" conflict/,
      "--load",
    ],
    [["--model", "logreg", "--hidden", "64"], /^--hidden 64 applies to --model mlp/, "--hidden"],
  ])("rejects %j", (argv, message, option) => {
    const err = usageError(argv);
    expect(err.message).toMatch(message);
    expect(err.message).not.toContain("\n");
    expect(err.option).toBe(option);
    expect(err.name).toBe("UsageError");
  });

  it("keeps messages on one line even for values with newlines", () => {
    expect(usageError(["--dataset", "a\nb"]).message).toBe(
      '--dataset: unknown dataset "a\\nb" (expected digits, mnist, mnist-full)',
    );
  });
});

describe("usage", () => {
  it("mentions every option", () => {
    const text = usage();
    for (const option of [
      "--dataset",
      "--model",
      "--hidden",
      "--epochs",
      "--steps",
      "--batch-size",
      "--lr",
      "--optimizer",
      "--weight-decay",
      "--dtype",
      "--threads",
      "--seed",
      "--json",
      "--save",
      "--load",
      "--checkpoint",
      "--resume",
      "--plot",
      "--step-timeout",
      "--help",
    ]) {
      expect(text).toContain(option);
    }
    expect(text.startsWith("Usage: npm run train-parallel -- [options]")).toBe(true);
  });
});
