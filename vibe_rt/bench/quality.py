"""Quality: how well do the embedded default model and any given checkpoint predict held-out responses, compared
with the ridge baseline and the noise ceiling?

Each model is scored with the training evaluation (:func:`vibe_rt.training.pipeline.evaluate_checkpoint`, the
THINGS-EEG2 encoding protocol of :mod:`vibe_rt.training.evaluate`): the headline ``r`` is the mean over
channels x time of the Pearson r across test images between the predicted epochs and the measured epochs
averaged over a random half of the repetitions (100 seeded splits, averaged). The peer is a ridge regression
from the same model's image features, fitted on the training split (``ridge_<features>``). Also reported: r per
image, the split-half noise ceiling (lower/upper) on the same splits, and the stage-1 reconstruction r.

Data: ``data`` (a dataset folder with ``test/`` and ``train/``), else a dataset simulated like the one the
checkpoint records it was trained on but from a fresh seed (the recorded seed + ``TEST_SEED_OFFSET``: images and
noise the model never saw; simulated once into a cache folder). The ridge peer is fitted on that dataset's own
training split, of the same size as the model's. ``quick`` scores a
smaller simulated set with 20 splits: a smoke check, not a headline number.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from .._logs import logger
from ..errors import CheckpointError, DataError
from .common import load_average, result_path, write_result

NAME = "quality"
_QUICK_SIM = {"n_train": 300, "train_reps": 2, "n_test": 50, "test_reps": 12}


def models_to_score(models: list[str | Path] | None = None, *, include_default: bool = True
                    ) -> list[tuple[str, Path]]:
    """(name, checkpoint path) of the embedded default (when present) and each given checkpoint.

    Raises
    ------
    CheckpointError
        When there is nothing to score: no embedded default and no ``models``.
    """
    from ..checkpoint import checkpoint_paths, default_checkpoint_path

    out: list[tuple[str, Path]] = []
    default = default_checkpoint_path()
    weights, doc = checkpoint_paths(default)
    have_default = weights.is_file() and doc.is_file()
    if include_default and have_default:
        out.append(("vibe-default", weights))
    for m in models or []:
        w, d = checkpoint_paths(m)
        if not (w.is_file() and d.is_file()):
            raise CheckpointError(f"checkpoint {m} not found (need {w.name} and {d.name}); pass the path of a "
                                  "checkpoint written by `vibe-rt train`")
        out.append((Path(w).stem, w))
    if not out:
        raise CheckpointError(f"no model to score: the embedded default model ({weights.name}) is missing from "
                              "this installation and no --model was given; regenerate the default with "
                              "`vibe-rt train default` or pass --model PATH")
    return out


def simulated_data(doc: dict[str, Any], *, quick: bool = False, cache: str | Path | None = None) -> Path:
    """A dataset like the one a checkpoint was trained on (its ``dataset`` record) from a fresh seed (the
    recorded one + ``TEST_SEED_OFFSET``), simulated once into ``cache`` (default ``<tmp>/vibe-rt-bench-data``) and
    reused; ``quick`` shrinks it."""
    from ..data.simulate import SimulationConfig, simulate_dataset
    from ..training.default import TEST_SEED_OFFSET

    record = dict(doc.get("extra", {}).get("dataset") or doc.get("dataset") or {})
    if not record:
        raise DataError("the checkpoint does not record the dataset it was trained on; pass --data DIR (a folder "
                        "with test/ and train/ splits, e.g. from `vibe-rt data simulate`)")
    fields = set(SimulationConfig.__dataclass_fields__)
    sim = {k: v for k, v in record.items() if k in fields}
    sim["seed"] = int(sim.get("seed", 0)) + TEST_SEED_OFFSET
    if quick:
        sim.update(_QUICK_SIM)
    key = hashlib.sha256(json.dumps(sim, sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(cache or Path(tempfile.gettempdir()) / "vibe-rt-bench-data") / key
    if not (folder / "test" / "dataset.json").is_file() or not (folder / "train" / "dataset.json").is_file():
        logger.info("simulating the evaluation dataset %s into %s (once)", sim, folder)
        simulate_dataset(SimulationConfig(**sim), folder)
    return folder


def plot(path: Path, scored: dict[str, Any]) -> Path:
    """Headline r of each model and its ridge peer, with the noise ceiling band."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names, values, ceilings = [], [], []
    for model, rep in scored.items():
        if "error" in rep:
            continue
        for sub, r in rep["r"].items():
            names.append(f"{model}\n{sub}")
            values.append(r)
            ceilings.append((rep["noise_ceiling"]["lower"], rep["noise_ceiling"]["upper"]))
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(names) + 1), 3.6))
    x = range(len(names))
    ax.bar(x, values, color=["C0" if "ridge" not in n else "0.6" for n in names])
    for i, (lo, hi) in enumerate(ceilings):
        ax.plot([i - 0.4, i + 0.4], [hi, hi], "k-", lw=1)
        ax.plot([i - 0.4, i + 0.4], [lo, lo], "k:", lw=1)
    ax.set_xticks(list(x), names, fontsize=7)
    ax.set_ylabel("encoding r (mean over channels x time)")
    ax.set_title("Quality vs ridge baseline (lines: noise ceiling upper / lower)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(*, models: list[str | Path] | None = None, data: str | Path | None = None, quick: bool = False,
        n_splits: int | None = None, seed: int = 0, ridge: str = "tokens", include_default: bool = True,
        threads: int | None = None, cache: str | Path | None = None, out_dir: str | Path | None = None,
        write: bool = True) -> tuple[dict[str, Any], Path | None]:
    """Score the embedded default (when present) and ``models`` with their ridge baselines.

    Parameters
    ----------
    models : list of path-like | None
        Checkpoints to score besides the embedded default.
    data : path-like | None
        Dataset folder with ``test/`` (and ``train/`` for the ridge baseline); default: the simulated dataset
        each checkpoint records.
    quick : bool
        Smaller simulated dataset and 20 splits (a smoke check).
    n_splits : int | None
        Random half splits (default 100, 20 with ``quick``).
    ridge : {"tokens", "pooled", "both"}
        Features of the ridge baseline.
    """
    from ..checkpoint import read_checkpoint_config
    from ..training.pipeline import evaluate_checkpoint

    todo = models_to_score(models, include_default=include_default)
    n_splits = n_splits or (20 if quick else 100)
    scored: dict[str, Any] = {}
    load_before = load_average()
    for name, checkpoint in todo:
        try:
            doc = read_checkpoint_config(checkpoint)
            data_dir = Path(data) if data is not None else simulated_data(doc, quick=quick, cache=cache)
            logger.info("quality: scoring %s on %s (%d splits)", name, data_dir, n_splits)
            rep = evaluate_checkpoint(checkpoint, data_dir, None, n_splits=n_splits, seed=seed, baseline=True,
                                      ridge_kind=ridge, threads=threads)
        except (CheckpointError, DataError) as err:
            logger.warning("%s: %s", name, err)
            scored[name] = {"error": str(err)}
            continue
        scored[name] = {
            "checkpoint": str(checkpoint),
            "data": str(data_dir),
            "headline": rep["headline"],
            "r": {k: v["r"] for k, v in rep["models"].items()},
            "r_per_image": {k: v.get("r_per_image") for k, v in rep["models"].items()},
            "models": rep["models"],
            "noise_ceiling": {k: rep["noise_ceiling"][k] for k in ("lower", "upper", "lower_per_image",
                                                                     "upper_per_image")},
            "reconstruction_r": rep.get("stage1", {}).get("reconstruction_r"),
            "dataset": rep["dataset"],
            "ridge": rep.get("ridge"),
            "recorded_metrics": doc.get("metrics", {}),
            "seconds": rep.get("seconds"),
        }
        logger.info("%s: r %s, noise ceiling %.3f-%.3f", name, {k: round(v, 3) for k, v in scored[name]["r"].items()},
                    scored[name]["noise_ceiling"]["lower"], scored[name]["noise_ceiling"]["upper"])
    payload = {
        "question": "Encoding r of the embedded default and given checkpoints vs the ridge baseline and the noise "
                    "ceiling, with the training evaluation protocol.",
        "config": {"models": [str(m) for m in models or []],
                   "data": str(data) if data else "simulated like each checkpoint's training data, from a fresh "
                                                  "seed (recorded + 1000)",
                   "quick": quick, "n_splits": n_splits, "seed": seed, "ridge": ridge},
        "loadavg_before": load_before,
        "loadavg_after": load_average(),
        "results": scored,
        "summary": {name: {**r["r"], "noise_ceiling_lower": r["noise_ceiling"]["lower"],
                           "noise_ceiling_upper": r["noise_ceiling"]["upper"]}
                    for name, r in scored.items() if "error" not in r},
    }
    path: Path | None = None
    if write:
        if payload["summary"]:
            payload["plot"] = plot(result_path(NAME, out_dir=out_dir, suffix=".png"), scored).name
        path = write_result(NAME, payload, out_dir=out_dir)
    return payload, path
