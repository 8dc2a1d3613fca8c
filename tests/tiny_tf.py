"""A tiny TF SavedModel written by TensorFlow itself, shared by the TF-Hub and Kaggle tests."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

RESOLUTION = 32


def save_tiny_feature_vector(folder: Path) -> Any:
    """Save a conv + ReLU + mean-pool feature-vector model (32 x 32 RGB in, 8 features out) to ``folder``.

    Returns the live ``tf.Module``, whose direct call is the reference for the loaded copies.
    """
    from zooprobe.backbones.tf_backbone import import_tensorflow

    tf = import_tensorflow()

    class Tiny(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.kernel = tf.Variable(tf.random.stateless_normal((3, 3, 3, 8), seed=(1, 2)))

        @tf.function(input_signature=[tf.TensorSpec([None, RESOLUTION, RESOLUTION, 3], tf.float32)])
        def __call__(self, images: Any) -> Any:
            return tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(images, self.kernel, 2, "SAME")), axis=(1, 2))

    module = Tiny()
    tf.saved_model.save(module, str(folder))
    return module


def tar_gz(folder: Path) -> bytes:
    """The folder's contents as the compressed archive TF-Hub serves for ``?tf-hub-format=compressed``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(folder.rglob("*")):
            archive.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return buffer.getvalue()


def save_file_writing_model(folder: Path, marker: Path) -> None:
    """Save a SavedModel whose function writes ``marker`` (``tf.io.write_file``) each time it is called,
    then returns 8 features of a 32 x 32 RGB batch: what a hostile TF-Hub or Kaggle upload could do."""
    from zooprobe.backbones.tf_backbone import import_tensorflow

    tf = import_tensorflow()

    class Writer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, RESOLUTION, RESOLUTION, 3], tf.float32)])
        def __call__(self, images: Any) -> Any:
            with tf.control_dependencies([tf.io.write_file(str(marker), "written by the model's graph")]):
                return tf.tile(tf.reduce_mean(images, axis=(1, 2)), [1, 3])[:, :8]

    tf.saved_model.save(Writer(), str(folder))
