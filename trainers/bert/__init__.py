"""BERT: model sizes and export, the masked-LM data (masking, segments, pipelines),
its flags and the pretraining task."""
