"""Per-epoch checkpoints of a PyTorch fit, so that a killed fit resumes at its last epoch.

A checkpoint holds everything the training loop needs to continue bit for bit: the module's and
the optimiser's state, every random state the loop uses (python ``random``, the numpy Generator,
torch's CPU and CUDA generators), the epoch number, the history so far and the early-stopping
state. What a model rebuilds from its parameters (OPECI's cached factors) is not saved.

File format (no pickle anywhere): ``MAGIC``, the sha256 of the payload in hex, a newline, then the
payload, an uncompressed ``.npz`` of raw byte arrays whose names, dtypes and shapes are listed in
a JSON document stored in the same archive. A file whose checksum does not match (truncated,
flipped bits, another format) is refused with :class:`CheckpointError`; the caller warns and
starts the fit from epoch 1. Files are written atomically (temp name, fsync, rename).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recbench.atomic import write_bytes_atomic

MAGIC = b"RECBENCH-CKPT-1\n"
FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupt or belongs to another fit."""


@dataclass
class CheckpointSpec:
    """Where and how often a fit checkpoints. ``key`` ties the file to one cell (record key);
    ``notify`` receives the one-line messages (resuming, ignoring a bad file)."""

    path: Path
    key: str
    label: str = ""
    every: int = 1
    notify: Callable[[str], None] = field(default=lambda _msg: None)

    def due(self, epoch: int, last: bool) -> bool:
        return last or epoch % max(self.every, 1) == 0


# ----------------------------------------------------------------------------- tensors as bytes


def _pack(tensors: dict[str, torch.Tensor], arrays: dict[str, np.ndarray], prefix: str) -> dict[str, Any]:
    """Store ``tensors`` as raw bytes under ``prefix.<i>``; return their index (name → spec)."""
    index = {}
    for i, (name, t) in enumerate(tensors.items()):
        t = t.detach().to("cpu").contiguous()
        slot = f"{prefix}.{i}"
        arrays[slot] = t.reshape(-1).view(torch.uint8).numpy().copy() if t.numel() else np.zeros(0, np.uint8)
        index[name] = {"slot": slot, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
    return index


def _unpack(index: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    out = {}
    for name, spec in index.items():
        dtype = getattr(torch, spec["dtype"], None)
        if not isinstance(dtype, torch.dtype):
            raise CheckpointError(f"unknown dtype {spec['dtype']!r}")
        raw = torch.from_numpy(np.ascontiguousarray(arrays[spec["slot"]]))
        out[name] = (raw.view(dtype) if raw.numel() else torch.zeros(0, dtype=dtype)).reshape(spec["shape"]).clone()
    return out


def encode(meta: dict[str, Any], tensors: dict[str, dict[str, torch.Tensor]]) -> bytes:
    """The file's bytes: ``tensors`` is a dict of named groups of tensors."""
    arrays: dict[str, np.ndarray] = {}
    index = {group: _pack(ts, arrays, group) for group, ts in tensors.items()}
    doc = {"format": FORMAT, "meta": meta, "index": index}
    arrays["__doc__"] = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    payload = buf.getvalue()
    return MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def decode(blob: bytes) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """``(meta, tensor groups)``; :class:`CheckpointError` on any damage."""
    head = len(MAGIC) + 65
    if not blob.startswith(MAGIC) or len(blob) < head or blob[head - 1 : head] != b"\n":
        raise CheckpointError("not a recbench checkpoint (bad header)")
    digest, payload = blob[len(MAGIC) : head - 1].decode("ascii", "replace"), blob[head:]
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError("checksum mismatch (truncated or modified)")
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        doc = json.loads(arrays.pop("__doc__").tobytes().decode())
        if doc.get("format") != FORMAT:
            raise CheckpointError(f"format {doc.get('format')} (this recbench reads {FORMAT})")
        groups = {g: _unpack(idx, arrays) for g, idx in doc["index"].items()}
    except CheckpointError:
        raise
    except Exception as e:  # a checksummed file of another layout
        raise CheckpointError(f"unreadable ({type(e).__name__}: {e})") from None
    return doc["meta"], groups


def write(path: Path, meta: dict[str, Any], tensors: dict[str, dict[str, torch.Tensor]]) -> None:
    write_bytes_atomic(path, encode(meta, tensors))


def read(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read ({e.strerror})") from None
    return decode(blob)


# ----------------------------------------------------------------------------- random states


def rng_states(rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Every random state a fit uses: ``(JSON part, tensor part)``."""
    version, internal, gauss = random.getstate()
    meta = {"numpy": rng.bit_generator.state, "python": [version, list(internal), gauss]}
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    return meta, tensors


def set_rng_states(rng: np.random.Generator, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    rng.bit_generator.state = meta["numpy"]
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(tensors["torch_cpu"])
    cuda_keys = sorted((k for k in tensors if k.startswith("torch_cuda_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    cuda = [tensors[k] for k in cuda_keys]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


# ----------------------------------------------------------------------------- optimiser state


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """An optimiser's ``state_dict`` as (JSON part, flat tensors)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        plain[str(pid)] = {}
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}/{name}"] = v
            else:
                plain[str(pid)][name] = v
    return {"param_groups": sd["param_groups"], "plain": plain}, tensors


def load_optimizer_state(opt: torch.optim.Optimizer, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, Any]] = {int(pid): dict(v) for pid, v in meta["plain"].items()}
    for k, t in tensors.items():
        pid, name = k.split("/", 1)
        state.setdefault(int(pid), {})[name] = t
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    opt.load_state_dict({"state": state, "param_groups": groups})
