"""PyTorch CPU beside `npm run bench:train`: the default architectures of adjoint's --model cnn
(--arch wide) and --model transformer (--arch residual), as src/train/architectures.ts defines
them, float32, Adam, synthetic MNIST-shaped data. Usage: models_torch.py --model cnn|transformer
--threads N --batch-size B --steps S. Prints one JSON line with samplesPerSecond (5 warm-up steps
not timed), as ../shared/peers/peer_models_torch.py does for the tutorial's and course's nets."""
import argparse, json, math, time
import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--model", default="cnn"); p.add_argument("--threads", type=int, default=1)
p.add_argument("--batch-size", type=int, default=64); p.add_argument("--steps", type=int, default=60)
a = p.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(0)


class Wide(torch.nn.Module):
    """conv 5x5x16 -> relu -> pool 2 -> conv 5x5x32 -> relu -> pool 2 -> dense 128 -> relu -> 10."""
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 16, 5); self.c2 = torch.nn.Conv2d(16, 32, 5)
        self.d1 = torch.nn.Linear(512, 128); self.d2 = torch.nn.Linear(128, 10)
    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x.view(-1, 1, 28, 28))), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.d2(F.relu(self.d1(x.flatten(1))))


class Residual(torch.nn.Module):
    """embed 28 -> 64 + learned positions; x + attention(x) Wo, layer norm; + feed-forward 64 ->
    128 -> 64, layer norm; mean over the 28 tokens; dense to 10."""
    def __init__(self, d=64, hidden=128):
        super().__init__()
        self.embed = torch.nn.Linear(28, d); self.pos = torch.nn.Parameter(torch.randn(28, d) * 0.02)
        self.q = torch.nn.Linear(d, d, bias=False); self.k = torch.nn.Linear(d, d, bias=False)
        self.v = torch.nn.Linear(d, d, bias=False); self.o = torch.nn.Linear(d, d, bias=False)
        self.f1 = torch.nn.Linear(d, hidden); self.f2 = torch.nn.Linear(hidden, d)
        self.out = torch.nn.Linear(d, 10); self.d = d
    def forward(self, x):
        x = self.embed(x.view(-1, 28, 28)) + self.pos
        att = torch.softmax(self.q(x) @ self.k(x).transpose(-1, -2) / math.sqrt(self.d), dim=-1) @ self.v(x)
        a = F.layer_norm(x + self.o(att), (self.d,), eps=1e-5)
        h = F.layer_norm(a + self.f2(F.relu(self.f1(a))), (self.d,), eps=1e-5)
        return self.out(h.mean(dim=1))


model = Wide() if a.model == "cnn" else Residual()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
n = 4096
X = torch.rand(n, 784); y = torch.randint(0, 10, (n,))
def step(i):
    s = (i * a.batch_size) % (n - a.batch_size)
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(X[s:s + a.batch_size]), y[s:s + a.batch_size]); loss.backward(); opt.step()
for i in range(5): step(i)
t = time.perf_counter()
for i in range(a.steps): step(i)
dt = time.perf_counter() - t
print(json.dumps({"peer": f"PyTorch {torch.__version__} CPU, {a.threads} thread{'s' if a.threads > 1 else ''}",
                  "model": a.model, "threads": a.threads, "batchSize": a.batch_size, "steps": a.steps,
                  "samplesPerSecond": a.steps * a.batch_size / dt}))
