/** Seeded random graphs, shared by the arena test and the ONNX export test. */
import * as adj from "../../src/index.js";
import type { Node } from "../../src/index.js";
import { mulberry32 } from "./gradcheck.js";

/** A seeded random graph of matmuls and element-wise ops over [12, 8] and [8, 12] matrices. */
export function randomGraph(seed: number): (...xs: Node[]) => Node {
  return (a, b) => {
    const random = mulberry32(seed);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
    // Square-ish pool: [12, 8] nodes (tall) and [8, 12] nodes (wide).
    const tall: Node[] = [a, adj.transpose(b)];
    const wide: Node[] = [b, adj.transpose(a)];
    for (let step = 0; step < 12; step++) {
      const kind = random();
      if (kind < 0.3) {
        tall.push(adj.matmul(pick(tall), adj.matmul(pick(wide), pick(tall))));
      } else if (kind < 0.45) {
        wide.push(adj.matmul(pick(tall), pick(tall), { transA: true, transB: false }));
        wide[wide.length - 1] = adj.matmul(wide[wide.length - 1], pick(wide));
      } else if (kind < 0.8) {
        const op = pick([
          adj.add,
          adj.sub,
          adj.mul,
          (x: Node, y: Node) => adj.div(x, adj.addByConst(adj.mul(y, y), 1)),
        ]);
        tall.push(op(pick(tall), pick(tall)));
      } else {
        const op = pick([adj.tanh, adj.sigmoid, adj.relu, (x: Node) => adj.mulByConst(x, 0.3)]);
        wide.push(op(pick(wide)));
      }
    }
    return adj.add(adj.matmul(tall[tall.length - 1], wide[wide.length - 1]), adj.sum(pick(tall)));
  };
}
