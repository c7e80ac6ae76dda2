/** Custom ops for users: defineOp() with optional type and forward rules, apply() to use one. */
import { checkNodeList, label, Node, variable } from "../graph/node.js";
import { makeOp, registerOp, type Attrs, type Op } from "../graph/op.js";
import { checkOptions, typeName } from "../tensor/options.js";
import { UNKNOWN, type NodeType } from "../graph/types.js";
import { mul } from "../graph/ops/elementwise.js";
import { sum } from "../graph/ops/reduce.js";
import type { Tensor } from "../tensor/tensor.js";
import { checkGradients } from "./check.js";

/** A user's op: compute and gradient rule; its type rule and forward rule are optional. */
export interface CustomOpSpec {
  name: string;
  compute: Op["compute"];
  /** One gradient node per input (null where an input gets none), as Op.gradient. */
  gradient: NonNullable<Op["pullback"]>;
  /** The forward rule; without one, jvp() derives it from the gradient rule. */
  jvp?: Op["jvp"];
  /** The type rule; without one, nothing is known of the output's type before it runs. */
  type?: (inputTypes: readonly NodeType[], attrs: Attrs) => NodeType;
}

/**
 * Defines (and registers, by its unique name) an op of your own. With `check`, each example (one
 * tensor per input, float64) is run through checkGradients at once, and a wrong rule throws a
 * GradientCheckError naming it, before the op is ever used.
 * Example: `const square = defineOp({ name: "square", compute: (_n, [x]) => backend().binary("mul",
 * x, x), gradient: (node, g) => [mul(g, mulByConst(node.inputs[0], 2))] }, { check: [[x0]] })`.
 */
export function defineOp(spec: CustomOpSpec, options: { check?: Tensor[][] } = {}): Op {
  const call = "defineOp(spec, options)";
  const example = 'defineOp({ name: "square", compute, gradient }, { check: [[x0]] })';
  checkOptions(call, spec, ["name", "compute", "gradient", "jvp", "type"], example);
  const { check } = checkOptions(call, options, ["check"], example);
  if (typeof spec.name !== "string" || spec.name === "") {
    throw new TypeError(
      `${call}: spec.name must be a non-empty string, got ${typeName(spec.name)}`,
    );
  }
  for (const key of ["compute", "gradient", "jvp", "type"] as const) {
    const required = key === "compute" || key === "gradient";
    if ((required || spec[key] !== undefined) && typeof spec[key] !== "function") {
      throw new TypeError(
        `${call}: op "${spec.name}": ${key} must be a function${required ? "" : " when given"}, got ${typeName(spec[key])}`,
      );
    }
  }
  if (check !== undefined && !Array.isArray(check)) {
    throw new TypeError(
      `${call}: options.check must be an array of examples, got ${typeName(check)}`,
    );
  }
  // Checked before it is registered: a refused op leaves its name free.
  const op = makeOp({ ...spec, type: spec.type ?? (() => UNKNOWN) });
  for (const example of check ?? []) {
    const inputs = example.map((_, i) => variable(`x${i}`));
    const y = apply(op, inputs);
    // sum(u * y) with u = ones: a number whatever the output's shape; checkGradients then
    // projects it along its own random directions.
    const u = variable("u");
    checkGradients(
      sum(mul(u, y)),
      new Map<Node, Tensor>([
        ...inputs.map((x, i): [Node, Tensor] => [x, example[i]]),
        [u, projection(op, inputs, example)],
      ]),
      inputs,
    );
  }
  return registerOp(op);
}

/** A node of `op` over `inputs`. Example: `apply(square, [x])`. */
export function apply(op: Op, inputs: readonly Node[], attrs: Attrs = {}): Node {
  checkNodeList(`apply(${op.name}, inputs)`, "inputs", inputs, `apply(op, [x])`);
  return new Node([...inputs], op, attrs, `${op.name}(${inputs.map(label).join(",")})`);
}

/** Ones of the op's output shape at the example (so the check sees every output element). */
function projection(op: Op, inputs: readonly Node[], example: Tensor[]): Tensor {
  const out = op
    .compute(new Node([...inputs], op, {}, op.name), example)
    .clone({ dtype: "float64" });
  out.data.fill(1);
  return out;
}
