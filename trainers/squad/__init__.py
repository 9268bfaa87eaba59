"""SQuAD v1.1: data, features, span model, post-processing, metrics, the generated
cloze task and the fine-tuning task."""
