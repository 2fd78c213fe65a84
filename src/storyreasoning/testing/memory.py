"""Measuring the memory a piece of PyTorch code allocates, on any device, deterministically.

CUDA has ``torch.cuda.max_memory_allocated``; the CPU has no allocator statistics, and
process-level measures (RSS, tracemalloc) are blurred by the allocator's caching and by
Python's own objects. :class:`MemoryMeter` counts instead what the code itself creates:
while it is active, every tensor an operator returns is looked at, its storage counted
once (views and in-place results share their storage) and uncounted when the storage is
freed. ``peak`` is then the most bytes of storages created under the meter alive at any
moment: the same quantity ``max_memory_allocated`` measures on a GPU (after a reset),
without the allocator's rounding, and the same from one run to the next.

Tensors that existed before the meter started (the weights) are not counted; gradients,
optimiser states, activations and every temporary of the forward and backward passes are.
torch is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import weakref
from typing import Any


def memory_meter(device: str | None = None) -> Any:
    """A new :class:`MemoryMeter` context manager (made on demand: the class needs torch)."""
    return _meter_class()(device)


_CLASS: list[type] = []


def _meter_class() -> type:
    if _CLASS:
        return _CLASS[0]
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class MemoryMeter(TorchDispatchMode):
        """Live and peak bytes of the tensor storages created while active (see the module docstring).

        ``device`` limits the count to one device type (``"cpu"``, ``"cuda"``); None counts all.
        ``reset_peak()`` makes the peak the bytes alive now, as ``torch.cuda.reset_peak_memory_stats``.
        """

        def __init__(self, device: str | None = None) -> None:
            super().__init__()
            self.device = device
            self.live = 0
            self.peak = 0
            self._alive: dict[int, int] = {}  # storage id -> bytes

        def reset_peak(self) -> None:
            self.peak = self.live

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            # views and in-place results of the tensors the op was given allocate nothing (the
            # storages are held here, so that no id is reused while it is compared)
            given = {
                id(s): s
                for s in (
                    t.untyped_storage()
                    for t in tree_flatten((args, kwargs))[0]
                    if isinstance(t, torch.Tensor) and t.device.type != "meta"
                )
            }
            for tensor in tree_flatten(out)[0]:
                if isinstance(tensor, torch.Tensor):
                    self._track(tensor, given)
            return out

        def _track(self, tensor, given: dict) -> None:
            if tensor.device.type == "meta" or (self.device and tensor.device.type != self.device):
                return
            storage = tensor.untyped_storage()
            size = storage.nbytes()
            key = id(storage)
            if size == 0 or key in self._alive or key in given:
                return
            self._alive[key] = size
            self.live += size
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._free, key)

        def _free(self, key: int) -> None:
            self.live -= self._alive.pop(key, 0)

    _CLASS.append(MemoryMeter)
    return MemoryMeter


def saved_activation_bytes(fn, *args, exclude=(), **kwargs) -> tuple[Any, int]:
    """``(fn(*args, **kwargs), bytes)``: the distinct storages autograd saves for the backward pass while ``fn`` runs.

    Storages of the tensors in ``exclude`` (parameters, inputs) are not counted.
    """
    import torch

    skip = {t.untyped_storage().data_ptr() for t in exclude}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in skip:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = fn(*args, **kwargs)
    return result, sum(saved.values())


__all__ = ["memory_meter", "saved_activation_bytes"]
