"""The span head: a BERT backbone's token outputs -> start and end logits.

KerasHub has no question-answering head, so this is BERT's own: one dense
layer of two units over the final hidden states (initialised with
TruncatedNormal(0.02) like the backbone), computed in float32. Positions
outside the padding mask get a large negative logit.
"""

import keras

INPUTS = ("token_ids", "segment_ids", "padding_mask")


def build_span_model(backbone, seq_length):
    inputs = {
        "token_ids": keras.Input(shape=(seq_length,), dtype="int32", name="token_ids"),
        "segment_ids": keras.Input(shape=(seq_length,), dtype="int32", name="segment_ids"),
        "padding_mask": keras.Input(shape=(seq_length,), dtype="bool", name="padding_mask"),
    }
    hidden = backbone(inputs)["sequence_output"]
    logits = keras.layers.Dense(
        2, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        dtype="float32", name="span_logits")(hidden)
    mask = keras.ops.cast(inputs["padding_mask"], "float32")
    start = logits[..., 0] + (1.0 - mask) * -1e4
    end = logits[..., 1] + (1.0 - mask) * -1e4
    return keras.Model(inputs, {"start_logits": start, "end_logits": end}, name="bert_span")
