"""Read a published gemcurate dataset with TensorFlow, straight from its tar shards.

What a trainer uses on a pulled version, inside gemcurate or not:

    >>> from pipeline import dataset
    >>> ds = dataset.load("~/datasets/gems", split="train", batch_size=32)   # (images, labels)
    >>> dataset.class_names("~/datasets/gems")
    ['amethyst', 'aquamarine', ...]

Nothing is unpacked to disk: the shards are streamed, every image's bytes are checked
against the sha256 in ``manifest.parquet`` (a changed or truncated shard is an error, not
a silently wrong picture), labels come from the manifest, decoding runs in parallel, and
batches are shuffled (train) and prefetched. Labels are indices into
:func:`class_names` (the sorted labels of the whole dataset, the same for every split).
"""

from __future__ import annotations

import hashlib
import logging
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.errors import UserError

logger = logging.getLogger(__name__)


class DatasetError(UserError, ValueError):
    """Not a gemcurate dataset, or a shard whose bytes do not match the manifest."""


def read_manifest(directory: str | Path) -> pd.DataFrame:
    """The dataset's ``manifest.parquet`` (one row per image: label, split, shard, member, sha256)."""
    path = Path(directory).expanduser() / "manifest.parquet"
    if not path.is_file():
        raise DatasetError(f"{path} missing: not an exported gemcurate dataset "
                           "(`gemcurate export`, or `gemcurate pull --version V --out DIR`)")
    return pd.read_parquet(path)


def class_names(directory: str | Path, manifest: pd.DataFrame | None = None) -> list[str]:
    """The dataset's classes, sorted: label index ``i`` is ``class_names(...)[i]``."""
    man = read_manifest(directory) if manifest is None else manifest
    return sorted(man["label"].astype(str).unique())


TARGETS = ("label", "caption", "attributes")
CAPTION_LEVELS = ("basic", "normal", "complete")


def targets(man: pd.DataFrame, names: list[str], target: str = "label",
            caption_level: str = "normal") -> list:
    """What each manifest row is learned against: its label's index, its caption at
    ``caption_level``, or its normalised attributes (a JSON object as text)."""
    if target == "label":
        index = {n: i for i, n in enumerate(names)}
        return [index[str(lab)] for lab in man["label"]]
    if target not in TARGETS:
        raise DatasetError(f"target {target!r}: one of {', '.join(TARGETS)}")
    if caption_level not in CAPTION_LEVELS:
        raise DatasetError(f"caption_level {caption_level!r}: one of {', '.join(CAPTION_LEVELS)}")
    col = f"caption_{caption_level}" if target == "caption" else "attributes"
    if col not in man.columns:
        raise DatasetError(f"this dataset has no {col} column: export it again with gemcurate "
                           "(captions and attributes are exported since 2026-12-07)")
    return ["" if v is None or v != v else str(v) for v in man[col]]


def records(directory: str | Path, split: str | None = None, shuffle_shards: bool = False,
            seed: int = 0, verify: bool = True, ids: set[str] | None = None,
            target: str = "label", caption_level: str = "normal"
            ) -> Iterator[tuple[str, bytes, int | str]]:
    """``(image_id, encoded bytes, target)`` of every image of ``split`` (or of ``ids``),
    shard by shard (only the shards that hold them are read). The target is the label's
    index, or with ``target="caption"`` / ``"attributes"`` text (:func:`targets`).

    Raises:
        DatasetError: A shard is missing, or an image's bytes differ from the manifest.
    """
    d = Path(directory).expanduser()
    man = read_manifest(d)
    names = class_names(d, man)
    part = man if split is None else man[man["split"] == split]
    if ids is not None:
        part = part[part["image_id"].isin(ids)]
    if not len(part):
        return
    want = {m: (iid, sha, t) for m, iid, sha, t in
            zip(part["member"], part["image_id"], part["sha256"],
                targets(part, names, target, caption_level), strict=True)}
    shards = sorted(part["shard"].unique())
    if shuffle_shards:
        random.Random(seed).shuffle(shards)
    seen = 0
    for shard in shards:
        path = d / shard
        if not path.is_file():
            raise DatasetError(f"{path}: shard missing")
        with tarfile.open(path, mode="r|") as tar:  # a stream: members in order, nothing on disk
            for member in tar:
                if member.name not in want:
                    continue
                iid, sha, label = want[member.name]
                f = tar.extractfile(member)
                data = f.read() if f is not None else b""
                if verify and hashlib.sha256(data).hexdigest() != sha:
                    raise DatasetError(f"{shard}/{member.name}: bytes differ from manifest.parquet")
                seen += 1
                yield iid, data, label
    if seen != len(want):
        raise DatasetError(f"{len(want) - seen} image(s) of split {split} not in their shards")


def load(directory: str | Path, split: str = "train", batch_size: int | None = 32,
         image_size: int | None = None, shuffle: bool | None = None, seed: int = 0,
         shuffle_buffer: int = 2048, with_ids: bool = False, verify: bool = True,
         target: str = "label", caption_level: str = "normal", ids: set[str] | None = None):
    """A ``tf.data.Dataset`` of ``(image, target)``, batched: uint8 RGB images, and the label's
    int32 index (``target="label"``), the caption (``"caption"``, at ``caption_level``: basic,
    normal or complete) or the attributes as a JSON object (``"attributes"``), as strings.

    Args:
        directory: The dataset folder (``data/dataset`` or a pulled version).
        split: ``train``, ``val`` or ``test``.
        batch_size: ``None`` for single examples.
        image_size: Resize to this square side (default: as stored, the crop size).
        shuffle: Default: only the train split.
        seed: For the shard order and the shuffle buffer.
        with_ids: Yield ``(image, label, image_id)``.
        verify: Check every image's sha256 (costs ~0.1 ms per image).
        target: ``label``, ``caption`` or ``attributes``.
        caption_level: ``basic``, ``normal`` or ``complete`` (``target="caption"``).
        ids: Only these images of the split (e.g. the photos, not the augmented variants:
            rows whose ``parent_id`` is null).

    Example:
        >>> ds = load("data/dataset", "val", batch_size=64)
        >>> images, labels = next(iter(ds))
        >>> captions = load("data/dataset", "train", target="caption", caption_level="complete")
    """
    import tensorflow as tf

    shuffle = split == "train" if shuffle is None else shuffle
    man = read_manifest(directory)
    in_split = man["split"] == split
    n = int((in_split & man["image_id"].isin(ids)).sum() if ids is not None else in_split.sum())

    if target != "label":  # a wrong target or a dataset without captions fails now
        targets(man.head(1), [], target, caption_level)

    def gen():
        yield from records(directory, split, shuffle_shards=shuffle, seed=seed, verify=verify,
                           ids=ids, target=target, caption_level=caption_level)

    kind = tf.int32 if target == "label" else tf.string
    ds = tf.data.Dataset.from_generator(gen, output_signature=(
        tf.TensorSpec((), tf.string), tf.TensorSpec((), tf.string), tf.TensorSpec((), kind)))
    ds = ds.apply(tf.data.experimental.assert_cardinality(n))  # progress bars, no "ran out" warnings
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)

    def decode(iid, data, label):
        img = tf.io.decode_image(data, channels=3, expand_animations=False)
        img.set_shape([None, None, 3])
        if image_size:
            img = tf.cast(tf.image.resize(img, (image_size, image_size), antialias=True), tf.uint8)
        return (img, label, iid) if with_ids else (img, label)

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
    if batch_size:
        ds = ds.batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


def as_arrays(directory: str | Path, split: str, image_size: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All images of ``split`` in memory: ``(images N×H×W×3 uint8, labels, image_ids)``."""
    ds = load(directory, split, batch_size=256, image_size=image_size, shuffle=False, with_ids=True)
    xs, ys, ids = [], [], []
    for x, y, i in ds.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
        ids += [v.decode() for v in i]
    if not xs:
        return np.zeros((0, image_size or 0, image_size or 0, 3), np.uint8), np.zeros(0, np.int32), []
    return np.concatenate(xs), np.concatenate(ys), ids
