/**
 * The fluent methods of Node (`x.add(y)`, `x.mul(2)`, `x.matmul(w)`), attached where the ops are
 * gathered, as TF.js registers its chained ops: node.ts then imports no op module, so the ops can
 * import it without a cycle. Importing the package (or graph/ops/index.js) installs them.
 */
import { Node } from "./node.js";
import { add, addByConst, div, divByConst, mul, mulByConst, neg, sub } from "./ops/elementwise.js";
import { matmul, type MatmulOptions } from "./ops/matmul.js";
import { typeName } from "../tensor/options.js";

declare module "./node.js" {
  interface Node {
    /** this + other (a Node, or a number via addByConst). */
    add(other: Node | number): Node;
    /** this - other (a number c is addByConst(this, -c)). */
    sub(other: Node | number): Node;
    /** this * other (a Node, or a number via mulByConst). */
    mul(other: Node | number): Node;
    /** this / other (a Node, or a number via divByConst). */
    div(other: Node | number): Node;
    /** -this. */
    neg(): Node;
    /** op(this) @ op(other) (batched over leading axes). */
    matmul(other: Node, options?: MatmulOptions): Node;
  }
}

function checkNode(value: unknown, method: string, orNumber = true): Node {
  if (value instanceof Node) return value;
  const expected = orNumber ? "a Node or a number" : "a Node";
  throw new TypeError(`Node.${method}: expected ${expected}, got ${typeName(value)}`);
}

Object.assign(Node.prototype, {
  add(this: Node, other: Node | number): Node {
    return typeof other === "number" ? addByConst(this, other) : add(this, checkNode(other, "add"));
  },
  sub(this: Node, other: Node | number): Node {
    return typeof other === "number"
      ? addByConst(this, -other)
      : sub(this, checkNode(other, "sub"));
  },
  mul(this: Node, other: Node | number): Node {
    return typeof other === "number" ? mulByConst(this, other) : mul(this, checkNode(other, "mul"));
  },
  div(this: Node, other: Node | number): Node {
    return typeof other === "number" ? divByConst(this, other) : div(this, checkNode(other, "div"));
  },
  neg(this: Node): Node {
    return neg(this);
  },
  matmul(this: Node, other: Node, options: MatmulOptions = {}): Node {
    return matmul(this, checkNode(other, "matmul", false), options);
  },
});
