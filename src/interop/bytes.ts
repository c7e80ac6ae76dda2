/** Typed arrays to and from little-endian bytes: the byte order of every file format adjoint writes. */
import { endianness } from "node:os";
import type { DType } from "../tensor/tensor.js";

const LITTLE_ENDIAN = endianness() === "LE";

/** The array's bytes in little-endian order (a view on little-endian hosts, a copy otherwise). */
export function littleEndianBytes(data: Float32Array | Float64Array | BigInt64Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(data.byteLength);
  const view = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) {
    if (data instanceof BigInt64Array) view.setBigInt64(i * 8, data[i], true);
    else if (data instanceof Float32Array) view.setFloat32(i * 4, data[i], true);
    else view.setFloat64(i * 8, data[i], true);
  }
  return out;
}

/** A fresh, aligned typed array from little-endian bytes. */
export function fromLittleEndian(bytes: Uint8Array, dtype: DType): Float32Array | Float64Array {
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
