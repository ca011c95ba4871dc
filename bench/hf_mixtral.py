"""
Hugging Face transformers' Mixtral MLP pieces in PyTorch eager, shared by the bench's PyTorch
sides (torch_peer.py, torch_layer.py): the SwiGLU expert (MixtralBlockSparseTop2MLP) and the sparse
block's routing and dispatch (MixtralSparseMoeBlock: a float32 softmax, top-k, the weights
renormalised, then a loop over the experts that gathers each one's tokens and index_add_s its
weighted output back). Imported after torch is known to be there.
"""
import torch
import torch.nn.functional as F
from torch import nn


class SwiGLU(nn.Module):
    def __init__(self, H: int, I: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(H, I, bias=False)
        self.w2 = nn.Linear(I, H, bias=False)
        self.w3 = nn.Linear(H, I, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def sparse_moe(h, logits, experts, k: int):
    """The sparse block's output for rows h (N, H) and their router logits (N, E)."""
    E = len(experts)
    w = torch.softmax(logits, 1, dtype=torch.float)
    w, sel = torch.topk(w, k, -1)
    w = w / w.sum(-1, keepdim=True)
    out = torch.zeros_like(h)
    onehot = F.one_hot(sel, E).permute(2, 1, 0)
    for e in range(E):
        idx, top = torch.where(onehot[e])
        if top.numel() == 0:
            continue
        out.index_add_(0, top, experts[e](h[top]) * w[top, idx, None])
    return out
