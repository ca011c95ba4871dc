"""Golden chat-template renderings for test/fixtures/templates/*.json: transformers apply_chat_template of each conversation, as text and ids.

    python gen_templates.py TOKENIZER_FOLDER > test/fixtures/templates/NAME.json
"""
import json, sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
convs = {
  "single": [{"role": "user", "content": "What is the capital of France?"}],
  "system": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
  "multi_turn": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Fine, thanks."}],
  "think_last": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"}],
  "think_history": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"}, {"role": "user", "content": "and 3+3?"}],
  "think_two_answers": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4"}, {"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "<think>\nadd again\n</think>\n\n6"}],
  "unicode": [{"role": "user", "content": "你好 😀\ttab"}, {"role": "assistant", "content": "世界 🚀"}],
}
out = {"generator": f"transformers {__import__('transformers').__version__} AutoTokenizer.apply_chat_template(tokenize=False)", "cases": []}
for name, msgs in convs.items():
    for gen in [False, True]:
        if gen and msgs[-1]["role"] == "assistant":
            continue
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
        ids = tok.encode(text, add_special_tokens=False)
        out["cases"].append({"name": name, "messages": msgs, "add_generation_prompt": gen, "text": text, "ids": list(ids)})
print(json.dumps(out, ensure_ascii=False, indent=1))
