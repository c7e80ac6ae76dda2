import { createHash } from "node:crypto";
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  loadParams,
  paramsHash,
  PARAMS_MAGIC,
  PARAMS_VERSION,
  decodeParams,
  saveParams,
  type ParamsRecord,
} from "../../src/train/serialize.js";
import { writeFileAtomic } from "../../src/train/files.js";
import { Rng } from "../../src/train/random.js";
import { execFileSync, spawnSync } from "node:child_process";

const tmp = mkdtempSync(join(tmpdir(), "adjoint-serialize-"));
afterAll(() => {
  chmodSync(tmp, 0o755);
  rmSync(tmp, { recursive: true, force: true });
});
let fileCounter = 0;
const freshPath = (name = "params.adj"): string => join(tmp, `${fileCounter++}-${name}`);

function sampleRecord(): ParamsRecord {
  const rng = new Rng(1);
  const W1 = Float32Array.from({ length: 6 * 5 }, () => rng.normal());
  // Values that a lossy format would mangle: -0, subnormals, extremes, NaN.
  W1.set([-0, 1e-45, 3.4028234663852886e38, Number.NaN, -1.1754943508222875e-38]);
  const b1 = Float32Array.from({ length: 5 }, () => rng.normal()); // 20 bytes: forces padding
  const W2 = Float64Array.from({ length: 5 * 3 }, () => rng.normal());
  W2.set([Math.PI, -0, 5e-324, Number.MAX_VALUE, 0.1 + 0.2]);
  const scalar = Float64Array.of(42.5);
  return {
    format: "adjoint-params",
    version: PARAMS_VERSION,
    model: { kind: "mlp", sizes: [6, 5, 3] },
    params: [
      { name: "W1", shape: [6, 5], dtype: "float32", data: W1 },
      { name: "b1", shape: [5], dtype: "float32", data: b1 },
      { name: "W2", shape: [5, 3], dtype: "float64", data: W2 },
      { name: "adam.t", shape: [], dtype: "float64", data: scalar },
      { name: "empty", shape: [0, 3], dtype: "float32", data: new Float32Array(0) },
    ],
    extra: { epoch: 7, rng: new Rng(3).getState(), note: "ünïcode ✓" },
  };
}

function bytesOf(data: Float32Array | Float64Array): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

describe("saveParams / loadParams", () => {
  it("round-trips float32 and float64 bit-exactly with model and extra", () => {
    const path = freshPath();
    const record = sampleRecord();
    saveParams(path, record);
    const loaded = loadParams(path);
    expect(loaded.format).toBe("adjoint-params");
    expect(loaded.version).toBe(2);
    expect(loaded.model).toEqual(record.model);
    expect(loaded.extra).toEqual(record.extra);
    expect(loaded.params.map((p) => p.name)).toEqual(record.params.map((p) => p.name));
    loaded.params.forEach((p, i) => {
      const original = record.params[i];
      expect(p.shape).toEqual(original.shape);
      expect(p.dtype).toBe(original.dtype);
      expect(p.data.constructor).toBe(original.data.constructor);
      expect(bytesOf(p.data).equals(bytesOf(original.data))).toBe(true);
    });
    expect(paramsHash(loaded.params)).toBe(paramsHash(record.params));
    expect(Object.is(loaded.params[2].data[1], -0)).toBe(true);
  });

  it("writes the documented layout: magic, header length, aligned payload, whole-file sha-256", () => {
    const path = freshPath();
    const record = sampleRecord();
    saveParams(path, record);
    const file = readFileSync(path);
    expect(file.subarray(0, 8).toString("latin1")).toBe(PARAMS_MAGIC);
    const headerLength = file.readUInt32LE(8);
    const header = JSON.parse(file.subarray(16, 16 + headerLength).toString("utf8"));
    const payloadStart = Math.ceil((16 + headerLength) / 8) * 8;
    const payload = file.subarray(payloadStart, file.length - 32);
    expect(payload.length).toBe(header.payloadBytes);
    expect(header.sha256).toBeUndefined();
    const trailer = file.subarray(file.length - 32).toString("hex");
    expect(trailer).toBe(
      createHash("sha256")
        .update(file.subarray(0, file.length - 32))
        .digest("hex"),
    );
    for (const t of header.tensors) expect(t.offset % 8).toBe(0);
    const b1 = header.tensors[1];
    expect(b1.byteLength).toBe(20);
    expect(header.tensors[2].offset).toBe(b1.offset + 24);
    const w2 = header.tensors[2];
    expect(payload.readDoubleLE(w2.offset)).toBe(Math.PI);
  });

  it("does not keep a reference to the caller's arrays", () => {
    const path = freshPath();
    const record = sampleRecord();
    saveParams(path, record);
    const loaded = loadParams(path);
    loaded.params[0].data[5] = 12345;
    expect(record.params[0].data[5]).not.toBe(12345);
  });

  describe("rejects corrupt files with a message naming the file and the problem", () => {
    const original = freshPath("good.adj");
    saveParams(original, sampleRecord());
    const good = readFileSync(original);
    const headerLength = good.readUInt32LE(8);
    const header = JSON.parse(good.subarray(16, 16 + headerLength).toString("utf8"));
    const payloadStart = Math.ceil((16 + headerLength) / 8) * 8;

    /** Writes a file whose header JSON is replaced (payload kept, re-aligned). */
    function withHeader(edit: (h: typeof header) => void): string {
      const h = JSON.parse(JSON.stringify(header));
      edit(h);
      const json = Buffer.from(JSON.stringify(h), "utf8");
      const start = Math.ceil((16 + json.length) / 8) * 8;
      const body = Buffer.alloc(start + (good.length - 32 - payloadStart));
      good.copy(body, 0, 0, 16);
      body.writeUInt32LE(json.length, 8);
      json.copy(body, 16);
      good.copy(body, start, payloadStart, good.length - 32);
      // A consistent checksum, as a hand edit that recomputed it would leave.
      const path = freshPath("edited.adj");
      writeFileSync(path, withTrailer(body));
      return path;
    }

    function withTrailer(body: Buffer): Buffer {
      return Buffer.concat([body, createHash("sha256").update(body).digest()]);
    }

    function corrupt(bytes: Uint8Array): string {
      const path = freshPath("bad.adj");
      writeFileSync(path, bytes);
      return path;
    }

    it("wrong magic", () => {
      const bytes = Buffer.from(good);
      bytes.write("NOTADJNT", 0, "latin1");
      const path = corrupt(bytes);
      expect(() => loadParams(path)).toThrow(
        new RegExp(
          `loadParams\\(${path}\\): neither an adjoint parameter file \\(it starts with "NOTADJNT", not "ADJOINT2"\\)`,
        ),
      );
      const json = corrupt(Buffer.from('{"format":"adjoint-params"}'));
      expect(() => loadParams(json)).toThrow(/neither an adjoint parameter file/);
    });

    it("wrong format and unsupported version", () => {
      const wrongFormat = withHeader((h) => (h.format = "numpy"));
      expect(() => loadParams(wrongFormat)).toThrow(
        /wrong format "numpy", expected "adjoint-params"/,
      );
      const v3 = withHeader((h) => (h.version = 3));
      expect(() => loadParams(v3)).toThrow(
        new RegExp(
          `loadParams\\(${v3}\\): unsupported version 3 in a "ADJOINT2" file; this build reads versions 1 and 2`,
        ),
      );
    });

    it("truncated at every region", () => {
      for (const length of [0, 5, 12, 16 + 10, payloadStart + 3, good.length - 33]) {
        const path = corrupt(good.subarray(0, length));
        expect(() => loadParams(path), `length ${length}`).toThrow(/truncated file/);
      }
      const path = corrupt(good.subarray(0, good.length - 1));
      expect(() => loadParams(path)).toThrow(
        new RegExp(
          `the payload should be ${header.payloadBytes} bytes, found ${header.payloadBytes - 1}`,
        ),
      );
      // A file cut anywhere is refused, whatever survived of it.
      for (let length = 0; length < good.length; length += 7) {
        const cut = corrupt(good.subarray(0, length));
        expect(() => loadParams(cut), `length ${length}`).toThrow(/loadParams\(/);
      }
    });

    it("trailing bytes", () => {
      const path = corrupt(
        withTrailer(Buffer.concat([good.subarray(0, good.length - 32), Buffer.from([1, 2, 3])])),
      );
      expect(() => loadParams(path)).toThrow(/3 unexpected bytes after the payload/);
    });

    it("checksum mismatch (one flipped payload bit)", () => {
      const bytes = Buffer.from(good);
      bytes[payloadStart + 9] ^= 0x10;
      const path = corrupt(bytes);
      expect(() => loadParams(path)).toThrow(
        new RegExp(`loadParams\\(${path}\\): checksum mismatch`),
      );
    });

    it("header fields outside their range, with a recomputed checksum", () => {
      const overlap = withHeader((h) => (h.tensors[1].offset = h.tensors[0].offset));
      expect(() => loadParams(overlap)).toThrow(
        /tensor "b1" starts at byte 0 of the payload, expected 120 \(tensors lie in order/,
      );
      const gap = withHeader((h) => {
        h.tensors[4].offset += 8;
        h.payloadBytes += 8;
      });
      expect(() => loadParams(gap)).toThrow(
        /payload should be|starts at byte \d+ of the payload, expected/,
      );
      const unknown = withHeader((h) => (h.epoch = 3));
      expect(() => loadParams(unknown)).toThrow(/corrupt header: unknown field "epoch"/);
      const tensorKey = withHeader((h) => (h.tensors[0].stride = 1));
      expect(() => loadParams(tensorKey)).toThrow(/tensor "W1" has an unknown field "stride"/);
      const extra = withHeader((h) => (h.extra = [1]));
      expect(() => loadParams(extra)).toThrow(/extra is not an object/);
    });

    it("corrupt header JSON", () => {
      const bytes = Buffer.from(good);
      bytes[16] = "[".charCodeAt(0) + 100;
      const path = corrupt(withTrailer(bytes.subarray(0, bytes.length - 32)));
      expect(() => loadParams(path)).toThrow(/corrupt header, not valid JSON/);
    });

    it("shape/length mismatch", () => {
      const path = withHeader((h) => (h.tensors[0].shape = [6, 6]));
      expect(() => loadParams(path)).toThrow(
        /shape\/length mismatch for tensor "W1": shape \[6,6\] of float32 needs 144 bytes, the header says 120/,
      );
      const dtype = withHeader((h) => (h.tensors[2].dtype = "int8"));
      expect(() => loadParams(dtype)).toThrow(/tensor "W2": unsupported dtype "int8"/);
      const outside = withHeader((h) => (h.tensors[0].offset = header.payloadBytes));
      expect(() => loadParams(outside)).toThrow(/beyond the \d+-byte payload/);
    });

    it("a missing file", () => {
      const path = join(tmp, "does-not-exist.adj");
      expect(() => loadParams(path)).toThrow(/does-not-exist\.adj\): cannot read the file/);
    });

    it("anything but a regular file is refused before it is read (/dev/zero, a FIFO, a directory)", () => {
      expect(() => loadParams("/dev/zero")).toThrow(
        "loadParams(/dev/zero): not a regular file (a character device): parameter files are ordinary files",
      );
      expect(() => loadParams(tmp)).toThrow(/not a regular file \(a directory\)/);
      const fifo = join(tmp, "params.fifo");
      execFileSync("mkfifo", [fifo]);
      expect(() => loadParams(fifo)).toThrow(/not a regular file \(a FIFO\)/);
    });

    it("a version 1 file (payload-only checksum) still loads", () => {
      const record = sampleRecord();
      const v1 = freshPath("v1.adj");
      writeFileSync(v1, versionOneFile(record));
      const loaded = loadParams(v1);
      expect(loaded.version).toBe(2);
      expect(paramsHash(loaded.params)).toBe(paramsHash(record.params));
      expect(loaded.extra).toEqual(record.extra);
    });
  });

  it("validates records before writing anything", () => {
    const path = freshPath();
    const record = sampleRecord();
    record.params[0].shape = [5, 5];
    expect(() => saveParams(path, record)).toThrow(
      /saveParams\(.*\): parameter W1: shape \[5,5\] needs 25 values, data has 30/,
    );
    const r2 = sampleRecord();
    r2.params[1].dtype = "float64";
    expect(() => saveParams(path, r2)).toThrow(/parameter b1: dtype float64 but data is float32/);
    const r3 = sampleRecord();
    r3.params[1].name = "W1";
    expect(() => saveParams(path, r3)).toThrow(/duplicate parameter name "W1"/);
    const r4 = { ...sampleRecord(), version: 1 } as unknown as ParamsRecord;
    expect(() => saveParams(path, r4)).toThrow(/version must be 2, got 1/);
    expect(() => readFileSync(path)).toThrow(/ENOENT/);
  });
});

describe("paramsHash", () => {
  it("is the sha-256 of the concatenated little-endian bytes in order", () => {
    const a = Float32Array.of(1, 2.5, -3);
    const b = Float64Array.of(Math.E);
    const expected = createHash("sha256")
      .update(Buffer.concat([bytesOf(a), bytesOf(b)]))
      .digest("hex");
    expect(paramsHash([{ data: a }, { data: b }])).toBe(expected);
    expect(paramsHash([{ data: b }, { data: a }])).not.toBe(expected);
    // Independent check of one known digest: sha-256 of no bytes.
    expect(paramsHash([])).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    // A view on part of a buffer hashes only its own bytes.
    const big = Float32Array.of(9, 1, 2.5, -3, 9);
    expect(paramsHash([{ data: big.subarray(1, 4) }, { data: b }])).toBe(expected);
  });
});

describe("writeFileAtomic", () => {
  const tempFilesIn = (dir: string): string[] =>
    readdirSync(dir).filter((f) => f.includes(".tmp-"));

  it("writes strings, bytes and chunk sequences, replacing the old content", () => {
    const dir = join(tmp, "atomic-ok");
    mkdirSync(dir);
    const path = join(dir, "file.txt");
    writeFileAtomic(path, "first ✓");
    expect(readFileSync(path, "utf8")).toBe("first ✓");
    writeFileAtomic(path, new Uint8Array([1, 2, 3]));
    expect([...readFileSync(path)]).toEqual([1, 2, 3]);
    writeFileAtomic(path, [new Uint8Array([4]), new Uint8Array([]), new Uint8Array([5, 6])]);
    expect([...readFileSync(path)]).toEqual([4, 5, 6]);
    expect(tempFilesIn(dir)).toEqual([]);
  });

  it("keeps the old file and removes the temp file when producing the data throws midway", () => {
    const dir = join(tmp, "atomic-throw");
    mkdirSync(dir);
    const path = join(dir, "ckpt.adj");
    writeFileSync(path, "old checkpoint");
    function* chunks(): Generator<Uint8Array> {
      yield Buffer.from("half of a new checkp");
      throw new Error("serializer crashed");
    }
    expect(() => writeFileAtomic(path, chunks())).toThrow(/serializer crashed/);
    expect(readFileSync(path, "utf8")).toBe("old checkpoint");
    expect(tempFilesIn(dir)).toEqual([]);
  });

  it("keeps the old target and removes the temp file when the final rename fails", () => {
    const dir = join(tmp, "atomic-rename");
    mkdirSync(dir);
    // A non-empty directory at the target path: the temp file is written, the rename fails.
    const path = join(dir, "target");
    mkdirSync(path);
    writeFileSync(join(path, "inside.txt"), "keep me");
    expect(() => writeFileAtomic(path, "new content")).toThrow(
      /it is a directory, not a regular file|EISDIR|ENOTEMPTY|EEXIST|EPERM/,
    );
    expect(readFileSync(join(path, "inside.txt"), "utf8")).toBe("keep me");
    expect(tempFilesIn(dir)).toEqual([]);
  });

  it("fails cleanly when the directory is missing", () => {
    const path = join(tmp, "no-such-dir", "file.txt");
    expect(() => writeFileAtomic(path, "x")).toThrow(/ENOENT/);
  });

  // A tiny tmpfs is a real full disk, remounted read-only a real read-only file system; mounting
  // needs root (the CI and development machines run as root), elsewhere these cannot be made.
  const mountPoint = join(tmp, "small-fs");
  mkdirSync(mountPoint);
  const mounted =
    spawnSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mountPoint]).status === 0;
  afterAll(() => {
    if (mounted) spawnSync("umount", [mountPoint]);
  });

  it.runIf(mounted)("a full disk (ENOSPC): the old file stays, the error names the path", () => {
    const path = join(mountPoint, "ckpt.adj");
    writeFileAtomic(path, "old checkpoint");
    const big = new Uint8Array(200 * 1024).fill(7);
    expect(() => writeFileAtomic(path, big)).toThrow(
      `cannot write ${path}: no space left on the device (ENOSPC); the previous file, if any, is unchanged`,
    );
    expect(readFileSync(path, "utf8")).toBe("old checkpoint");
    expect(tempFilesIn(mountPoint)).toEqual([]);
  });

  it.runIf(mounted)(
    "a read-only file system (EROFS): the old file stays, the error names the path",
    () => {
      const path = join(mountPoint, "ro.adj");
      writeFileAtomic(path, "old");
      expect(spawnSync("mount", ["-o", "remount,ro", mountPoint]).status).toBe(0);
      try {
        expect(() => writeFileAtomic(path, "new")).toThrow(
          `cannot write ${path}: the file system is read-only (EROFS); the previous file, if any, is unchanged`,
        );
        expect(readFileSync(path, "utf8")).toBe("old");
      } finally {
        spawnSync("mount", ["-o", "remount,rw", mountPoint]);
      }
    },
  );

  it("saveParams leaves the previous file intact when validation fails", () => {
    const path = freshPath();
    saveParams(path, sampleRecord());
    const before = readFileSync(path);
    const bad = sampleRecord();
    bad.params[0].shape = [1];
    expect(() => saveParams(path, bad)).toThrow(/shape \[1\]/);
    expect(readFileSync(path).equals(before)).toBe(true);
  });
});

/** The version 1 layout, written independently of saveParams: "ADJOINT1", payload-only sha-256. */
function versionOneFile(record: ParamsRecord): Buffer {
  let offset = 0;
  const tensors = record.params.map((p) => {
    const entry = {
      name: p.name,
      shape: p.shape,
      dtype: p.dtype,
      offset,
      byteLength: p.data.byteLength,
    };
    offset = Math.ceil((offset + p.data.byteLength) / 8) * 8;
    return entry;
  });
  const payload = Buffer.alloc(offset);
  record.params.forEach((p, i) => bytesOf(p.data).copy(payload, tensors[i].offset));
  const header = Buffer.from(
    JSON.stringify({
      format: "adjoint-params",
      version: 1,
      model: record.model,
      extra: record.extra,
      tensors,
      payloadBytes: offset,
      sha256: createHash("sha256").update(payload).digest("hex"),
    }),
  );
  const start = Math.ceil((16 + header.length) / 8) * 8;
  const out = Buffer.alloc(start + payload.length);
  out.write("ADJOINT1", 0, "latin1");
  out.writeUInt32LE(header.length, 8);
  header.copy(out, 16);
  payload.copy(out, start);
  return out;
}

describe("every single-bit flip of a small parameter file is refused with a one-line error", () => {
  it("flips each bit of the whole file", () => {
    const path = freshPath("small.adj");
    saveParams(path, {
      format: "adjoint-params",
      version: PARAMS_VERSION,
      model: { kind: "logreg", sizes: [2, 3] },
      params: [
        { name: "W", shape: [2, 3], dtype: "float32", data: Float32Array.of(1, 2, 3, 4, 5, 6) },
        { name: "b", shape: [3], dtype: "float32", data: Float32Array.of(0.5, -0.5, 0) },
      ],
      extra: { kind: "adjoint-checkpoint", position: { epoch: 1, batch: 0, t: 4 } },
    });
    const good = readFileSync(path);
    const flipped = freshPath("flipped.adj");
    for (let bit = 0; bit < good.length * 8; bit++) {
      const bytes = Buffer.from(good);
      bytes[bit >> 3] ^= 1 << (bit & 7);
      let message = "";
      try {
        // Through the file for the first bytes (preamble and header), in memory after that.
        if (bit < 2048) {
          writeFileSync(flipped, bytes);
          loadParams(flipped);
        } else decodeParams(bytes, flipped);
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message, `bit ${bit} accepted`).toMatch(/^loadParams\(/);
      expect(message.includes("\n"), `bit ${bit}: ${message}`).toBe(false);
    }
  });
});
