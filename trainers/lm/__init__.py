"""The causal language-model trainer's parts (`python -m trainers.causal_lm`):
model.py (a GPT-2-style decoder from KerasHub), data.py (splits, tokenizers,
next-token sequences, the resumable pipelines), task.py (the `Task`), flags.py."""
