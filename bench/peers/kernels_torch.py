"""PyTorch CPU beside `npm run bench:kernels`: the N-D cases of its table (conv2d of the MNIST
CNN's shapes, the transformer's batched products and their 2-D equivalent), forward + every
input's gradient through autograd, float32, one thread. Prints one JSON line per case:
{"peer", "case", "gflops"} counting the forward's operations times 3, as adjoint's table does."""
import json
import time

import torch

torch.set_num_threads(1)
torch.manual_seed(0)

CASES = [
    ("conv2d [64,1,28,28] * [8,1,5,5]", [[64, 1, 28, 28], [8, 1, 5, 5]],
     lambda x, w: torch.nn.functional.conv2d(x, w), 2 * 64 * 8 * 24 * 24 * 25),
    ("conv2d [64,8,12,12] * [16,8,5,5]", [[64, 8, 12, 12], [16, 8, 5, 5]],
     lambda x, w: torch.nn.functional.conv2d(x, w), 2 * 64 * 16 * 8 * 8 * 8 * 25),
    ("matmul [64,28,28] @ [28,128]", [[64, 28, 28], [28, 128]],
     lambda a, b: a @ b, 2 * 64 * 28 * 28 * 128),
    ("matmul [64,28,128] @ [64,28,128]ᵀ", [[64, 28, 128], [64, 28, 128]],
     lambda a, b: a @ b.transpose(-1, -2), 2 * 64 * 28 * 128 * 28),
    ("matmul [64,28,28] @ [64,28,128]", [[64, 28, 28], [64, 28, 128]],
     lambda a, b: a @ b, 2 * 64 * 28 * 28 * 128),
    ("2-D equivalent: matmul [1792,28] @ [28,128]", [[1792, 28], [28, 128]],
     lambda a, b: a @ b, 2 * 1792 * 28 * 128),
]


def seconds_per_call(fn, budget=0.5):
    for _ in range(5):
        fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls


for label, shapes, build, flops in CASES:
    xs = [torch.randn(s, requires_grad=True) for s in shapes]
    u = torch.randn(build(*xs).shape)

    def step():
        y = build(*xs)
        grads = torch.autograd.grad((y * u).sum(), xs)
        return y, grads

    s = seconds_per_call(step)
    print(json.dumps({"peer": f"PyTorch {torch.__version__} cpu", "case": label,
                      "gflops": 3 * flops / s / 1e9}))
