"""PyTorch on this machine's CPU, for the side-by-side figures in docs/PERFORMANCE.md:
scoring pairs/s at batch 16 and training steps/s at batch 16 (forward, loss, backward,
Adam) of the PyTorch reference of the model, with the given number of threads.

    python3 benches/torch_cpu_timing.py TORCH_REF_DIR [THREADS] [SCORE_ITERS] [TRAIN_ITERS]
"""
import json
import sys
import time

sys.path.insert(0, sys.argv[1])
import torch  # noqa: E402
from asna_torch import asna_forward, asna_loss, asna_params, sorter_params  # noqa: E402

threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
score_iters = int(sys.argv[3]) if len(sys.argv) > 3 else 3
train_iters = int(sys.argv[4]) if len(sys.argv) > 4 else 2
torch.set_num_threads(threads)
res = {"torch": torch.__version__, "threads": torch.get_num_threads()}

g = torch.Generator().manual_seed(0)
ref = torch.randint(0, 256, (16, 288, 288, 3), dtype=torch.uint8, generator=g)
dist = torch.randint(0, 256, (16, 288, 288, 3), dtype=torch.uint8, generator=g)
P = asna_params(0).to("cpu")
for k in P.p:
    P.p[k].requires_grad_(False)
with torch.no_grad():
    asna_forward(P, ref, dist, train=False)
    t = time.perf_counter()
    for _ in range(score_iters):
        asna_forward(P, ref, dist, train=False)
    res["score_b16_pairs_per_s"] = 16 * score_iters / (time.perf_counter() - t)

S = sorter_params(1).to("cpu")
Pt = asna_params(0).to("cpu")
opt = torch.optim.Adam(list(Pt.p.values()), lr=1e-4, eps=1e-7)
tgt = torch.randn(16, generator=g)


def step():
    opt.zero_grad(set_to_none=True)
    upd = {}
    pred = asna_forward(Pt, ref, dist, train=True, updates=upd)
    loss, _ = asna_loss(pred, tgt, S, 1.0, 0.01, Pt)
    loss.backward()
    opt.step()
    Pt.buffers.update(upd)


step()
t = time.perf_counter()
for _ in range(train_iters):
    step()
res["train_b16_s_per_step"] = (time.perf_counter() - t) / train_iters
print(json.dumps(res))
