/** Every op case through the one gradient checker, and a guard that every public builder has a case. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as adj from "../../src/index.js";
import { backendCases } from "../helpers/backends.js";
import { Node, opByName, topoSort, variable, type Op } from "../../src/index.js";
import { registeredOps } from "../../src/graph/op.js";
import { BUILTIN_OP_NAMES } from "../../src/graph/op-names.js";
import { assertClose, gradcheck, mulberry32, randomTensor } from "../helpers/gradcheck.js";
import { opCases } from "../helpers/op-cases.js";
import { fromTensor } from "../helpers/reference.js";

/** Exports of src/index.ts that are functions but do not build graph nodes. */
const NON_BUILDERS = new Set([
  "fit",
  "defaultMicroShards",
  "evaluate",
  "jvp",
  "vjp",
  "hvp",
  "checkGradients",
  "defineOp",
  "apply",
  "jacobian",
  "formatGraph",
  "toDot",
  "tensor",
  "zeros",
  "ones",
  "full",
  "allocate",
  "variable",
  "gradients",
  "simplify",
  "countNodes",
  "topoSort",
  "isPlaceholder",
  "backend",
  "setBackend",
  "opByName",
  "useBackend",
  "lowerGraph",
  "rebuildGraph",
  // Training: runs graphs, does not build nodes.
  "sgdEpoch",
  "modelSpec",
  "paramSpecs",
  "initParams",
  "loadDigits",
  "loadMnist",
  "loadMnistFull",
  "parseIdx",
  "randomSplit",
  "stratifiedSplit",
  "standardize",
  "oneHot",
  "train",
  "accuracy",
  "classificationAccuracy",
  "inProcessEngine",
  "poolEngine",
  "saveParams",
  "loadParams",
  "paramsHash",
  // Interop: reads graphs, builds no nodes of its own (test/interop/onnx.test.ts covers it).
  "exportOnnx",
  "onnxExportableOps",
  "exportModelOnnx",
  // Seeing the computation: runs gradients() and the Evaluator (test/inspect/trace.once.test.ts).
  "traceHtml",
  "tracedGradients",
]);

const isClass = (f: unknown) =>
  typeof f === "function" && Function.prototype.toString.call(f).startsWith("class");

/** Builders exported from src/index.ts, derived from the module itself. */
const publicBuilders = Object.entries(adj)
  .filter(
    ([name, value]) => typeof value === "function" && !isClass(value) && !NON_BUILDERS.has(name),
  )
  .map(([name]) => name)
  .sort();

/** Chainable methods of Node (everything on its prototype except the constructor and toString). */
const nodeMethods = Object.getOwnPropertyNames(Node.prototype)
  .filter((name) => name !== "constructor" && name !== "toString")
  // Methods only: the shape and dtype getters are no builders.
  .filter(
    (name) => typeof Object.getOwnPropertyDescriptor(Node.prototype, name)?.value === "function",
  )
  .map((name) => `Node.${name}`)
  .sort();

describe("op table", () => {
  it("covers every public builder and Node method", () => {
    // Sanity: the derivation sees the builders the issue names.
    for (const name of ["add", "matmul", "broadcastTo", "logSoftmax", "softmax"]) {
      expect(publicBuilders).toContain(name);
    }
    for (const name of ["Tensor", "Node", "Evaluator", "tensor", "gradients"]) {
      expect(publicBuilders).not.toContain(name);
    }
    const covered = new Set(opCases.map((c) => c.builder));
    const missing = [...publicBuilders, ...nodeMethods].filter((name) => !covered.has(name));
    expect(missing, `public builders without a case in test/helpers/op-cases.ts`).toEqual([]);
  });

  it("names only builders that exist", () => {
    const known = new Set([...publicBuilders, ...nodeMethods]);
    expect(opCases.map((c) => c.builder).filter((b) => !known.has(b))).toEqual([]);
  });

  it("every registered op is in some case's graph or gradient graph (keyed on the registry)", () => {
    const seen = new Set<string>();
    for (const c of opCases) {
      const xs = c.inputs.map((_, i) => variable(`x${i}`));
      const y = c.build(...xs);
      const grads = adj.gradients(adj.sum(y), xs);
      const second = adj.gradients(adj.sum(grads[0]), xs);
      for (const n of topoSort([y, ...grads, ...second])) seen.add(n.op.name);
    }
    // The custom ops of this file are plain objects, never registered: the registry is adj's.
    expect(registeredOps().filter((name) => name !== "placeholder" && !seen.has(name))).toEqual([]);
  });

  it("the typed list of built-in op names is what the op modules register, no more, no less", () => {
    // The registry takes a built-in op only under a listed name (a type error otherwise); a
    // listed name that no module declares would give tables rows for an op that does not exist.
    expect([...registeredOps()].sort()).toEqual([...BUILTIN_OP_NAMES].sort());
  });

  // A builder with a registered op of its name must put that op in the case's graph. Node
  // methods pick an op by argument type, composites (logSoftmax, softmax) have none: not here.
  const ownOpCases = opCases.filter((c) => registeredOps().includes(c.builder));
  it.each(ownOpCases.map((c) => [c.name, c] as const))(
    "%s: its graph contains the builder's own op",
    (_, c) => {
      const y = c.build(...c.inputs.map((_, i) => variable(`x${i}`)));
      expect(topoSort([y]).map((n) => n.op)).toContain(opByName(c.builder));
    },
  );
});

describe.each(backendCases.map((b) => [b.name, b] as const))("%s backend", (_, backendCase) => {
  let active: adj.Backend | undefined;
  beforeAll(() => {
    active = backendCase.create();
    adj.setBackend(active);
  });
  afterAll(() => {
    adj.setBackend(adj.jsBackend);
  });

  describe.each(opCases.map((c) => [c.name, c] as const))("%s", (_, c) => {
    it("value matches the reference, gradients match finite differences (1st and 2nd order)", () => {
      expect(adj.backend()).toBe(active);
      const { value } = gradcheck(c.build, c.inputs, c.options);
      const expected = c.expected(...c.inputs.map(fromTensor));
      expect([...value.shape]).toEqual(expected.shape);
      expect(value.dtype).toBe("float64");
      assertClose(value.data, expected.data, "value", 1e-12, 1e-12);
    });
  });
});

describe("the checker itself", () => {
  const random = mulberry32(7);
  const x = randomTensor(random, [2, 3]);

  /** exp with the classic mistake: gradient x * g instead of e^x * g. */
  const wrongExpOp: Op = {
    name: "wrongExp",
    type: ([x]) => x,
    compute: (node, inputs) => adj.exp(node.inputs[0]).op.compute(node, inputs),
    gradient: (node, g) => [adj.mul(g, node.inputs[0])],
  };
  /** A correct first derivative whose own gradient is wrong: 2x with a gradient rule saying 3. */
  const twiceOp: Op = {
    name: "twice",
    type: ([x]) => x,
    compute: (_node, [v]) => adj.backend().scalar("mul", v, 2),
    gradient: (_node, g) => [adj.mulByConst(g, 2)],
  };
  const squareOp: Op = {
    name: "square",
    type: ([x]) => x,
    compute: (_node, [v]) => adj.backend().binary("mul", v, v),
    gradient: (node, g) => [adj.mul(g, new Node([node.inputs[0]], badTwiceOp, {}, "twice"))],
  };
  const badTwiceOp: Op = { ...twiceOp, gradient: (_node, g) => [adj.mulByConst(g, 3)] };
  /** A gradient of the wrong shape: (3,) summed for a (2,3) input. */
  const wrongShapeOp: Op = {
    name: "wrongShape",
    type: ([x]) => x,
    compute: (_node, [v]) => v,
    gradient: (_node, g) => [adj.sum(g, { axis: 0 })],
  };

  it("rejects a wrong first-order gradient", () => {
    expect(() => gradcheck((v) => new Node([v], wrongExpOp, {}, "wrongExp"), [x])).toThrow(
      /first-order gradient wrt input 0/,
    );
  });

  it("rejects a wrong second-order gradient", () => {
    const build = (v: adj.Node) => new Node([v], squareOp, {}, "square");
    expect(() => gradcheck(build, [x], { secondOrder: false })).not.toThrow();
    expect(() => gradcheck(build, [x])).toThrow(/second-order gradient wrt input 0/);
  });

  it("rejects a gradient of the wrong shape", () => {
    expect(() => gradcheck((v) => new Node([v], wrongShapeOp, {}, "wrongShape"), [x])).toThrow(
      /gradient 0 has shape \[3\], input has \[2,3\]/,
    );
  });
});
