"""Shared training machinery: threads and seeds, torchrun/DDP context, resumable train state, LR schedule,
validation split and the epoch loop of both stages (:func:`fit`).

Train state (for resuming) is written as ``<stem>.safetensors`` (model, best model and optimiser tensors) plus
``<stem>.json`` (epoch, step, early-stopping counters, history, optimiser hyper-parameters, run config):
never pickle.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._logs import logger
from ..errors import CheckpointError, DataError

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
    "ResumableConfig",
    "state_path",
    "split_validation",
    "TrainingInterrupted",
    "fit",
]

_STATE_FORMAT = "vibe-rt-train-state/1"
# options that may change between a run and its resumption
_RESUMABLE_CHANGES = ("epochs", "patience", "max_minutes", "progress")


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


def epoch_indices(n: int, *, seed: int, epoch: int, ctx: DistContext) -> np.ndarray:
    """Sample order of one epoch for this rank.

    Single process: a permutation seeded by ``(seed, epoch)`` (so a resumed run sees the same order).
    Distributed: :class:`torch.utils.data.DistributedSampler` with the same seed and ``set_epoch(epoch)``.
    """
    if ctx.distributed:
        from torch.utils.data import DistributedSampler

        sampler: DistributedSampler[int] = DistributedSampler(
            range(n),  # type: ignore[arg-type]  # any Sized works: the sampler only takes its len()
            num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed, drop_last=False)
        sampler.set_epoch(epoch)
        return np.fromiter(iter(sampler), dtype=np.int64)
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
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


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


def _stem(path: str | Path) -> Path:
    """``path`` without a ``.json``/``.safetensors`` suffix."""
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".json", ".safetensors") else path


def _state_files(path: str | Path) -> tuple[Path, Path]:
    """The ``(<stem>.safetensors, <stem>.json)`` pair of a train state."""
    stem = _stem(path)
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def state_path(out: str | Path) -> Path:
    """Where the resumable train state of checkpoint ``out`` lives (``<stem>.state.*``)."""
    stem = _stem(out)
    return stem.with_name(stem.name + ".state")


def split_validation(n_images: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of image indices into (train, validation); at least one image in each."""
    if n_images < 2:
        raise DataError(f"need at least 2 training images for a validation split, got {n_images}")
    n_val = min(n_images - 1, max(1, int(round(n_images * fraction))))
    perm = np.random.default_rng(seed).permutation(n_images)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def save_train_state(path: str | Path, model: nn.Module, opt: torch.optim.Optimizer, state: TrainState) -> Path:
    """Write ``<stem>.safetensors`` + ``<stem>.json`` atomically (temporary files, then rename).

    Returns
    -------
    Path
        The JSON path.
    """
    from safetensors.torch import save_file

    st_path, js_path = _state_files(path)
    st_path.parent.mkdir(parents=True, exist_ok=True)
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

    st_path, js_path = _state_files(path)
    if not js_path.exists() or not st_path.exists():
        return None
    try:
        meta = json.loads(js_path.read_text())
        tensors = load_file(str(st_path))
    except Exception as err:  # noqa: BLE001 - any corruption is reported the same way
        raise CheckpointError(f"cannot read train state {_stem(path)}: {err}; delete it to start from scratch") from err
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


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C inside :func:`fit` after at least one finished epoch.

    The best weights so far are loaded into the model; ``state`` holds the counters and history of the
    finished epochs (the resumable train state on disk is that of the last finished epoch). A training stage
    sets ``result`` to its best-so-far result, saves it as its normal checkpoint marked as interrupted, and
    re-raises: the command still exits as interrupted (130).
    """

    def __init__(self, state: TrainState) -> None:
        super().__init__(f"training interrupted after {state.epoch} epochs (best epoch {state.best_epoch})")
        self.state = state
        self.result: Any = None


class ResumableConfig:
    """Base of the stage configs (dataclasses): which of their options a resumed run must share.

    A stage config also provides the options that :func:`fit` reads: ``epochs``, ``batch_size``, ``lr``,
    ``weight_decay``, ``warmup_steps``, ``seed``, ``patience``, ``max_minutes`` and ``progress``.
    """

    def resume_key(self) -> dict[str, Any]:
        """The options that must match for a run to resume another (all but epochs, patience, time, progress)."""
        d = asdict(self)  # type: ignore[call-overload]
        for k in _RESUMABLE_CHANGES:
            d.pop(k)
        return d


def fit(
    model: nn.Module,
    cfg: Any,
    *,
    name: str,
    ctx: DistContext,
    key: dict[str, Any],
    n_samples: int,
    train_step: Callable[..., dict[str, torch.Tensor]],
    validate: Callable[[nn.Module], dict[str, float]],
    criterion: Callable[[dict[str, float]], float],
    min_delta: float,
    state_file: str | Path | None = None,
    resume: bool = True,
    stop_after: int | None = None,
    started: float | None = None,
) -> TrainState:
    """The epoch loop of both training stages: AdamW, LR schedule, early stopping, resumable state.

    Every epoch: seed torch (dropout/sampling noise) and a generator from ``(cfg.seed, epoch, rank)``, go over
    the ``n_samples`` training samples in :func:`epoch_indices` order in batches of ``cfg.batch_size``
    (``train_step`` computes the loss), validate, keep the best weights (lowest ``criterion``), stop early
    after ``cfg.patience`` epochs without an improvement larger than ``min_delta`` or past
    ``cfg.max_minutes``, and (rank 0) save the train state. The best weights are loaded into ``model`` on return.

    Parameters
    ----------
    model : nn.Module
        The (unwrapped) model to train, on ``ctx.device``; wrapped in DDP when distributed.
    cfg : ResumableConfig
        The stage's options (see :class:`ResumableConfig`).
    name : str
        For log messages (``"stage 1"``).
    ctx : DistContext
        Process context.
    key : dict
        Run identity stored with the state; resuming with another key is refused.
    n_samples : int
        Training samples per epoch (before splitting over ranks).
    train_step : callable
        ``train_step(model, positions, *, epoch, batch, step, rng) -> {"loss": ..., <term>: ...}`` with the
        (possibly DDP-wrapped) model, the sample positions of the batch, the epoch, the batch number in the
        epoch, the global optimiser step and the epoch's generator; returns scalar tensors, ``"loss"`` first.
    validate : callable
        ``validate(model) -> {name: score}`` on the unwrapped model.
    criterion : callable
        Validation scores -> the number to minimise for early stopping.
    min_delta : float
        Smallest decrease of ``criterion`` counted as an improvement.
    state_file : path | None
        Stem of the resumable train state (None: none).
    resume : bool
        Continue from ``state_file`` when it exists.
    stop_after : int | None
        Return after this many epochs of this call, without marking the run finished.
    started : float | None
        ``time.perf_counter()`` at the start of the run, for ``cfg.max_minutes`` (None: now).

    Returns
    -------
    TrainState
        Counters, history (one record per epoch) and best weights.

    Raises
    ------
    TrainingInterrupted
        On Ctrl-C after at least one finished epoch (the best weights are in ``model``).
    """
    started = time.perf_counter() if started is None else started
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = None
    if resume and state_file is not None:
        state = load_train_state(state_file, model, opt, config=key)
        if state is not None:
            logger.info("%s: resuming from %s (epoch %d, step %d)", name, state_file, state.epoch, state.step)
    state = state or TrainState(config=key)
    wrapped = ctx.wrap(model)
    steps_per_epoch = -(-len(epoch_indices(n_samples, seed=cfg.seed, epoch=0, ctx=ctx)) // cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    try:
        _epochs(model, wrapped, opt, cfg, state, name=name, ctx=ctx, n_samples=n_samples, train_step=train_step,
                validate=validate, criterion=criterion, min_delta=min_delta, total_steps=total_steps,
                state_file=state_file, stop_after=stop_after, started=started)
    except KeyboardInterrupt:
        if state.best_model is None:  # not one epoch finished: nothing to keep
            raise
        model.load_state_dict(state.best_model)
        raise TrainingInterrupted(state) from None
    if state.best_model is not None:
        model.load_state_dict(state.best_model)
    return state


def _epochs(model: nn.Module, wrapped: nn.Module, opt: torch.optim.Optimizer, cfg: Any, state: TrainState, *,
            name: str, ctx: DistContext, n_samples: int, train_step: Callable[..., dict[str, torch.Tensor]],
            validate: Callable[[nn.Module], dict[str, float]], criterion: Callable[[dict[str, float]], float],
            min_delta: float, total_steps: int, state_file: str | Path | None, stop_after: int | None,
            started: float) -> None:
    """The epochs of :func:`fit` (``state`` is updated in place after each one)."""
    from tqdm.auto import tqdm

    first_epoch = state.epoch
    while not state.done and state.epoch < cfg.epochs:
        if stop_after is not None and state.epoch - first_epoch >= stop_after:
            break
        epoch = state.epoch
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed * 1009 + epoch * 31 + ctx.rank)
        rng = torch.Generator().manual_seed(cfg.seed * 7919 + epoch * 100_003 + ctx.rank)
        order = epoch_indices(n_samples, seed=cfg.seed, epoch=epoch, ctx=ctx)
        wrapped.train()
        sums: dict[str, float] = {}
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"{name} epoch {epoch + 1}/{cfg.epochs}",
                   leave=False, disable=not (cfg.progress and ctx.is_main))
        for j, start in enumerate(bar):
            lr = lr_at(state.step, base_lr=cfg.lr, total_steps=total_steps, warmup_steps=cfg.warmup_steps)
            for group in opt.param_groups:
                group["lr"] = lr
            terms = train_step(wrapped, order[start : start + cfg.batch_size], epoch=epoch, batch=j,
                               step=state.step, rng=rng)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            state.step += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.set_postfix({k: f"{float(v.detach()):.4g}" for k, v in terms.items() if k != "loss"})
        n_b = max(1, j + 1)
        # every rank takes the same early-stopping and time-limit decisions: scores and elapsed time are the
        # means over ranks (their BatchNorm statistics and clocks differ slightly; a rank that stopped alone
        # would leave the others blocked in the next all-reduce)
        val = {k: ctx.all_reduce_mean(v) for k, v in validate(model).items()}
        rec = {"epoch": epoch + 1, **{k: ctx.all_reduce_mean(v / n_b) for k, v in sums.items()}, **val,
               "lr": lr, "seconds": time.perf_counter() - t0}
        state.history.append(rec)
        state.epoch += 1
        score = criterion(val)
        if score < state.best_val - min_delta:
            state.best_val, state.best_epoch, state.bad_epochs = score, epoch + 1, 0
            state.best_model = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state.bad_epochs += 1
        logger.info("%s epoch %d: loss %.4f (%s) | %s | lr %.2e | %.1f s%s", name, epoch + 1, rec["loss"],
                    ", ".join(f"{k} {rec[k]:.4g}" for k in sums if k != "loss"),
                    ", ".join(f"{k} {v:.4g}" for k, v in val.items()), lr, rec["seconds"],
                    " *" if state.best_epoch == epoch + 1 else "")
        if state.bad_epochs >= cfg.patience:
            logger.info("%s: early stop (no improvement for %d epochs)", name, cfg.patience)
            state.done = True
        elif cfg.max_minutes is not None and ctx.all_reduce_mean(time.perf_counter() - started) / 60 > cfg.max_minutes:
            logger.info("%s: stopping after %.1f min (max_minutes)", name, cfg.max_minutes)
            state.done = True
        if state_file is not None and ctx.is_main:
            save_train_state(state_file, model, opt, state)
