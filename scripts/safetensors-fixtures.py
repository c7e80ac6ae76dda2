"""The safetensors fixture pair, generated once with Python's own library (test/fixtures/safetensors/).

Usage (from the repository root, after `npm run build`, with safetensors, numpy and torch):
    python3 scripts/safetensors-fixtures.py            # write the fixtures
    python3 scripts/safetensors-fixtures.py --check F  # print what Python reads from adjoint's file F

1. torch.safetensors and numpy.safetensors: written by safetensors.torch.save_file and
   safetensors.numpy.save_file from the formulas below (the test computes them again in JS).
2. adjoint.safetensors: written by adjoint's saveParams (scripts/safetensors-fixtures.mjs), then
   read here by safetensors.numpy.load_file, safetensors.torch.load_file and safe_open; what they
   read goes to adjoint.read-by-python.json, which the test compares with what adjoint wrote.
"""
import json, subprocess, sys
from pathlib import Path
import numpy as np

out = Path("test/fixtures/safetensors")


def formulas():
    W1 = (np.arange(12, dtype=np.float64) * 0.25 - 1.5).reshape(3, 4).astype(np.float32)
    b1 = np.array([0.5, -0.25, 0.125, 1 / 1024], dtype=np.float32)
    i = np.arange(8)
    W2 = (((i % 4) - (i // 4)) / 3).reshape(4, 2).astype(np.float64)
    return {"W1": W1, "b1": b1, "W2": W2}


def read(path):
    """What Python's safetensors reads from `path`, three ways, as JSON-ready data."""
    from safetensors import safe_open
    from safetensors.numpy import load_file as load_numpy
    from safetensors.torch import load_file as load_torch
    arrays = load_numpy(str(path))
    tensors = load_torch(str(path))
    with safe_open(str(path), framework="np") as f:
        metadata = f.metadata()
        keys = sorted(f.keys())
    for name in keys:
        assert np.array_equal(tensors[name].numpy(), arrays[name]), name
    return {
        "keys": keys,
        "metadata": metadata,
        "tensors": {
            name: {"dtype": str(arrays[name].dtype), "shape": list(arrays[name].shape),
                   "values": arrays[name].reshape(-1).tolist(),
                   "torchDtype": str(tensors[name].dtype)}
            for name in keys
        },
    }


if len(sys.argv) == 3 and sys.argv[1] == "--check":
    print(json.dumps(read(sys.argv[2]), sort_keys=True))
    sys.exit(0)

import torch
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch

out.mkdir(parents=True, exist_ok=True)
t = formulas()
save_torch({k: torch.from_numpy(v) for k, v in t.items()}, str(out / "torch.safetensors"),
           metadata={"written_by": "safetensors.torch.save_file"})
save_numpy(t, str(out / "numpy.safetensors"))
subprocess.run(["node", "scripts/safetensors-fixtures.mjs", str(out / "adjoint.safetensors")], check=True)
(out / "adjoint.read-by-python.json").write_text(
    json.dumps(read(out / "adjoint.safetensors"), indent=1, sort_keys=True) + "\n")
import safetensors
print(f"fixtures written with safetensors {safetensors.__version__}, torch {torch.__version__}, numpy {np.__version__}")
