/**
 * ONNX export: any graph (forward or gradient: gradient nodes are ordinary nodes) as an ONNX
 * ModelProto, encoded with `onnx-proto` (protobufjs code generated from the official onnx.proto).
 * Each adjoint op maps to standard ONNX operators in the table below; shapes that are unknown at
 * export (the batch) become symbolic dimensions, and every rule that needs a shape reads it at run
 * time (`Shape`), so an exported model runs for any batch size.
 */
import type onnxProto from "onnx-proto";
import { checkFeed, checkOptions, isPlaceholder, type Node } from "../graph/node.js";
import { typeName } from "../tensor/options.js";
import { topoSort } from "../graph/topo.js";
import { type Dim, type NodeType } from "../graph/types.js";
import { Tensor } from "../tensor/tensor.js";
import {
  attribute,
  ELEM,
  protoClasses,
  tensorProto,
  type Emitter,
  type Rule,
  type Unsupported,
} from "./onnx-proto.js";
import { RULES } from "./onnx-rules.js";

/** Options of {@link exportOnnx}. */
export interface OnnxExportOptions {
  /** The graph's inputs: variables with a declared dtype and shape (null dims become symbolic). */
  inputs: readonly Node[];
  /** Variables baked into the model as weights, with their values. */
  initializers?: ReadonlyMap<Node, Tensor>;
  /** The default opset's version (default 17; 13 to 26). */
  opset?: number;
  /** The graph's name (default "adjoint"). */
  name?: string;
  /** Names of the outputs (default the nodes' names where they are unique, else output0...). */
  outputNames?: readonly string[];
}

/** What an ONNX value name may be here: no renaming needed. */
const ONNX_NAME = /^[A-Za-z_][A-Za-z0-9_.:/-]*$/;

/** Each output's node name where it is a plain, unique, unused name, else `output_k`. */
function defaultOutputNames(outputs: readonly Node[], used: ReadonlySet<string>): string[] {
  const counts = new Map<string, number>();
  for (const o of outputs) counts.set(o.name, (counts.get(o.name) ?? 0) + 1);
  return outputs.map((o, k) =>
    ONNX_NAME.test(o.name) && counts.get(o.name) === 1 && !used.has(o.name)
      ? o.name
      : `output_${k}`,
  );
}

/**
 * The opsets {@link exportOnnx} writes: ReduceSum takes axes as an input from 13 on; 26 is the
 * newest onnxruntime-node 1.30 accepts (tested).
 */
export const ONNX_OPSETS = { min: 13, max: 26, default: 17 } as const;

/** A ValueInfoProto: element type and shape, unknown dims symbolic (`dim_param`). */
function valueInfo(name: string, type: NodeType, symbol: (i: number) => string) {
  const dims =
    type.shape === null
      ? undefined
      : type.shape.map((d: Dim, i) => (d === null ? { dimParam: symbol(i) } : { dimValue: d }));
  return {
    name,
    type: {
      tensorType: { elemType: ELEM[type.dtype!], shape: dims ? { dim: dims } : undefined },
    },
  };
}

/**
 * The graph computing `outputs` as an ONNX model (encoded ModelProto bytes): `inputs` become graph
 * inputs, `initializers` weights. Throws, naming the node, for an op without an ONNX mapping (a
 * custom op), a variable that is neither input nor initializer, or an input without a dtype.
 * Example: `exportOnnx([logits], { inputs: [X], initializers: new Map([[W, w]]) })`.
 */
export function exportOnnx(outputs: readonly Node[], options: OnnxExportOptions): Uint8Array {
  checkOptions(
    "exportOnnx(outputs, options)",
    options,
    ["inputs", "initializers", "opset", "name", "outputNames"],
    "exportOnnx([y], { inputs: [x], initializers: new Map([[W, w]]), opset: 17 })",
  );
  if (!Array.isArray(options.inputs)) {
    throw new TypeError(
      `exportOnnx: options.inputs must be an array of variables, got ${typeName(options.inputs)}`,
    );
  }
  const opset = options.opset ?? ONNX_OPSETS.default;
  if (!Number.isInteger(opset) || opset < ONNX_OPSETS.min || opset > ONNX_OPSETS.max) {
    throw new RangeError(
      `exportOnnx: opset must be an integer from ${ONNX_OPSETS.min} to ${ONNX_OPSETS.max}, got ${String(opset)}`,
    );
  }
  if (!Array.isArray(outputs) || outputs.length === 0) {
    throw new TypeError("exportOnnx: outputs must be a non-empty array of nodes");
  }
  const initializers = options.initializers ?? new Map<Node, Tensor>();
  const names = new Map<Node, string>();
  const types = new Map<Node, NodeType>();
  const used = new Set<string>();
  const unique = (base: string): string => {
    const clean = base.replace(/[^A-Za-z0-9_.:/-]/g, "_") || "v";
    let name = clean;
    for (let k = 1; used.has(name); k++) name = `${clean}_${k}`;
    used.add(name);
    return name;
  };
  const onnxNodes: onnxProto.onnx.INodeProto[] = [];
  const inits: onnxProto.onnx.ITensorProto[] = [];
  const graphInputs: ReturnType<typeof valueInfo>[] = [];
  for (const input of options.inputs) {
    if (!isPlaceholder(input)) {
      throw new TypeError(
        `exportOnnx: input "${input.name}" is a ${input.op.name} node, not a variable`,
      );
    }
    if (input.dtype === null) {
      throw new TypeError(
        `exportOnnx: input "${input.name}" has no dtype; declare it: variable("${input.name}", { shape, dtype: "float32" })`,
      );
    }
    const name = unique(input.name);
    names.set(input, name);
    types.set(input, input.type);
    graphInputs.push(valueInfo(name, input.type, (i) => `${name}_dim${i}`));
  }
  for (const [node, value] of initializers) {
    if (!isPlaceholder(node)) {
      throw new TypeError(
        `exportOnnx: initializer "${node.name}" is a ${node.op.name} node, not a variable`,
      );
    }
    if (names.has(node))
      throw new Error(`exportOnnx: "${node.name}" is both an input and an initializer`);
    if (!(value instanceof Tensor)) {
      throw new TypeError(
        `exportOnnx: initializer "${node.name}" is not a Tensor, got ${typeName(value)}`,
      );
    }
    // The variable's declaration holds for its weight: a float64 weight would turn a float32
    // model's outputs float64, a weight of another shape fail in the runtime.
    try {
      checkFeed(node, value);
    } catch (error) {
      throw new Error(`exportOnnx: initializer ${(error as Error).message}`, { cause: error });
    }
    const name = unique(node.name);
    names.set(node, name);
    types.set(node, { shape: [...value.shape], dtype: value.dtype });
    inits.push(tensorProto(name, value.data, value.shape, value.dtype));
  }
  const shapes = new Map<string, string>();
  const emitter: Emitter = {
    opset,
    node(opType, inputs, attrs = {}) {
      return this.nodeOutputs(opType, inputs, attrs, 1)[0];
    },
    nodeOutputs(opType, inputs, attrs, count) {
      const base = unique(`${opType}_${onnxNodes.length}`);
      const outputs = [
        base,
        ...Array.from({ length: count - 1 }, (_, i) => unique(`${base}_${i + 1}`)),
      ];
      onnxNodes.push({
        opType,
        input: inputs,
        output: outputs,
        name: base,
        attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
      });
      return outputs;
    },
    constant(values, dims, dtype) {
      const name = unique(`const_${inits.length}`);
      inits.push(tensorProto(name, values, dims, dtype));
      return name;
    },
    shapeOf(name) {
      let shape = shapes.get(name);
      if (shape === undefined) shapes.set(name, (shape = this.node("Shape", [name])));
      return shape;
    },
    cast(name, from, to) {
      return from === to ? name : this.node("Cast", [name], { to: ELEM[to] });
    },
  };
  for (const node of topoSort(outputs)) {
    if (names.has(node)) continue;
    if (isPlaceholder(node)) {
      throw new Error(
        `exportOnnx: variable "${node.name}" is neither in inputs nor in initializers`,
      );
    }
    const rule = (RULES as Partial<Record<string, Rule | Unsupported>>)[node.op.name];
    if (rule === undefined) {
      throw new Error(
        `exportOnnx: op "${node.op.name}" (node "${node.name}") has no ONNX mapping; export a graph of built-in ops`,
      );
    }
    if (typeof rule !== "function") {
      throw new Error(
        `exportOnnx: op "${node.op.name}" (node "${node.name}") has no ONNX mapping: ${rule.unsupported}`,
      );
    }
    const inputTypes = node.inputs.map((input) => types.get(input)!);
    // The type rule rerun on the inputs' export-time types (weights' shapes are known here).
    const type = node.op.type(inputTypes, node.attrs);
    if (type.dtype === null) {
      throw new Error(`exportOnnx: node "${node.name}" (${node.op.name}) has no known dtype`);
    }
    const name = rule(emitter, {
      node,
      inputs: node.inputs.map((input) => names.get(input)!),
      inputTypes,
      type,
      dtype: type.dtype,
      attrs: node.attrs,
    });
    names.set(node, name);
    types.set(node, type);
  }
  const outputNames = options.outputNames ?? defaultOutputNames(outputs, used);
  if (!Array.isArray(outputNames) || outputNames.length !== outputs.length) {
    throw new Error(
      `exportOnnx: ${Array.isArray(outputNames) ? outputNames.length : typeName(outputNames)} outputNames for ${outputs.length} outputs`,
    );
  }
  outputNames.forEach((name, i) => {
    if (typeof name !== "string" || !ONNX_NAME.test(name)) {
      throw new Error(
        `exportOnnx: outputNames[${i}] ${JSON.stringify(name)} is not a name (letters, digits, _ . : / -)`,
      );
    }
    if (outputNames.indexOf(name) !== i) {
      throw new Error(
        `exportOnnx: output name "${name}" is given twice (outputNames ${i} and ${outputNames.indexOf(name)})`,
      );
    }
    if (used.has(name)) {
      throw new Error(
        `exportOnnx: output name "${name}" is already the name of an input, initializer or node of the graph`,
      );
    }
  });
  const graphOutputs = outputs.map((node, i) => {
    // Each output its own Identity, so an output may be an input or repeat another.
    const name = unique(outputNames[i]);
    onnxNodes.push({ opType: "Identity", input: [names.get(node)!], output: [name], name });
    const type = types.get(node)!;
    return valueInfo(name, type, (d) => `${name}_dim${d}`);
  });
  const onnx = protoClasses();
  const model = onnx.ModelProto.create({
    // The IR version each opset came with (ONNX 1.13: IR 8 to opset 18; 1.15: 9, 20; 1.17: 10,
    // 22; 1.18: 11, 23-24; then 12).
    irVersion: opset <= 18 ? 8 : opset <= 20 ? 9 : opset <= 22 ? 10 : opset <= 24 ? 11 : 12,
    producerName: "adjoint",
    producerVersion: "0.1.0",
    opsetImport: [{ domain: "", version: opset }],
    graph: {
      name: options.name ?? "adjoint",
      node: onnxNodes,
      initializer: inits,
      input: graphInputs,
      output: graphOutputs,
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

/** The op names {@link exportOnnx} maps to ONNX (internal types stay out of the package's .d.ts). */
export function onnxExportableOps(): string[] {
  return Object.entries(RULES)
    .filter(([, rule]) => typeof rule === "function")
    .map(([name]) => name);
}
