"""Loads a model folder with Hugging Face transformers and prints its logits for the given ids as JSON.

    python hf_logits.py MODEL_DIR '[[1, 2, 3]]'

Used by test/main/engine/hfInterop.test.ts (skipped where transformers is not installed) to check
that what the workbench exports opens in transformers as the right class with the same logits.
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM

model = AutoModelForCausalLM.from_pretrained(sys.argv[1], torch_dtype=torch.float32)
model.eval()
ids = torch.tensor(json.loads(sys.argv[2]), dtype=torch.long)
with torch.no_grad():
    logits = model(input_ids=ids).logits
print(json.dumps({"class": type(model).__name__, "logits": logits.reshape(-1).tolist()}))
