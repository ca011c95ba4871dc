"""Makes test/fixtures/peft: LoRA adapters written by PEFT itself on the moe-reference models, and
the logits PEFT computes with them, for test/main/handoff/peftFixtures.test.ts.

Run with torch, transformers 5.x and peft >= 0.19 (made with transformers 5.18.0, peft 0.21.0):
    python test/reference/make_peft_fixtures.py
Each adapter targets q_proj by module and, through target_parameters, the fused experts
(gate_up_proj nested inside down_proj's wrapper) and the router; gate_up_proj gets its own rank
and alpha through rank_pattern/alpha_pattern, and rsLoRA scaling is on for one of them.
"""
import json
import os

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
IDS = [[3, 17, 5, 42, 8, 11, 2, 60, 9]]

for family, rslora in (("mixtral", False), ("qwen3_moe", True), ("olmoe", False)):
    base = os.path.join(FIX, "moe-reference", family)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, torch_dtype=torch.float32).eval()
    cfg = LoraConfig(
        r=2,
        lora_alpha=4,
        target_modules=["q_proj"],
        target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj", "mlp.gate.weight"],
        rank_pattern={r".*\.gate_up_proj": 3},
        alpha_pattern={r".*\.gate_up_proj": 9},
        use_rslora=rslora,
        lora_dropout=0.0,
        init_lora_weights=False,  # random A and B: the adapter changes the logits
    )
    pm = get_peft_model(model, cfg).eval()
    with torch.no_grad():
        # Scale the random init down a little so the routing stays well away from ties.
        for n, p in pm.named_parameters():
            if "lora_" in n:
                p.mul_(0.5)
        logits = pm(torch.tensor(IDS)).logits
    out = os.path.join(FIX, "peft", family)
    pm.save_pretrained(out)
    readme = os.path.join(out, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(
            {
                "base": f"moe-reference/{family}",
                "input_ids": IDS,
                "logits": logits.flatten().tolist(),
                "shape": list(logits.shape),
                "made_with": {"transformers": transformers.__version__, "peft": peft.__version__, "torch": torch.__version__},
            },
            f,
        )
    print(family, "keys:", sorted(k for k in pm.state_dict() if "lora_" in k)[:6])
