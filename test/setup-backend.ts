/**
 * Runs the whole suite on the backend named by ADJOINT_BACKEND (js when unset): `npm test` runs it
 * once per backend. Tests that compare backends pick theirs explicitly and restore it.
 */
import { beforeAll } from "vitest";
import { useBackend, type BackendName } from "../src/backends/select.js";

const name = (process.env.ADJOINT_BACKEND ?? "js") as BackendName;
if (!["js", "wasm", "wasm-plain"].includes(name)) {
  throw new Error(`ADJOINT_BACKEND=${name}: expected js, wasm or wasm-plain`);
}

beforeAll(() => {
  useBackend(name, (error) => {
    throw new Error(`ADJOINT_BACKEND=${name} cannot be loaded: ${error.message}`);
  });
});
