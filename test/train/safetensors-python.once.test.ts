/**
 * Safetensors with Python's own library: files written by `safetensors.torch.save_file` and
 * `safetensors.numpy.save_file` load in adjoint, and the file adjoint writes loads in Python
 * (numpy, torch and safe_open), through the committed fixture pair of
 * scripts/safetensors-fixtures.py (safetensors 0.8.0, torch 2.13.0, numpy 2.4.6), and live when
 * a python with safetensors is on this machine ($PEERS_PYTHON or python3).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadParams, saveParams } from "../../src/train/serialize.js";
import { fixtureRecord } from "../helpers/safetensors-fixture.js";
import { packageRoot } from "../../src/package.js";

const fixtures = join(packageRoot(), "test", "fixtures", "safetensors");
const tmp = mkdtempSync(join(tmpdir(), "adjoint-safetensors-python-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// The formulas of scripts/safetensors-fixtures.py, in adjoint.
const record = fixtureRecord();

describe.each(["torch", "numpy"])("a file written by safetensors.%s.save_file", (writer) => {
  it("loads with its names, dtypes, shapes and values", () => {
    const loaded = loadParams(join(fixtures, `${writer}.safetensors`));
    const byName = new Map(loaded.params.map((p) => [p.name, p]));
    expect([...byName.keys()].sort()).toEqual(["W1", "W2", "b1"]);
    for (const want of record.params) {
      const got = byName.get(want.name)!;
      expect([got.dtype, got.shape], want.name).toEqual([want.dtype, want.shape]);
      expect([...got.data], want.name).toEqual([...want.data]);
    }
  });
});

describe("the file adjoint writes", () => {
  const written = join(tmp, "adjoint.safetensors");
  saveParams(written, record);

  it("is the committed fixture, byte for byte", () => {
    expect(readFileSync(written).equals(readFileSync(join(fixtures, "adjoint.safetensors")))).toBe(
      true,
    );
  });

  /** What Python's library read from the fixture (its script's output), against the record. */
  const expectReadBack = (read: {
    keys: string[];
    metadata: Record<string, string>;
    tensors: Record<
      string,
      { dtype: string; shape: number[]; values: number[]; torchDtype: string }
    >;
  }) => {
    expect(read.keys).toEqual(["W1", "W2", "b1"]);
    expect(JSON.parse(read.metadata.model)).toEqual(record.model);
    for (const p of record.params) {
      const t = read.tensors[p.name];
      expect([t.dtype, t.torchDtype, t.shape], p.name).toEqual([
        p.dtype,
        `torch.${p.dtype}`,
        p.shape,
      ]);
      expect(t.values, p.name).toEqual([...p.data]);
    }
  };

  const python = process.env.PEERS_PYTHON ?? "python3";
  const hasSafetensors = (() => {
    try {
      execFileSync(python, ["-c", "import safetensors, torch, numpy"], { stdio: "ignore" });
      return true;
    } catch {
      return false;
    }
  })();

  it("loads in Python: numpy, torch and safe_open read its tensors and metadata", () => {
    // What Python's library read from the committed file when the fixtures were generated.
    expectReadBack(JSON.parse(readFileSync(join(fixtures, "adjoint.read-by-python.json"), "utf8")));
    // And now, from a freshly written file, where this machine has a python with safetensors.
    if (!hasSafetensors) {
      console.log(
        `safetensors-python: no ${python} with safetensors here; checked the fixture only`,
      );
      return;
    }
    const script = join(packageRoot(), "scripts", "safetensors-fixtures.py");
    expectReadBack(
      JSON.parse(execFileSync(python, [script, "--check", written], { encoding: "utf8" })),
    );
  });
});
