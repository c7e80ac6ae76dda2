/** The protobuf pieces of an ONNX export: element types, tensors, attributes, and what a rule is given. */
import { createRequire } from "node:module";
import type onnxProto from "onnx-proto";
import { type Node } from "../graph/node.js";
import { type NodeType } from "../graph/types.js";
import { littleEndianBytes } from "./bytes.js";
import { type DType } from "../tensor/tensor.js";

/**
 * The protobuf classes, loaded at the first export: protobufjs and the generated onnx.proto code
 * take ~60 ms to load, most of `import "adjoint"` and of the CLI's start, for every user who never
 * writes an ONNX file.
 */
export function protoClasses(): typeof onnxProto.onnx {
  loaded ??= (createRequire(import.meta.url)("onnx-proto") as typeof onnxProto).onnx;
  return loaded;
}
let loaded: typeof onnxProto.onnx | undefined;

/** An ONNX attribute's value. */
export type AttributeValue = number | number[] | string | onnxProto.onnx.ITensorProto;

// NOTE: the enum values of onnx.proto (TensorProto.DataType, AttributeProto.AttributeType), fixed
// by the ONNX spec; a test checks them against the generated code's.
/** TensorProto.DataType of each dtype. */
export const ELEM: Record<DType, number> = { float32: 1, float64: 11 };
const INT64 = 7;
export const BOOL = 9;
/** AttributeProto.AttributeType codes. */
export const ATTRIBUTE_TYPE = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, INTS: 7 } as const;

/** What a rule writes with: ONNX nodes, constants and the run-time shape of a value. */
export interface Emitter {
  readonly opset: number;
  /** Appends an ONNX node and returns the name of its (first) output. */
  node(opType: string, inputs: string[], attrs?: Record<string, AttributeValue>): string;
  /** Appends an ONNX node with `count` outputs and returns their names. */
  nodeOutputs(
    opType: string,
    inputs: string[],
    attrs: Record<string, AttributeValue>,
    count: number,
  ): string[];
  /** A constant of `dtype` (float) or int64 (`"int64"`) as an initializer; its name. */
  constant(values: readonly number[], dims: readonly number[], dtype: DType | "int64"): string;
  /** The run-time shape (an int64 vector) of a value, one `Shape` node per value. */
  shapeOf(name: string): string;
  /** `name` cast to `dtype` when its type differs (adjoint promotes float32 with float64). */
  cast(name: string, from: DType, to: DType): string;
}

/** Everything a rule knows of one node: its inputs' ONNX names and types, its own type, attrs. */
export interface RuleContext {
  readonly node: Node;
  readonly inputs: string[];
  readonly inputTypes: NodeType[];
  readonly type: NodeType;
  readonly dtype: DType;
  readonly attrs: Record<string, unknown>;
}

export type Rule = (e: Emitter, c: RuleContext) => string;

/** An op with no ONNX rule, and why (the exporter says so, naming the node). */
export interface Unsupported {
  readonly unsupported: string;
}

/** A TensorProto of `dtype` (float, little-endian raw data) or int64 values. */
export function tensorProto(
  name: string,
  values: ArrayLike<number>,
  dims: readonly number[],
  dtype: DType | "int64",
): onnxProto.onnx.ITensorProto {
  if (dtype === "int64") {
    const data = new BigInt64Array(values.length);
    for (let i = 0; i < values.length; i++) data[i] = BigInt(values[i]);
    return { name, dims: [...dims], dataType: INT64, rawData: littleEndianBytes(data) };
  }
  const data = dtype === "float32" ? Float32Array.from(values) : Float64Array.from(values);
  return { name, dims: [...dims], dataType: ELEM[dtype], rawData: littleEndianBytes(data) };
}

/** One attribute in ONNX's tagged form. */
export function attribute(name: string, value: AttributeValue): onnxProto.onnx.IAttributeProto {
  const T = ATTRIBUTE_TYPE;
  if (typeof value === "number") {
    return Number.isInteger(value)
      ? { name, type: T.INT, i: value }
      : { name, type: T.FLOAT, f: value };
  }
  if (typeof value === "string")
    return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  return { name, type: T.TENSOR, t: value };
}
