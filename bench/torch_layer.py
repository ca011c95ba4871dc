"""
The PyTorch side of `npm run bench`'s moe-layer figure: forward + backward of one sparse MoE layer
as Hugging Face transformers computes Mixtral's (MixtralSparseMoeBlock in eager mode: the router's
linear, a float32 softmax, top-k, the weights renormalised, then a loop over the experts that
gathers each one's tokens and index_add_s its weighted SwiGLU output back), against its dense twin
(one SwiGLU of width k x expert width: the same active FLOPs), both taking the input's gradient,
with the loss mean(out^2), as the engine's side runs them. The two run alternately; the ratio is
the median of the pairs' moe/dense, on `--threads` CPU threads: the engine's moe-layer ratio,
measured the same way, beside the ratio the peer reaches on the same cores.

Prints one JSON line; exits 3 with {"skipped": reason} where torch is not installed.
"""
import json
import sys
import time


def main() -> None:
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    threads = int(args.get("--threads", "1"))
    sizes = json.loads(args.get("--sizes", "[[256, 128, 256]]"))
    pairs_min = int(args.get("--pairs", "20"))
    budget_s = float(args.get("--budget", "6"))
    E, k = int(args.get("--experts", "8")), int(args.get("--topk", "2"))
    try:
        import torch
        from torch import nn

        from hf_mixtral import SwiGLU, sparse_moe
    except Exception as e:  # noqa: BLE001 - any import failure means "no peer here"
        print(json.dumps({"skipped": f"{type(e).__name__}: {e}"}))
        sys.exit(3)
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    class SparseMoe(nn.Module):
        def __init__(self, H: int, I: int) -> None:
            super().__init__()
            self.gate = nn.Linear(H, E, bias=False)
            self.experts = nn.ModuleList(SwiGLU(H, I) for _ in range(E))

        def forward(self, h):
            return sparse_moe(h, self.gate(h), self.experts, k)

    results = []
    for T, H, I in sizes:
        moe, dense = SparseMoe(H, I), SwiGLU(H, k * I)
        for p in [*moe.parameters(), *dense.parameters()]:
            nn.init.normal_(p, 0, 0.05)
        x = torch.randn(T, H, requires_grad=True)

        def step(m) -> float:
            t0 = time.perf_counter()
            m(x).square().mean().backward()
            for p in [*m.parameters(), x]:
                p.grad = None
            return time.perf_counter() - t0

        step(dense), step(moe)  # warm-up
        pairs = []
        start = time.perf_counter()
        while len(pairs) < pairs_min or (time.perf_counter() - start < budget_s and len(pairs) < 50):
            pairs.append((step(dense), step(moe)))
        med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
        results.append(
            {
                "tokens": T,
                "hidden": H,
                "expertWidth": I,
                "denseMs": med([d for d, _ in pairs]) * 1000,
                "moeMs": med([m for _, m in pairs]) * 1000,
                "ratio": med([m / d for d, m in pairs]),
                "pairs": len(pairs),
            }
        )
    print(json.dumps({"threads": threads, "torch": torch.__version__, "results": results}))


main()
