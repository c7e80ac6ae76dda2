/** Parameter files (versioned JSON header + binary payload in one file) and atomic writes. */
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { endianness } from "node:os";
import { basename, dirname, join } from "node:path";
import type { DType } from "../tensor/tensor.js";

/** One named parameter (or optimizer state) tensor. */
export interface ParamEntry {
  name: string;
  shape: number[];
  dtype: DType;
  data: Float32Array | Float64Array;
}

/** The contents of a parameter file. */
export interface ParamsRecord {
  format: "adjoint-params";
  version: 1;
  /** The model's description, e.g. `{ kind: "mlp", sizes: [784, 128, 10] }`. */
  model: Record<string, unknown>;
  params: ParamEntry[];
  /** Arbitrary JSON: epoch, PRNG state, options (NaN and Infinity become null, as in JSON). */
  extra?: Record<string, unknown>;
}

/** Per-tensor layout as stored in the header. */
interface TensorLayout {
  name: string;
  shape: number[];
  dtype: DType;
  /** Byte offset from the start of the payload; a multiple of 8. */
  offset: number;
  byteLength: number;
}

interface Header {
  format: string;
  version: number;
  model: Record<string, unknown>;
  extra?: Record<string, unknown>;
  tensors: TensorLayout[];
  payloadBytes: number;
  sha256: string;
}

/** The first 8 bytes of every parameter file. */
export const PARAMS_MAGIC = "ADJOINT1";
/** The format version this module writes and reads. */
export const PARAMS_VERSION = 1;
// magic (8) + u32 header length (4) + u32 reserved, zero (4).
const PREAMBLE_BYTES = 16;
const LITTLE_ENDIAN = endianness() === "LE";

/**
 * Writes `data` to `path` so that readers see either the old file or the whole new one: it goes
 * to `${path}.tmp-${pid}-${random}` in the same directory, is fsynced, then renamed over `path`.
 * On any failure (including an iterable of chunks that throws) the temp file is removed.
 * Example: `writeFileAtomic("ckpt.bin", bytes)`.
 */
export function writeFileAtomic(
  path: string,
  data: string | Uint8Array | Iterable<Uint8Array>,
): void {
  const dir = dirname(path);
  const tempPath = join(
    dir,
    `${basename(path)}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`,
  );
  let fd: number | undefined;
  try {
    fd = openSync(tempPath, "wx", 0o644);
    const chunks = typeof data === "string" || data instanceof Uint8Array ? [data] : data;
    for (const chunk of chunks) {
      const bytes = typeof chunk === "string" ? Buffer.from(chunk, "utf8") : chunk;
      let written = 0;
      while (written < bytes.length) {
        written += writeSync(fd, bytes, written, bytes.length - written);
      }
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tempPath, path);
  } catch (err) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // Already failing; the original error is the one to report.
      }
    }
    try {
      unlinkSync(tempPath);
    } catch {
      // The temp file may never have been created.
    }
    throw err;
  }
  // Persist the rename itself; some platforms cannot fsync a directory, which is not an error.
  try {
    const dirFd = openSync(dir, "r");
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  } catch {
    // Best effort only.
  }
}

/**
 * Saves parameters, the model description and `extra` to one file, atomically.
 * Layout: "ADJOINT1", u32 LE header length, u32 0, JSON header (tensor names, shapes, dtypes,
 * byte offsets, sha-256 of the payload), zero padding to 8 bytes, then the little-endian payload.
 * Example: `saveParams("mlp.adj", { format: "adjoint-params", version: 1, model, params })`.
 */
export function saveParams(path: string, record: ParamsRecord): void {
  const fail = (what: string): never => {
    throw new Error(`saveParams(${path}): ${what}`);
  };
  if (record.format !== "adjoint-params") {
    fail(`format must be "adjoint-params", got ${JSON.stringify(record.format)}`);
  }
  if (record.version !== PARAMS_VERSION) {
    fail(`version must be ${PARAMS_VERSION}, got ${JSON.stringify(record.version)}`);
  }
  if (typeof record.model !== "object" || record.model === null || Array.isArray(record.model)) {
    fail('model must be an object describing the model, e.g. { kind: "mlp" }');
  }
  const names = new Set<string>();
  const tensors: TensorLayout[] = [];
  let offset = 0;
  for (const p of record.params) {
    if (typeof p.name !== "string" || p.name === "") fail("a parameter has an empty name");
    if (names.has(p.name)) fail(`duplicate parameter name ${JSON.stringify(p.name)}`);
    names.add(p.name);
    checkEntry(p.name, p.shape, p.dtype, fail);
    const arrayDType =
      p.data instanceof Float32Array ? "float32" : p.data instanceof Float64Array ? "float64" : "";
    if (arrayDType !== p.dtype) {
      fail(
        `parameter ${p.name}: dtype ${p.dtype} but data is ${arrayDType || "not a float array"}`,
      );
    }
    const size = p.shape.reduce((a, b) => a * b, 1);
    if (p.data.length !== size) {
      fail(
        `parameter ${p.name}: shape [${p.shape}] needs ${size} values, data has ${p.data.length}`,
      );
    }
    tensors.push({
      name: p.name,
      shape: [...p.shape],
      dtype: p.dtype,
      offset,
      byteLength: p.data.byteLength,
    });
    offset = align8(offset + p.data.byteLength);
  }
  const payloadBytes = offset;
  const payload = new Uint8Array(payloadBytes);
  record.params.forEach((p, i) => payload.set(littleEndianBytes(p.data), tensors[i].offset));
  const header: Header = {
    format: record.format,
    version: record.version,
    model: record.model,
    ...(record.extra !== undefined ? { extra: record.extra } : {}),
    tensors,
    payloadBytes,
    sha256: sha256Hex(payload),
  };
  const headerBytes = Buffer.from(JSON.stringify(header), "utf8");
  const payloadStart = align8(PREAMBLE_BYTES + headerBytes.length);
  const preamble = new Uint8Array(PREAMBLE_BYTES);
  preamble.set(Buffer.from(PARAMS_MAGIC, "latin1"), 0);
  new DataView(preamble.buffer).setUint32(8, headerBytes.length, true);
  // Zero padding after the header puts the payload, and so every tensor, on an 8-byte boundary.
  const padding = new Uint8Array(payloadStart - PREAMBLE_BYTES - headerBytes.length);
  writeFileAtomic(path, [preamble, headerBytes, padding, payload]);
}

/**
 * Loads and validates a file written by {@link saveParams}: magic, format, version, sizes,
 * checksum and each tensor's shape. Errors name the file and what is wrong.
 * Example: `const { model, params, extra } = loadParams("mlp.adj")`.
 */
export function loadParams(path: string): ParamsRecord {
  const fail = (what: string): never => {
    throw new Error(`loadParams(${path}): ${what}`);
  };
  let file: Buffer;
  try {
    file = readFileSync(path);
  } catch (err) {
    return fail(`cannot read the file: ${(err as Error).message}`);
  }
  if (file.length < PREAMBLE_BYTES) {
    if (
      file.subarray(0, 8).toString("latin1") !== PARAMS_MAGIC.slice(0, Math.min(8, file.length))
    ) {
      fail(`not an adjoint parameter file (it does not start with "${PARAMS_MAGIC}")`);
    }
    fail(`truncated file: ${file.length} bytes, shorter than the ${PREAMBLE_BYTES}-byte preamble`);
  }
  const magic = file.subarray(0, 8).toString("latin1");
  if (magic !== PARAMS_MAGIC) {
    fail(
      `not an adjoint parameter file: starts with ${JSON.stringify(magic)}, expected "${PARAMS_MAGIC}"`,
    );
  }
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const headerLength = view.getUint32(8, true);
  if (PREAMBLE_BYTES + headerLength > file.length) {
    fail(
      `truncated file: the header needs ${headerLength} bytes but only ${file.length - PREAMBLE_BYTES} follow the preamble`,
    );
  }
  let header: Header;
  try {
    header = JSON.parse(
      file.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + headerLength).toString("utf8"),
    ) as Header;
  } catch (err) {
    return fail(`corrupt header, not valid JSON: ${(err as Error).message}`);
  }
  if (typeof header !== "object" || header === null) fail("corrupt header: not a JSON object");
  if (header.format !== "adjoint-params") {
    fail(`wrong format ${JSON.stringify(header.format)}, expected "adjoint-params"`);
  }
  if (header.version !== PARAMS_VERSION) {
    fail(
      `unsupported version ${JSON.stringify(header.version)}; this build reads version ${PARAMS_VERSION}`,
    );
  }
  if (typeof header.model !== "object" || header.model === null || Array.isArray(header.model)) {
    fail("corrupt header: model is not an object");
  }
  if (header.extra !== undefined && (typeof header.extra !== "object" || header.extra === null)) {
    fail("corrupt header: extra is not an object");
  }
  if (!Array.isArray(header.tensors)) fail("corrupt header: tensors is not an array");
  if (!Number.isSafeInteger(header.payloadBytes) || header.payloadBytes < 0) {
    fail(`corrupt header: payloadBytes is ${JSON.stringify(header.payloadBytes)}`);
  }
  if (typeof header.sha256 !== "string") fail("corrupt header: sha256 is missing");
  const payloadStart = align8(PREAMBLE_BYTES + headerLength);
  const available = file.length - payloadStart;
  if (available < header.payloadBytes) {
    fail(
      `truncated file: the payload should be ${header.payloadBytes} bytes, found ${Math.max(0, available)}`,
    );
  }
  if (available > header.payloadBytes) {
    fail(`${available - header.payloadBytes} unexpected bytes after the payload`);
  }
  const payload = file.subarray(payloadStart);
  const digest = sha256Hex(payload);
  if (digest !== header.sha256) {
    fail(
      `checksum mismatch: the payload's sha-256 is ${digest}, the header says ${header.sha256} (the file is corrupt)`,
    );
  }
  const names = new Set<string>();
  const params: ParamEntry[] = header.tensors.map((t) => {
    const label = `tensor ${JSON.stringify(t?.name)}`;
    if (typeof t !== "object" || t === null || typeof t.name !== "string" || t.name === "") {
      return fail("corrupt header: a tensor entry has no name");
    }
    if (names.has(t.name)) fail(`corrupt header: duplicate ${label}`);
    names.add(t.name);
    checkEntry(t.name, t.shape, t.dtype, fail);
    const bytesPer = t.dtype === "float32" ? 4 : 8;
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (t.byteLength !== size * bytesPer) {
      fail(
        `shape/length mismatch for ${label}: shape [${t.shape}] of ${t.dtype} needs ${size * bytesPer} bytes, the header says ${t.byteLength}`,
      );
    }
    if (!Number.isSafeInteger(t.offset) || t.offset < 0 || t.offset % 8 !== 0) {
      fail(`corrupt header: ${label} has offset ${t.offset}, not a multiple of 8`);
    }
    if (t.offset + t.byteLength > header.payloadBytes) {
      fail(
        `corrupt header: ${label} spans bytes ${t.offset}..${t.offset + t.byteLength} beyond the ${header.payloadBytes}-byte payload`,
      );
    }
    const bytes = payload.subarray(t.offset, t.offset + t.byteLength);
    return {
      name: t.name,
      shape: [...t.shape],
      dtype: t.dtype,
      data: fromLittleEndian(bytes, t.dtype),
    };
  });
  const record: ParamsRecord = {
    format: "adjoint-params",
    version: 1,
    model: header.model,
    params,
  };
  if (header.extra !== undefined) record.extra = header.extra;
  return record;
}

/**
 * The sha-256 (hex) of the parameters' bytes (little-endian), in the given order.
 * Example: `paramsHash([{ data: W.data }, { data: b.data }])`.
 */
export function paramsHash(params: readonly { data: Float32Array | Float64Array }[]): string {
  const hash = createHash("sha256");
  for (const p of params) hash.update(littleEndianBytes(p.data));
  return hash.digest("hex");
}

function checkEntry(
  name: string,
  shape: unknown,
  dtype: unknown,
  fail: (what: string) => never,
): void {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail(`tensor ${JSON.stringify(name)}: shape ${JSON.stringify(shape)} is not a list of sizes`);
  }
  if (dtype !== "float32" && dtype !== "float64") {
    fail(`tensor ${JSON.stringify(name)}: unsupported dtype ${JSON.stringify(dtype)}`);
  }
}

function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** The array's bytes in little-endian order (a view on little-endian hosts, a copy otherwise). */
function littleEndianBytes(data: Float32Array | Float64Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(data.byteLength);
  const view = new DataView(out.buffer);
  const bytesPer = data.BYTES_PER_ELEMENT;
  for (let i = 0; i < data.length; i++) {
    if (bytesPer === 4) view.setFloat32(i * 4, data[i], true);
    else view.setFloat64(i * 8, data[i], true);
  }
  return out;
}

/** A fresh, aligned typed array from little-endian bytes. */
function fromLittleEndian(bytes: Uint8Array, dtype: DType): Float32Array | Float64Array {
  const bytesPer = dtype === "float32" ? 4 : 8;
  const out =
    dtype === "float32"
      ? new Float32Array(bytes.length / bytesPer)
      : new Float64Array(bytes.length / bytesPer);
  if (LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < out.length; i++) {
    out[i] = bytesPer === 4 ? view.getFloat32(i * 4, true) : view.getFloat64(i * 8, true);
  }
  return out;
}
