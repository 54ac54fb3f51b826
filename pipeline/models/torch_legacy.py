"""Read a PyTorch state dict saved in the legacy (pre-1.6) format, without PyTorch.

The file is a sequence of pickles: a magic number, a protocol version, system info, the
state dict itself (whose tensors refer to storages by key through ``persistent_load``),
the list of storage keys, and then each storage's raw bytes (an int64 element count, then
the elements, little-endian). A restricted unpickler accepts only what a state dict of
plain tensors needs — ``OrderedDict``, the tensor rebuild function and storage types — so
a weights file cannot run code.

Example:
    >>> weights = load_state_dict("efficientnet-lite0-57934424.pth")
    >>> weights["_conv_stem.weight"].shape
    (32, 3, 3, 3)
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import UserError

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001
DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
          "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
          "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class WeightsError(UserError, ValueError):
    """A weights file is missing, not a legacy PyTorch state dict, or holds something else."""


@dataclass
class _Storage:
    dtype: type
    numel: int


@dataclass
class _Tensor:
    key: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild(storage: tuple[str, _Storage], offset: int, size, stride, *_: object) -> _Tensor:
    return _Tensor(storage[0], int(offset), tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, storages: dict[str, _Storage]) -> None:
        super().__init__(f)
        self.storages = storages

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" and name in DTYPES:
            return name
        raise pickle.UnpicklingError(f"refused to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        # ("storage", storage type, key, location, element count, view metadata)
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:80]}")
        stype, key, numel = pid[1], pid[2], pid[4]
        if len(pid) == 6 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        if stype not in DTYPES:
            raise pickle.UnpicklingError(f"unexpected storage type {stype!r}")
        st = self.storages.setdefault(str(key), _Storage(DTYPES[stype], int(numel)))
        return (str(key), st)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Tensors of a legacy-format PyTorch state dict, as numpy arrays by name.

    Raises:
        WeightsError: The file is missing, of another format, or refers to code.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        with open(path, "rb") as f:
            if pickle.load(f) != MAGIC or pickle.load(f) != PROTOCOL:
                raise WeightsError(f"{path}: not a legacy PyTorch file (magic number or protocol)")
            info = pickle.load(f)
            if not isinstance(info, dict) or not info.get("little_endian", True):
                raise WeightsError(f"{path}: only little-endian files are supported")
            storages: dict[str, _Storage] = {}
            state = _Unpickler(f, storages).load()
            keys = pickle.load(f)
            raw: dict[str, np.ndarray] = {}
            for key in keys:
                st = storages[str(key)]
                (n,) = struct.unpack("<q", f.read(8))
                if n != st.numel:
                    raise WeightsError(f"{path}: storage {key} holds {n} elements, expected {st.numel}")
                nbytes = n * np.dtype(st.dtype).itemsize
                buf = f.read(nbytes)
                if len(buf) != nbytes:
                    raise WeightsError(f"{path}: truncated (storage {key})")
                raw[str(key)] = np.frombuffer(buf, dtype=st.dtype)
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, WeightsError):
            raise
        raise WeightsError(f"{path}: not a readable PyTorch state dict ({exc})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state dict")
    out: dict[str, np.ndarray] = collections.OrderedDict()
    for name, t in state.items():
        if not isinstance(t, _Tensor):
            raise WeightsError(f"{path}: {name} is not a tensor")
        buf = raw[t.key]
        item = buf.itemsize
        view = np.lib.stride_tricks.as_strided(buf[t.offset:], shape=t.size,
                                               strides=[s * item for s in t.stride])
        out[name] = np.array(view)
    return out
