"""Shared training machinery: threads and seeds, torchrun/DDP context, resumable train state, LR schedule.

Train state (for resuming) is written as ``<stem>.safetensors`` (model, best model and optimiser tensors) plus
``<stem>.json`` (epoch, step, early-stopping counters, history, optimiser hyper-parameters, run config):
never pickle.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._logs import logger
from ..errors import CheckpointError

__all__ = [
    "DistContext",
    "setup_torch",
    "init_distributed",
    "epoch_indices",
    "lr_at",
    "TrainState",
    "save_train_state",
    "load_train_state",
    "unwrap",
]

_STATE_FORMAT = "vibe-rt-train-state/1"


def setup_torch(threads: int | None = None, seed: int | None = None) -> None:
    """Set the intra-op thread count (default: ``VIBE_RT_THREADS`` or 2) and seed torch and numpy."""
    if threads is None:
        threads = int(os.environ.get("VIBE_RT_THREADS", "2"))
    torch.set_num_threads(max(1, int(threads)))
    if seed is not None:
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)


@dataclass
class DistContext:
    """Where this process sits in a (possibly single-process) run.

    Attributes
    ----------
    rank, world_size, local_rank : int
        From torchrun's environment variables (0, 1, 0 without torchrun).
    device : torch.device
        ``cuda:<local_rank>`` when CUDA is available, else CPU.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the one that logs and writes files)."""
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """Wrap ``model`` in DistributedDataParallel when distributed; else return it unchanged."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def all_reduce_mean(self, value: float) -> float:
        """Mean of a scalar over ranks (identity when not distributed)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def barrier(self) -> None:
        """Synchronise ranks (no-op when not distributed)."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


def init_distributed(device: str | None = None) -> DistContext:
    """Read torchrun's environment; start a process group when ``WORLD_SIZE > 1``.

    Parameters
    ----------
    device : str | None
        ``"cpu"``, ``"cuda"`` or None (CUDA when available).

    Returns
    -------
    DistContext
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        if rank != 0:
            logger.setLevel("WARNING")
    return DistContext(rank=rank, world_size=world, local_rank=local, device=dev)


def epoch_indices(n: int, *, seed: int, epoch: int, ctx: DistContext, shuffle: bool = True) -> np.ndarray:
    """Sample order of one epoch for this rank.

    Single process: a permutation seeded by ``(seed, epoch)`` (so a resumed run sees the same order).
    Distributed: :class:`torch.utils.data.DistributedSampler` with the same seed and ``set_epoch(epoch)``.
    """
    if ctx.distributed:
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(
            range(n), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed, drop_last=False
        )
        sampler.set_epoch(epoch)
        return np.fromiter(iter(sampler), dtype=np.int64)
    if not shuffle:
        return np.arange(n)
    g = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
    return torch.randperm(n, generator=g).numpy()


def lr_at(step: int, *, base_lr: float, total_steps: int, warmup_steps: int, min_ratio: float = 0.05) -> float:
    """Linear warm-up then cosine decay to ``min_ratio * base_lr`` (a pure function of the step)."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    frac = min(1.0, (step - warmup_steps) / span)
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return model.module if hasattr(model, "module") else model


@dataclass
class TrainState:
    """Everything needed to resume: epoch/step counters, early stopping, history, and the tensors."""

    epoch: int = 0
    step: int = 0
    best_val: float = float("inf")
    best_epoch: int = -1
    bad_epochs: int = 0
    done: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    best_model: dict[str, torch.Tensor] | None = None


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim.{pid}.{key}"] = val.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = val
    meta = {"param_groups": sd["param_groups"], "scalars": scalars}
    return tensors, meta


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        if not name.startswith("optim."):
            continue
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = val
    for pid, sc in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(sc)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_train_state(path: str | Path, model: nn.Module, opt: torch.optim.Optimizer, state: TrainState) -> Path:
    """Write ``<stem>.safetensors`` + ``<stem>.json`` atomically (temporary files, then rename).

    Returns
    -------
    Path
        The JSON path.
    """
    from safetensors.torch import save_file

    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    if state.best_model is not None:
        tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in state.best_model.items()})
    opt_t, opt_meta = _optimizer_tensors(opt)
    tensors.update(opt_t)
    meta = {
        "format": _STATE_FORMAT,
        "epoch": state.epoch,
        "step": state.step,
        "best_val": state.best_val if math.isfinite(state.best_val) else None,
        "best_epoch": state.best_epoch,
        "bad_epochs": state.bad_epochs,
        "done": state.done,
        "history": state.history,
        "config": state.config,
        "optimizer": opt_meta,
    }
    st_path = stem.with_name(stem.name + ".safetensors")
    js_path = stem.with_name(stem.name + ".json")
    save_file(tensors, str(st_path) + ".tmp")
    os.replace(str(st_path) + ".tmp", st_path)
    js_path.with_name(js_path.name + ".tmp").write_text(json.dumps(meta, indent=1))
    os.replace(js_path.with_name(js_path.name + ".tmp"), js_path)
    return js_path


def load_train_state(
    path: str | Path, model: nn.Module, opt: torch.optim.Optimizer, *, config: dict[str, Any] | None = None
) -> TrainState | None:
    """Restore model, optimiser and counters from :func:`save_train_state` files; None if there are none.

    Raises
    ------
    CheckpointError
        If the files are unreadable or were written with a different run configuration (``config``).
    """
    from safetensors.torch import load_file

    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    st_path = stem.with_name(stem.name + ".safetensors")
    js_path = stem.with_name(stem.name + ".json")
    if not js_path.exists() or not st_path.exists():
        return None
    try:
        meta = json.loads(js_path.read_text())
        tensors = load_file(str(st_path))
    except Exception as err:  # noqa: BLE001 - any corruption is reported the same way
        raise CheckpointError(f"cannot read train state {stem}: {err}; delete it to start from scratch") from err
    if meta.get("format") != _STATE_FORMAT:
        raise CheckpointError(f"{js_path} is not a vibe-rt train state; delete it to start from scratch")
    if config is not None:
        diff = sorted(k for k in set(config) | set(meta["config"]) if config.get(k) != meta["config"].get(k))
        if diff:
            raise CheckpointError(
                f"train state {js_path} was written with different settings ({', '.join(diff)}); "
                "use the same options to resume, or pass --no-resume / delete it to start from scratch"
            )
    unwrap(model).load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    _restore_optimizer(opt, tensors, meta["optimizer"])
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    return TrainState(
        epoch=meta["epoch"],
        step=meta["step"],
        best_val=float("inf") if meta["best_val"] is None else meta["best_val"],
        best_epoch=meta["best_epoch"],
        bad_epochs=meta["bad_epochs"],
        done=meta["done"],
        history=meta["history"],
        config=meta["config"],
        best_model=best,
    )
