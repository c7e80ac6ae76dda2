/** The protobuf pieces of an ONNX export: element types, tensors, attributes, and what a rule is given. */
import onnxProto from "onnx-proto";
import { type Node } from "../graph/node.js";
import { type NodeType } from "../graph/types.js";
import { littleEndianBytes } from "./bytes.js";
import { type DType } from "../tensor/tensor.js";

const { onnx } = onnxProto;

/** An ONNX attribute's value. */
export type AttributeValue = number | number[] | string | onnxProto.onnx.ITensorProto;

export const ELEM: Record<DType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float64: onnx.TensorProto.DataType.DOUBLE,
};
const INT64 = onnx.TensorProto.DataType.INT64;
export const BOOL = onnx.TensorProto.DataType.BOOL;

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
  const T = onnx.AttributeProto.AttributeType;
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
