// Writes the adjoint side of the safetensors fixture pair (test/fixtures/safetensors/): the file
// adjoint writes for the fixture record (test/helpers/safetensors-fixture.ts), with the public
// saveParams. Run by scripts/safetensors-fixtures.py (which then reads it with Python's
// safetensors); needs `npm run build` first.
import { join } from "node:path";
import { saveParams } from "../dist/src/train/serialize.js";
import { fixtureRecord } from "../dist/test/helpers/safetensors-fixture.js";

const out = process.argv[2] ?? join("test", "fixtures", "safetensors", "adjoint.safetensors");
saveParams(out, fixtureRecord());
console.log(`wrote ${out}`);
