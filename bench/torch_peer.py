"""
The PyTorch side of `npm run bench`'s peer comparison: training tokens/s of the Mixtral-family
configuration the engine is measured on, in PyTorch eager as Hugging Face transformers computes
MixtralForCausalLM (a compact port of its eager code: RMSNorm, RoPE, grouped-query attention with
repeat_kv, softmax top-k routing with renormalised weights and HF's per-expert index_add_ loop,
SwiGLU experts, the load-balancing loss), forward + backward + torch.optim.AdamW, on `--threads`
CPU threads. Works with Debian's python3-torch (1.13; install libopenblas0-pthread too, or torch
falls back to reference BLAS, 30x slower).

Prints one JSON line; exits 3 with {"skipped": reason} where torch is not installed.
"""
import json
import sys
import time


def main() -> None:
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    threads = int(args.get("--threads", "1"))
    steps = int(args.get("--steps", "3"))
    cfg = json.loads(args["--config"])
    try:
        import torch
        import torch.nn.functional as F
        from torch import nn

        from hf_mixtral import SwiGLU, sparse_moe
    except Exception as e:  # noqa: BLE001 - any import failure means "no peer here"
        print(json.dumps({"skipped": f"{type(e).__name__}: {e}"}))
        sys.exit(3)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    H, L, nh, nkv = cfg["hiddenSize"], cfg["numLayers"], cfg["numHeads"], cfg["numKvHeads"]
    hd, E, k, I, V = cfg.get("headDim", H // nh), cfg["numExperts"], cfg["topK"], cfg["expertIntermediateSize"], cfg["vocabSize"]
    B, T = cfg["batch"], cfg["seq"]

    class RMSNorm(nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n))

        def forward(self, x):
            v = x.pow(2).mean(-1, keepdim=True)
            return self.weight * (x * torch.rsqrt(v + 1e-5))

    inv = 1.0 / (1e6 ** (torch.arange(0, hd, 2).float() / hd))
    freqs = torch.outer(torch.arange(T).float(), inv)
    emb = torch.cat([freqs, freqs], -1)
    cos, sin = emb.cos(), emb.sin()

    def rot(x):
        x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
        return torch.cat([-x2, x1], -1)

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q = nn.Linear(H, nh * hd, bias=False)
            self.k = nn.Linear(H, nkv * hd, bias=False)
            self.v = nn.Linear(H, nkv * hd, bias=False)
            self.o = nn.Linear(nh * hd, H, bias=False)
            self.n1, self.n2 = RMSNorm(H), RMSNorm(H)
            self.gate = nn.Linear(H, E, bias=False)
            self.experts = nn.ModuleList(SwiGLU(H, I) for _ in range(E))

        def forward(self, x, mask):
            h = self.n1(x)
            q = self.q(h).view(B, T, nh, hd).transpose(1, 2)
            kk = self.k(h).view(B, T, nkv, hd).transpose(1, 2)
            vv = self.v(h).view(B, T, nkv, hd).transpose(1, 2)
            q, kk = q * cos + rot(q) * sin, kk * cos + rot(kk) * sin
            kk = kk.repeat_interleave(nh // nkv, 1)
            vv = vv.repeat_interleave(nh // nkv, 1)
            att = torch.softmax((q @ kk.transpose(2, 3)) / hd**0.5 + mask, -1, dtype=torch.float32)
            x = x + self.o((att @ vv).transpose(1, 2).reshape(B, T, nh * hd))
            h = self.n2(x).view(-1, H)
            logits = self.gate(h)
            out = sparse_moe(h, logits, self.experts, k)
            return x + out.view(B, T, H), logits

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(V, H)
            self.layers = nn.ModuleList(Layer() for _ in range(L))
            self.norm = RMSNorm(H)
            self.head = nn.Linear(H, V, bias=False)

        def forward(self, ids):
            mask = torch.full((T, T), float("-inf")).triu(1)
            x = self.embed(ids)
            routers = []
            for layer in self.layers:
                x, r = layer(x, mask)
                routers.append(r)
            logits = self.head(self.norm(x)).float()
            ce = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
            g = torch.softmax(torch.cat(routers, 0), -1)
            _, sel = torch.topk(g, k, -1)
            f = F.one_hot(sel, E).float().mean(0)
            aux = (f * g.mean(0)).sum() * E
            return ce + 0.02 * aux

    model = Model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    ids = torch.randint(0, V, (B, T))

    def step() -> None:
        loss = model(ids)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    ms = times[len(times) // 2] * 1000
    blas = loaded_blas()
    print(
        json.dumps(
            {
                "threads": threads,
                "torch": torch.__version__,
                "blas": blas,
                "params": sum(p.numel() for p in model.parameters()),
                "msPerStep": ms,
                "tokensPerSec": B * T / (ms / 1000),
            }
        )
    )


def loaded_blas() -> str:
    """The BLAS library this process multiplies with, from the libraries it mapped (torch's
    build config names MKL-DNN and LAPACK's usual provider even where sgemm is OpenBLAS)."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read().lower()
    except OSError:
        maps = ""
    for name in ("openblas", "mkl_rt", "libmkl", "blis", "libblas"):
        if name in maps:
            return {"mkl_rt": "mkl", "libmkl": "mkl", "libblas": "reference blas"}.get(name, name)
    return "unknown"


main()
