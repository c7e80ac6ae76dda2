/**
 * Parameter files in the safetensors format (Hugging Face): an 8-byte little-endian header length,
 * a JSON header mapping each tensor's name to `{ dtype, shape, data_offsets }` plus
 * `__metadata__` (string values only), then the raw little-endian data. PyTorch, JAX, candle and
 * Hugging Face read it, and loading it executes nothing. adjoint's metadata carries the model's
 * description and the sha-256 of the data; files from elsewhere (no such metadata) load too.
 */
import { createHash } from "node:crypto";
import { fromLittleEndian, littleEndianBytes } from "../interop/bytes.js";
import type { DType } from "../tensor/tensor.js";
import type { ParamEntry, ParamsRecord } from "./serialize.js";

/** The safetensors dtype names adjoint reads and writes. */
const DTYPES: Record<string, DType> = { F32: "float32", F64: "float64" };
const NAMES: Record<DType, string> = { float32: "F32", float64: "F64" };

/** The spec's bound on the header (100 MB): a larger length field is a corrupt or hostile file. */
export const MAX_SAFETENSORS_HEADER = 100_000_000;

/** One header entry as the integrity hash sees it. */
interface Layout {
  name: string;
  dtype: string;
  shape: readonly number[];
  begin: number;
  end: number;
}

/**
 * adjoint's integrity hash: the sha-256 of the header's meaning (every metadata entry but the
 * hash itself, keys sorted; every tensor's name, dtype, shape and offsets in data order) followed
 * by the data, so a change to the model description, a shape or a byte of data is detected.
 */
function integrity(metadata: Record<string, string>, layouts: Layout[], data: Uint8Array): string {
  const meta = Object.keys(metadata)
    .filter((k) => k !== "sha256")
    .sort()
    .map((k) => [k, metadata[k]]);
  const tensors = [...layouts]
    .sort((a, b) => a.begin - b.begin)
    .map((t) => [t.name, t.dtype, t.shape, t.begin, t.end]);
  return createHash("sha256").update(JSON.stringify({ meta, tensors })).update(data).digest("hex");
}

/** True when `file` starts like a safetensors file (a length, then the header's `{`). */
export function looksLikeSafetensors(file: Uint8Array): boolean {
  return file.length >= 9 && file[8] === 0x7b && file[6] === 0 && file[7] === 0;
}

/**
 * The safetensors bytes of a parameter record (validated by saveParams before this runs): the
 * tensors in the record's order, the header padded with spaces to 8 bytes, as Python's writes.
 */
export function encodeSafetensors(record: ParamsRecord): Uint8Array[] {
  const chunks = record.params.map((p) => littleEndianBytes(p.data));
  const metadata: Record<string, string> = {
    format: record.format,
    version: String(record.version),
    model: JSON.stringify(record.model),
  };
  if (record.extra !== undefined) metadata.extra = JSON.stringify(record.extra);
  const layouts: Layout[] = [];
  let offset = 0;
  record.params.forEach((p, i) => {
    const end = offset + chunks[i].length;
    layouts.push({ name: p.name, dtype: NAMES[p.dtype], shape: [...p.shape], begin: offset, end });
    offset = end;
  });
  const data = new Uint8Array(offset);
  chunks.forEach((c, i) => data.set(c, layouts[i].begin));
  metadata.sha256 = integrity(metadata, layouts, data);
  const header: Record<string, unknown> = { __metadata__: metadata };
  for (const t of layouts) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [t.begin, t.end] };
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, "utf8");
  const length = new Uint8Array(8);
  new DataView(length.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  return [length, headerBytes, data];
}

/**
 * Parses and validates a safetensors file as strictly as the adjoint format: the header length
 * bounded and within the file, the header a JSON object of entries with exactly dtype, shape and
 * data_offsets, offsets in the data section, in order, non-overlapping and covering it exactly,
 * byte lengths equal to the shapes', metadata values strings, and adjoint's sha-256 when present.
 * Nothing is allocated from a size the file has not proven. Errors read `loadParams(source): ...`.
 */
export function decodeSafetensors(file: Uint8Array, source: string): ParamsRecord {
  const fail = (what: string): never => {
    throw new Error(`loadParams(${source}): safetensors: ${what}`);
  };
  if (file.length < 8) fail(`truncated file: ${file.length} bytes, shorter than the length field`);
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const headerLength = view.getBigUint64(0, true);
  if (headerLength > BigInt(Math.min(MAX_SAFETENSORS_HEADER, file.length - 8))) {
    fail(
      `a header of ${headerLength} bytes does not fit (the file has ${file.length - 8} bytes after the length; at most ${MAX_SAFETENSORS_HEADER})`,
    );
  }
  const dataStart = 8 + Number(headerLength);
  let header: unknown;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(file.subarray(8, dataStart));
    if (!text.startsWith("{")) fail("the header does not start with {");
    header = JSON.parse(text);
  } catch (error) {
    if (error instanceof Error && error.message.startsWith("loadParams(")) throw error;
    fail(`the header is not UTF-8 JSON (${(error as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail("the header is not a JSON object");
  }
  // JSON.parse keeps the last of two equal keys: a tensor named twice would lose one silently.
  const twice = repeatedTopLevelKey(file.subarray(8, dataStart));
  if (twice !== undefined) fail(`the header names ${JSON.stringify(twice)} twice`);
  const dataBytes = file.length - dataStart;
  const entries: (Layout & { type: DType; shape: number[] })[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        fail("__metadata__ is not an object");
      }
      for (const [key, v] of Object.entries(value as object)) {
        if (typeof v !== "string") fail(`__metadata__.${key} is not a string`);
      }
      metadata = value as Record<string, string>;
      continue;
    }
    const at = `tensor ${JSON.stringify(name)}`;
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      fail(`${at} is not an object`);
    }
    const entry = value as Record<string, unknown>;
    const keys = Object.keys(entry).sort().join(",");
    if (keys !== "data_offsets,dtype,shape") {
      fail(`${at} has fields ${keys}, expected data_offsets, dtype and shape`);
    }
    const dtype = DTYPES[entry.dtype as string];
    if (!dtype) {
      fail(
        `${at}: dtype ${JSON.stringify(entry.dtype)} is not supported (adjoint reads F32 and F64)`,
      );
    }
    const shape = entry.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`${at}: shape ${JSON.stringify(shape)} is not a list of sizes`);
    }
    const offsets = entry.data_offsets;
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1] ||
      offsets[1] > dataBytes
    ) {
      fail(
        `${at}: data_offsets ${JSON.stringify(offsets)} are not [begin, end] inside the ${dataBytes} data bytes`,
      );
    }
    const [begin, end] = offsets as number[];
    const size = (shape as number[]).reduce((a, b) => a * b, 1);
    const width = dtype === "float32" ? 4 : 8;
    if (end - begin !== size * width) {
      fail(
        `${at}: shape ${JSON.stringify(shape)} of ${entry.dtype} needs ${size * width} bytes, data_offsets give ${end - begin}`,
      );
    }
    entries.push({
      name,
      dtype: entry.dtype as string,
      type: dtype,
      shape: shape as number[],
      begin,
      end,
    });
  }
  const ordered = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  for (const e of ordered) {
    if (e.begin !== covered) {
      fail(
        e.begin < covered
          ? `tensor ${JSON.stringify(e.name)} overlaps the one before it (data_offsets begin at ${e.begin}, expected ${covered})`
          : `a gap of ${e.begin - covered} bytes before tensor ${JSON.stringify(e.name)}`,
      );
    }
    covered = e.end;
  }
  if (covered !== dataBytes) {
    fail(`the tensors cover ${covered} of the ${dataBytes} data bytes (trailing bytes)`);
  }
  const data = file.subarray(dataStart);
  const ours = metadata.format === "adjoint-params";
  if (ours && metadata.sha256 === undefined)
    fail("__metadata__.sha256 is missing (adjoint writes it)");
  if (metadata.sha256 !== undefined) {
    const hex = integrity(metadata, entries, data);
    if (hex !== metadata.sha256) {
      fail(
        `checksum mismatch: the file's sha-256 is ${hex}, the metadata says ${metadata.sha256} (the file is corrupt)`,
      );
    }
  }
  const params: ParamEntry[] = entries.map((e) => {
    // A fresh, aligned copy (a Buffer's slice() would be a view into the file).
    const array = fromLittleEndian(data.subarray(e.begin, e.end), e.type);
    return { name: e.name, shape: e.shape, dtype: e.type, data: array };
  });
  const parse = (key: string): Record<string, unknown> | undefined => {
    if (metadata[key] === undefined) return undefined;
    let value: unknown;
    try {
      value = JSON.parse(metadata[key]);
    } catch {
      fail(`__metadata__.${key} is not JSON`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      fail(`__metadata__.${key} is not a JSON object`);
    }
    return value as Record<string, unknown>;
  };
  if (ours && metadata.version !== "2") {
    fail(
      `__metadata__.version ${JSON.stringify(metadata.version)} is not one this build reads ("2")`,
    );
  }
  const extra = ours ? parse("extra") : undefined;
  return {
    format: "adjoint-params",
    version: 2,
    // A file from elsewhere describes no model: the caller checks each tensor's name and shape.
    model: (ours ? parse("model") : undefined) ?? {},
    params,
    ...(extra !== undefined ? { extra } : {}),
  };
}

/** The first key a JSON object's text repeats at its top level, if any (the text is valid JSON). */
function repeatedTopLevelKey(bytes: Uint8Array): string | undefined {
  const text = new TextDecoder().decode(bytes);
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
    else if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1) {
        let k = j + 1;
        while (/\s/.test(text[k])) k++;
        if (text[k] === ":") {
          const key = JSON.parse(text.slice(i, j + 1)) as string;
          if (seen.has(key)) return key;
          seen.add(key);
        }
      }
      i = j;
    }
  }
  return undefined;
}
