"""The trainer's models: Keras' ResNet50 and a CIFAR-style ResNet (He et al. 2016, sec. 4.2).

`cifar_resnet(depth)` is the paper's 6n+2-layer network for small images: a
3x3 convolution with 16 filters, three stages of n basic blocks (two 3x3
convolutions each) with 16, 32 and 64 filters, the second and third starting
with stride 2, global average pooling and a dense layer: ResNet-20 has n = 3.
Shortcuts that change shape are 1x1 convolutions with batch norm (the paper's
option B; its CIFAR runs use option A, zero-padding, with 0.27M parameters).
Both models return logits.

`sync_batch_norm=True` (`--sync_batch_norm`, Model Garden's `use_sync_bn`) makes
every batch-norm layer `BatchNormalization(synchronized=True)`: under a
tf.distribute strategy its batch mean and variance are all-reduced over all
replicas (of all workers), so N replicas normalise with the global batch's
statistics, as one device would. Without it each replica normalises with its
own share's statistics. ResNet50's layers are rebuilt synchronized by cloning.
"""

import keras

from trainers.common.errors import TrainerError

MODELS = ("resnet50", "resnet8", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110")


def _conv(filters, kernel, strides, name):
    return keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                               kernel_initializer="he_normal", name=name)


def _basic_block(x, filters, strides, name, bn):
    shortcut = x
    y = _conv(filters, 3, strides, f"{name}_conv1")(x)
    y = keras.layers.ReLU(name=f"{name}_relu1")(bn(f"{name}_bn1")(y))
    y = bn(f"{name}_bn2")(_conv(filters, 3, 1, f"{name}_conv2")(y))
    if strides != 1 or x.shape[-1] != filters:
        shortcut = bn(f"{name}_proj_bn")(_conv(filters, 1, strides, f"{name}_proj")(x))
    return keras.layers.ReLU(name=f"{name}_out")(keras.layers.Add(name=f"{name}_add")([y, shortcut]))


def cifar_resnet(depth, input_shape, num_classes, sync_batch_norm=False):
    if depth < 8 or (depth - 2) % 6:
        raise TrainerError(f"a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, 110), got {depth}")
    n = (depth - 2) // 6

    def bn(name):
        return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name,
                                               synchronized=sync_batch_norm)

    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.ReLU(name="stem_relu")(bn("stem_bn")(_conv(16, 3, 1, "stem_conv")(inputs)))
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(n):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, filters, strides, f"stage{stage + 1}_block{block + 1}", bn)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=f"resnet{depth}")


def synchronized_batch_norm(model):
    """A clone of the functional `model` whose BatchNormalization layers are
    synchronized (same configuration otherwise; fresh weights)."""
    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.BatchNormalization):
            config["synchronized"] = True
        return layer.__class__.from_config(config)

    inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype,
                         name=model.layers[0].name)
    clone_ = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone)
    return keras.Model(clone_.inputs, clone_.outputs, name=model.name)


def build(name, image_size, channels, num_classes, sync_batch_norm=False):
    """A `keras.Model` from images [B, S, S, C] to float logits [B, num_classes]."""
    shape = (image_size, image_size, channels)
    if name == "resnet50":
        if image_size < 32:
            raise TrainerError(f"--model=resnet50 needs --image_size >= 32, got {image_size}")
        model = keras.applications.ResNet50(weights=None, input_shape=shape, classes=num_classes,
                                            classifier_activation=None)
        return synchronized_batch_norm(model) if sync_batch_norm else model
    if name.startswith("resnet") and name[len("resnet"):].isdigit():
        return cifar_resnet(int(name[len("resnet"):]), shape, num_classes, sync_batch_norm)
    raise TrainerError(f"unknown --model={name!r}; choose one of {', '.join(MODELS)}")
