#!/usr/bin/env python3
"""Check a `troupe export` directory with Hugging Face transformers (CPU).

    troupe export --model models/SmolLM2-135M-Instruct.Q4_1.gguf --out /tmp/smol-hf \
        --reference-prompt "What is the capital of France?"
    python3 scripts/check-hf-export.py /tmp/smol-hf

Loads the directory with AutoModelForCausalLM / AutoTokenizer, checks that the chat
template gives the token ids troupe used, and compares transformers' next-token
distribution with troupe's (troupe_reference.json). Exits non-zero past the tolerance.
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

TOLERANCE = 1e-3  # max |log p_transformers - log p_troupe| over the whole vocabulary

path = sys.argv[1]
ref = json.load(open(f"{path}/troupe_reference.json"))
tok = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
model.eval()

ids = tok.apply_chat_template(
    [{"role": "user", "content": ref["prompt"]}], add_generation_prompt=True
)
same_ids = list(ids) == ref["input_ids"]
print(f"chat template token ids equal troupe's: {same_ids} ({len(ids)} tokens)")
with torch.no_grad():
    logits = model(torch.tensor([ref["input_ids"]])).logits[0, -1]
lp = torch.log_softmax(logits.double(), dim=-1)
theirs = torch.tensor(ref["next_token_logprobs"], dtype=torch.float64)
diff = (lp - theirs).abs().max().item()
top_hf = int(lp.argmax())
top_troupe = int(theirs.argmax())
print(f"next-token log-probs: max |transformers - troupe| = {diff:.2e} over {lp.numel()} tokens")
print(f"argmax: transformers {top_hf} ({tok.decode([top_hf])!r}), troupe {top_troupe}")
ok = same_ids and diff < TOLERANCE and top_hf == top_troupe
print("PASS" if ok else "FAIL", f"(tolerance {TOLERANCE})")
sys.exit(0 if ok else 1)
