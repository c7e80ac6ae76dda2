/** Parameter files: a versioned JSON header and a binary payload in one file (written atomically). */
import { createHash } from "node:crypto";
import { fromLittleEndian, littleEndianBytes } from "../interop/bytes.js";
import type { DType } from "../tensor/tensor.js";
import { decodeSafetensors, encodeSafetensors, looksLikeSafetensors } from "./safetensors.js";
import { writeFileAtomic, readRegularFile } from "./files.js";

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
  /** The file format version: {@link PARAMS_VERSION} (files of version 1 load as it too). */
  version: typeof PARAMS_VERSION;
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
  /** Version 1 only: the sha-256 of the payload (version 2 checks the whole file instead). */
  sha256?: string;
}

/** The first 8 bytes of every parameter file this build writes (version 2). */
export const PARAMS_MAGIC = "ADJOINT2";
/** The magic of version 1 files, which still load (their checksum covers the payload only). */
const PARAMS_MAGIC_V1 = "ADJOINT1";
/** The format version this module writes. */
export const PARAMS_VERSION = 2;
// magic (8) + u32 header length (4) + u32 reserved, zero (4).
const PREAMBLE_BYTES = 16;
/** Version 2 ends with the sha-256 of every byte before it: the whole file is covered. */
const TRAILER_BYTES = 32;
/** The largest header this reader accepts (a model description and the tensor list). */
const MAX_HEADER_BYTES = 64 * 2 ** 20;
const HEADER_KEYS = ["format", "version", "model", "extra", "tensors", "payloadBytes"];
const TENSOR_KEYS = ["name", "shape", "dtype", "offset", "byteLength"];

/**
 * Saves parameters, the model description and `extra` to one file, atomically.
 * Layout (version 2): "ADJOINT2", u32 LE header length, u32 0, JSON header (tensor names,
 * shapes, dtypes, byte offsets), zero padding to 8 bytes, the little-endian payload, and the
 * sha-256 of every byte before it, so that any change anywhere in the file is detected. A path
 * ending in `.safetensors` gets the safetensors format instead (see ./safetensors.ts), which
 * loadParams reads too.
 * Example: `saveParams("mlp.adj", { format: "adjoint-params", version: 2, model, params })`.
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
  if (/\.safetensors$/i.test(path)) {
    writeFileAtomic(path, encodeSafetensors(record));
    return;
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
  };
  const headerBytes = Buffer.from(JSON.stringify(header), "utf8");
  const payloadStart = align8(PREAMBLE_BYTES + headerBytes.length);
  const preamble = new Uint8Array(PREAMBLE_BYTES);
  preamble.set(Buffer.from(PARAMS_MAGIC, "latin1"), 0);
  new DataView(preamble.buffer).setUint32(8, headerBytes.length, true);
  // Zero padding after the header puts the payload, and so every tensor, on an 8-byte boundary.
  const padding = new Uint8Array(payloadStart - PREAMBLE_BYTES - headerBytes.length);
  const digest = createHash("sha256")
    .update(preamble)
    .update(headerBytes)
    .update(padding)
    .update(payload)
    .digest();
  writeFileAtomic(path, [preamble, headerBytes, padding, payload, digest]);
}

/**
 * Loads and validates a file written by {@link saveParams}: a regular file whose size matches
 * what its header declares, the checksum over the whole file (version 2), then every header
 * field for type and range (tensor offsets inside the payload, in order, non-overlapping and
 * covering it). Errors name the file and what is wrong.
 * Example: `const { model, params, extra } = loadParams("mlp.adj")`.
 */
export function loadParams(path: string): ParamsRecord {
  const fail = (what: string): never => {
    throw new Error(`loadParams(${path}): ${what}`);
  };
  return decodeParams(readRegularFile(path, fail), path);
}

/**
 * Decodes and validates the bytes of a parameter file (see {@link loadParams}, which reads the
 * file and calls this); errors read `loadParams(source): ...`.
 */
export function decodeParams(file: Buffer, source: string): ParamsRecord {
  const fail = (what: string): never => {
    throw new Error(`loadParams(${source}): ${what}`);
  };
  if (looksLikeSafetensors(file)) return decodeSafetensors(file, source);
  const head = file.subarray(0, 8).toString("latin1");
  const adjoint = [PARAMS_MAGIC, PARAMS_MAGIC_V1].some((m) => m.startsWith(head));
  if (!adjoint && file.length >= 8) {
    // Not adjoint's magic: the other format read here is safetensors; say why it is not that either.
    try {
      return decodeSafetensors(file, source);
    } catch (error) {
      const why = (error as Error).message.replace(/^loadParams\(.*?\): safetensors: /, "");
      fail(
        `neither an adjoint parameter file (it starts with ${JSON.stringify(head)}, not "${PARAMS_MAGIC}") nor a safetensors file (${why})`,
      );
    }
  }
  if (file.length < PREAMBLE_BYTES) {
    const magicPrefix = file.subarray(0, 8).toString("latin1");
    if (
      magicPrefix !== PARAMS_MAGIC.slice(0, file.length) &&
      magicPrefix !== PARAMS_MAGIC_V1.slice(0, file.length)
    ) {
      fail(`not an adjoint parameter file (it does not start with "${PARAMS_MAGIC}")`);
    }
    fail(`truncated file: ${file.length} bytes, shorter than the ${PREAMBLE_BYTES}-byte preamble`);
  }
  const magic = file.subarray(0, 8).toString("latin1");
  if (magic !== PARAMS_MAGIC && magic !== PARAMS_MAGIC_V1) {
    fail(
      `not an adjoint parameter file: starts with ${JSON.stringify(magic)}, expected "${PARAMS_MAGIC}"`,
    );
  }
  const legacy = magic === PARAMS_MAGIC_V1;
  const trailer = legacy ? 0 : TRAILER_BYTES;
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const headerLength = view.getUint32(8, true);
  if (view.getUint32(12, true) !== 0) fail("corrupt preamble: the reserved word is not zero");
  if (headerLength > MAX_HEADER_BYTES) {
    fail(`corrupt preamble: a header of ${headerLength} bytes (at most ${MAX_HEADER_BYTES})`);
  }
  if (PREAMBLE_BYTES + headerLength + trailer > file.length) {
    fail(
      `truncated file: the header needs ${headerLength} bytes but only ${Math.max(0, file.length - PREAMBLE_BYTES - trailer)} follow the preamble`,
    );
  }
  if (!legacy) {
    const body = file.subarray(0, file.length - TRAILER_BYTES);
    const stored = file.subarray(file.length - TRAILER_BYTES).toString("hex");
    const digest = sha256Hex(body);
    if (digest !== stored) {
      // Say "truncated" when the sizes already disagree: the likelier story for a short file.
      const declared = declaredPayloadBytes(file, headerLength);
      const payloadStart = align8(PREAMBLE_BYTES + headerLength);
      if (declared !== undefined && payloadStart + declared + TRAILER_BYTES !== file.length) {
        const found = file.length - payloadStart - TRAILER_BYTES;
        fail(
          found < declared
            ? `truncated file: the payload should be ${declared} bytes, found ${Math.max(0, found)}`
            : `${found - declared} unexpected bytes after the payload`,
        );
      }
      fail(
        `checksum mismatch: the file's sha-256 is ${digest}, its last 32 bytes say ${stored} (the file is corrupt)`,
      );
    }
  }
  let header: Header;
  try {
    header = JSON.parse(
      file.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + headerLength).toString("utf8"),
    ) as Header;
  } catch (err) {
    return fail(`corrupt header, not valid JSON: ${(err as Error).message}`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail("corrupt header: not a JSON object");
  }
  const keys = legacy ? [...HEADER_KEYS, "sha256"] : HEADER_KEYS;
  for (const key of Object.keys(header)) {
    if (!keys.includes(key)) fail(`corrupt header: unknown field ${JSON.stringify(key)}`);
  }
  if (header.format !== "adjoint-params") {
    fail(`wrong format ${JSON.stringify(header.format)}, expected "adjoint-params"`);
  }
  if (header.version !== (legacy ? 1 : PARAMS_VERSION)) {
    fail(
      `unsupported version ${JSON.stringify(header.version)} in a "${magic}" file; this build reads versions 1 and ${PARAMS_VERSION}`,
    );
  }
  if (typeof header.model !== "object" || header.model === null || Array.isArray(header.model)) {
    fail("corrupt header: model is not an object");
  }
  if (
    header.extra !== undefined &&
    (typeof header.extra !== "object" || header.extra === null || Array.isArray(header.extra))
  ) {
    fail("corrupt header: extra is not an object");
  }
  if (!Array.isArray(header.tensors)) fail("corrupt header: tensors is not an array");
  if (!Number.isSafeInteger(header.payloadBytes) || header.payloadBytes < 0) {
    fail(`corrupt header: payloadBytes is ${JSON.stringify(header.payloadBytes)}`);
  }
  const payloadStart = align8(PREAMBLE_BYTES + headerLength);
  for (let i = PREAMBLE_BYTES + headerLength; i < payloadStart; i++) {
    if (file[i] !== 0) fail("corrupt file: the padding after the header is not zero");
  }
  const available = file.length - payloadStart - trailer;
  if (available < header.payloadBytes) {
    fail(
      `truncated file: the payload should be ${header.payloadBytes} bytes, found ${Math.max(0, available)}`,
    );
  }
  if (available > header.payloadBytes) {
    fail(`${available - header.payloadBytes} unexpected bytes after the payload`);
  }
  const payload = file.subarray(payloadStart, payloadStart + header.payloadBytes);
  if (legacy) {
    if (typeof header.sha256 !== "string") fail("corrupt header: sha256 is missing");
    const digest = sha256Hex(payload);
    if (digest !== header.sha256) {
      fail(
        `checksum mismatch: the payload's sha-256 is ${digest}, the header says ${header.sha256} (the file is corrupt)`,
      );
    }
  }
  const names = new Set<string>();
  // Tensors lie in order, each at the first 8-byte boundary after the previous one, and the
  // last one ends the payload: offsets in range, in order, non-overlapping and covering it.
  let expectedOffset = 0;
  const params: ParamEntry[] = header.tensors.map((t, index) => {
    if (typeof t !== "object" || t === null || typeof t.name !== "string" || t.name === "") {
      return fail(`corrupt header: tensor entry ${index} has no name`);
    }
    const label = `tensor ${JSON.stringify(t.name)}`;
    for (const key of Object.keys(t)) {
      if (!TENSOR_KEYS.includes(key)) {
        fail(`corrupt header: ${label} has an unknown field ${JSON.stringify(key)}`);
      }
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
    if (t.offset !== expectedOffset) {
      fail(
        `corrupt header: ${label} starts at byte ${t.offset} of the payload, expected ${expectedOffset} (tensors lie in order, without gaps or overlaps)`,
      );
    }
    expectedOffset = align8(t.offset + t.byteLength);
    const bytes = payload.subarray(t.offset, t.offset + t.byteLength);
    return {
      name: t.name,
      shape: [...t.shape],
      dtype: t.dtype,
      data: fromLittleEndian(bytes, t.dtype),
    };
  });
  if (expectedOffset !== header.payloadBytes) {
    fail(
      `corrupt header: the tensors end at byte ${expectedOffset}, the payload has ${header.payloadBytes}`,
    );
  }
  const record: ParamsRecord = {
    format: "adjoint-params",
    version: PARAMS_VERSION,
    model: header.model,
    params,
  };
  if (header.extra !== undefined) record.extra = header.extra;
  return record;
}

/** payloadBytes as a (possibly corrupt) header declares it, or undefined when unreadable. */
function declaredPayloadBytes(file: Buffer, headerLength: number): number | undefined {
  try {
    const header = JSON.parse(
      file.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + headerLength).toString("utf8"),
    ) as Partial<Header>;
    return Number.isSafeInteger(header.payloadBytes) ? header.payloadBytes : undefined;
  } catch {
    return undefined;
  }
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
