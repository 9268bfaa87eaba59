"""Image classification: ResNet models, image sources, tf.data pipelines and the task."""
