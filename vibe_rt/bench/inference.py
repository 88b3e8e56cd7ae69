"""Inference latency: how fast does each backend run the ViBE chain, per stage and end to end?

For the tiny default model (``ViBE.tiny``) and the ViT-B-32 configuration (``ViBE.base``), on every backend and
precision available on the chosen device (CPU: torch eager fp32, ONNX Runtime fp32 staged and fused, ONNX Runtime
int8; CUDA: torch fp32/fp16 (+ CUDA graphs), ONNX Runtime CUDA, TensorRT fp32/fp16 (+ CUDA graphs) when
installed), measure:

* batch-1 latency per stage (encoder, Q-Former, decoder) and for the whole chain: p50/p95/p99/max (ms);
* throughput (images/s) for a sweep of batch sizes, and the best batch with its latency;
* for ONNX Runtime int8: the epoch parity r of its chain vs the fp32 chain on the calibration images (from the
  engine manifest, measured when the graphs were quantized) and its speed-up over ONNX Runtime fp32; and the two
  quantization methods on the image encoder, side by side (:func:`int8_methods`: dynamic, what the engines use,
  vs static with the calibration images).

Each measurement warms up first; every backend returns host arrays, so each timed call includes device
synchronisation. Variants are timed round-robin (one call of each per round) so that load from other processes
on a shared machine hits all alike. Weights are random (latency does not depend on them). PyTorch eager fp32 is
the peer every engine backend is compared with (``summary.speedup_vs_torch_fp32_*``).

This module also holds what :mod:`~vibe_rt.bench.latency` and :mod:`~vibe_rt.bench.throughput` share: backend
variant parsing (:func:`parse_variants`), model resolution (:func:`resolve_model`) and predictor creation.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._logs import logger
from ..errors import ConfigError
from .common import load_average, machine_name, percentiles, write_result

NAME = "inference_latency"
_BACKENDS = {"torch": "torch", "onnxruntime": "onnxruntime", "ort": "onnxruntime", "tensorrt": "tensorrt",
             "trt": "tensorrt"}
_PRECISIONS = ("fp32", "fp16", "int8")


def resolve_model(spec: str | Path | None = None, montage: str = "things-eeg2") -> tuple[Any, str]:
    """The model to benchmark and a description of it.

    Parameters
    ----------
    spec : str | Path | None
        None or ``"default"``: the embedded default (``vibe_rt/assets/vibe-default.*``) or, when it is missing,
        the tiny preset with random weights (said in the description); ``"tiny"`` / ``"base"``: a random-init
        preset; anything else: a checkpoint path.
    montage : str
        Montage of the presets.
    """
    import torch

    from ..checkpoint import default_checkpoint_path, load_checkpoint, load_default_model
    from ..errors import CheckpointError
    from ..models.vibe import ViBE

    def preset(name: str) -> Any:
        torch.manual_seed(0)  # the same random weights every run: the engine cache (keyed by weights) is reused
        return getattr(ViBE, name)(montage).eval()

    if spec is None or str(spec) == "default":
        try:
            return load_default_model().eval(), f"embedded default ({default_checkpoint_path().name})"
        except CheckpointError as err:
            logger.warning("%s; benchmarking the tiny preset with random weights instead", err)
            return preset("tiny"), ("tiny preset, random weights (the embedded default model is "
                                               "missing; latency does not depend on the weights)")
    if str(spec) in ("tiny", "base"):
        return preset(str(spec)), f"{spec} preset, random weights"
    return load_checkpoint(spec).eval(), f"checkpoint {Path(spec).name}"


def _cuda_ort() -> bool:
    from .._imports import import_optional_dependency

    ort = import_optional_dependency("onnxruntime", raise_error=False)
    return ort is not None and "CUDAExecutionProvider" in ort.get_available_providers()


def default_variants(device: str) -> list[dict[str, Any]]:
    """Every variant that can run on ``device``: torch eager (the peer) first, then each engine backend."""
    from .._imports import import_optional_dependency

    ort = import_optional_dependency("onnxruntime", raise_error=False) is not None
    labels = ["torch-fp32"]
    if device == "cpu":
        if ort:
            labels += ["onnxruntime-fp32", "onnxruntime-fp32-fused", "onnxruntime-int8"]
        return parse_variants(",".join(labels), device)
    labels += ["torch-fp16", "torch-fp16-cudagraph"]
    if _cuda_ort():
        labels += ["onnxruntime-fp32", "onnxruntime-fp32-fused"]
    if import_optional_dependency("tensorrt", raise_error=False) is not None:
        labels += ["tensorrt-fp32", "tensorrt-fp16", "tensorrt-fp16-fused", "tensorrt-fp16-fused-cudagraph"]
    return parse_variants(",".join(labels), device)


def parse_variants(spec: str | None, device: str = "cpu") -> list[dict[str, Any]]:
    """Backend variants from a comma list such as ``"torch,onnxruntime,onnxruntime-fused,tensorrt-fp16"``.

    Each item is a backend (``torch``, ``onnxruntime``/``ort``, ``tensorrt``/``trt``) followed by optional
    ``-fp32``/``-fp16``/``-int8``, ``-fused`` and ``-cudagraph``. ``None``, ``"all"`` or ``"auto"`` give
    :func:`default_variants`. Each variant is a dict with ``label``, ``backend``, ``precision``, ``fused``,
    ``cuda_graph``.
    """
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be 'cpu' or 'cuda', got {device!r}")
    if spec is None or spec.strip() in ("all", "auto", ""):
        return default_variants(device)
    out = []
    for item in (s.strip().lower() for s in spec.split(",")):
        if not item:
            continue
        head, *opts = item.split("-")
        if head not in _BACKENDS:
            raise ConfigError(f"unknown backend {head!r} in --backend {spec!r}; use torch, onnxruntime or tensorrt "
                              "with optional -fp16/-fp32/-int8, -fused, -cudagraph (e.g. onnxruntime-fused)")
        backend = _BACKENDS[head]
        precision = "fp16" if backend == "tensorrt" else "fp32"
        fused = cuda_graph = False
        for opt in opts:
            if opt in _PRECISIONS:
                precision = opt
            elif opt == "fused":
                fused = True
            elif opt == "staged":
                fused = False
            elif opt == "cudagraph":
                cuda_graph = True
            elif opt not in ("cuda", "cpu"):
                raise ConfigError(f"unknown option {opt!r} in backend {item!r}; use fp32, fp16, int8, fused, "
                                  "staged or cudagraph")
        if backend == "onnxruntime" and precision == "fp16":
            raise ConfigError(f"backend {item!r}: ONNX Runtime runs fp32 and int8 graphs; fp16 is tensorrt-fp16 or "
                              "torch-fp16 (on a GPU)")
        cpu_precision = precision == "fp32" or (backend == "onnxruntime" and precision == "int8")
        if device == "cpu" and (backend == "tensorrt" or not cpu_precision or cuda_graph):
            raise ConfigError(f"backend {item!r} needs a CUDA GPU: run with --device cuda")
        label = f"{backend}-{precision}" + ("-fused" if fused else "") + ("-cudagraph" if cuda_graph else "")
        out.append(dict(label=label, backend=backend, precision=precision, fused=fused, cuda_graph=cuda_graph))
    if not out:
        raise ConfigError(f"--backend {spec!r} names no backend")
    return out


def check_device(device: str) -> None:
    """Raise ConfigError when ``device`` is ``"cuda"`` and torch sees no CUDA GPU."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda, but torch sees no CUDA GPU here; run on a GPU machine or use "
                              "--device cpu")


def make_predictor(model: Any, var: dict[str, Any], *, device: str = "cpu", threads: int | None = None,
                   engines_dir: str | Path | None = None, warmup_batch: int = 1) -> Any:
    """A warmed-up :class:`~vibe_rt.runtime.predictor.Predictor` for one variant (CUDA graphs are captured at
    ``warmup_batch``)."""
    from ..runtime.predictor import create_predictor

    kw = {"cuda_graph": True} if var.get("cuda_graph") else {}
    predictor = create_predictor(model, var["backend"], engines_dir=engines_dir, precision=var["precision"],
                                 device=device, fused=var["fused"], intra_op_threads=threads, warmup=False, **kw)
    predictor.warmup(batch=warmup_batch)
    return predictor


def make_predictors(model: Any, variants: list[dict[str, Any]], *, device: str, threads: int | None,
                    engines_dir: str | Path | None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A predictor per variant, and per variant either its description and setup time or the error that
    stopped it (one missing backend must not lose the others)."""
    from ..checkpoint import as_loaded

    model = as_loaded(model)  # hashed once (when an engine cache first needs it), not once per variant
    predictors: dict[str, Any] = {}
    entries: dict[str, dict[str, Any]] = {}
    for var in variants:
        t0 = time.perf_counter()
        try:
            predictor = make_predictor(model, var, device=device, threads=threads, engines_dir=engines_dir)
        except Exception as err:  # recorded in the result, not raised
            logger.warning("%s: %s", var["label"], err)
            entries[var["label"]] = {"error": f"{type(err).__name__}: {err}"}
            continue
        predictors[var["label"]] = predictor
        entries[var["label"]] = {"backend": var["backend"], "precision": var["precision"], "fused": var["fused"],
                                 "device": predictor.device, "cuda_graph": bool(var.get("cuda_graph")),
                                 "setup_s": round(time.perf_counter() - t0, 2),
                                 **int8_parity(model, var, engines_dir)}
    return predictors, entries


def int8_parity(model: Any, var: dict[str, Any], engines_dir: str | Path | None) -> dict[str, Any]:
    """For an ONNX Runtime int8 variant, what its engine manifest measured when the graphs were quantized:
    ``epoch_r_vs_fp32`` (Pearson r of the int8 chain's epochs vs the fp32 chain's on the calibration images) and
    ``epoch_image_specific_r_vs_fp32`` (the same for the part that differs between images),
    the per-graph relative errors and the number of quantized operators; ``{}`` for other variants."""
    if var["backend"] != "onnxruntime" or var["precision"] != "int8":
        return {}
    from ..runtime.cache import OnnxStore

    manifest = OnnxStore(engines_dir).load(model.model_hash, precision="int8", fused=var["fused"])[1]
    kind = "chain" if var["fused"] else "staged"
    return {"epoch_r_vs_fp32": manifest.extra["epoch_r"][kind],
            "epoch_image_specific_r_vs_fp32": manifest.extra["epoch_r"][f"{kind}_image_specific"],
            "relative_error_vs_fp32": {k: a.parity_error for k, a in manifest.stages.items()},
            "quantized_nodes": manifest.extra["quantized_nodes"],
            "calibration_images": manifest.extra["calibration_images"]}


def int8_methods(model: Any, *, threads: int | None, engines_dir: str | Path, seconds: float,
                 min_iters: int) -> dict[str, Any]:
    """The image encoder in ONNX Runtime fp32 vs its two INT8 quantizations, side by side: ``dynamic`` (what the
    int8 engines use) and ``static`` (QDQ, activation ranges from the calibration images); per method the batch-1
    latency (interleaved, ms), the relative error and Pearson r of the tokens vs fp32 on the calibration
    images, and the time the quantization took."""
    from ..checkpoint import as_loaded
    from ..runtime.backends import OnnxRuntimeBackend
    from ..runtime.cache import OnnxStore, load_calibration_images
    from ..runtime.export import relative_error
    from ..runtime.int8_set import default_calibration_dir
    from ..runtime.quantize import pearson_r, quantize_dynamic_graph, quantize_static_graph

    loaded = as_loaded(model)
    folder, manifest = OnnxStore(engines_dir).ensure(loaded, fused=False)
    art = manifest.stages["encoder"]
    images = load_calibration_images(default_calibration_dir(), loaded.model.encoder.preprocess_frames)
    batches = [images[i:i + 8] for i in range(0, len(images), 8)]
    out: dict[str, Any] = {"calibration_images": int(len(images))}
    runners = {"fp32": OnnxRuntimeBackend(folder / art.file, intra_op_threads=threads, validate=False)}
    with tempfile.TemporaryDirectory(prefix="vibe-rt-int8-methods-") as tmp:
        for method in ("dynamic", "static"):
            dst = Path(tmp) / f"encoder-{method}.onnx"
            t0 = time.perf_counter()
            nodes = (quantize_dynamic_graph(folder / art.file, dst) if method == "dynamic" else
                     quantize_static_graph(folder / art.file, dst, batches, art.input_name))
            out[method] = {"quantize_s": round(time.perf_counter() - t0, 2), "quantized_nodes": nodes}
            runners[method] = OnnxRuntimeBackend(dst, precision="int8", intra_op_threads=threads, validate=False)
        tokens = {k: np.concatenate([r.run({r.input_name: x})[r.output_name] for x in batches])
                  for k, r in runners.items()}
        for method in ("dynamic", "static"):
            out[method].update(relative_error_vs_fp32=relative_error(tokens[method], tokens["fp32"]),
                               tokens_r_vs_fp32=pearson_r(tokens[method], tokens["fp32"]))
        x = {runners["fp32"].input_name: images[:1]}
        for r in runners.values():
            r.run(x)
        times: dict[str, list[float]] = {k: [] for k in runners}
        t_end = time.perf_counter() + seconds * len(runners)
        while len(times["fp32"]) < min_iters or time.perf_counter() < t_end:
            for k, r in runners.items():
                t0 = time.perf_counter()
                r.run(x)
                times[k].append(time.perf_counter() - t0)
    for k, v in times.items():
        out.setdefault(k, {})["batch1_ms"] = percentiles(v, 1e3)
    for method in ("dynamic", "static"):
        out[method]["speedup_vs_fp32_p50"] = out["fp32"]["batch1_ms"]["p50"] / out[method]["batch1_ms"]["p50"]
    return out


def _summary(batch: int, samples: dict[str, list[float]], total_key: str = "total") -> dict[str, Any]:
    total = percentiles(samples[total_key], 1e3)
    return {"batch": batch, "iterations": len(samples[total_key]),
            "stages_ms": {k: percentiles(v, 1e3) for k, v in samples.items() if k != total_key},
            "total_ms": total, "throughput_per_s": batch / (total["mean"] / 1e3)}


def measure_interleaved(predictors: dict[str, Any], batch: int, seconds: float, min_iters: int, max_iters: int,
                        warmup: int, *, frames: bool = False, clock: Callable[[], float] = time.perf_counter
                        ) -> tuple[dict[str, dict], dict[str, dict[str, list[float]]]]:
    """Time ``predict`` of every predictor on the same random input, round-robin (one call each per round).

    Parameters
    ----------
    predictors : dict label -> Predictor
    batch : int
        Batch size.
    seconds : float
        Time budget per predictor (the loop stops after ``seconds * len(predictors)`` and ``min_iters``).
    min_iters, max_iters, warmup : int
        Rounds at least / at most, and untimed calls first.
    frames : bool
        Feed uint8 camera-sized frames (240 x 320) through ``preprocess`` too; ``total`` then includes it.

    Returns
    -------
    summaries : dict label -> dict
        Per-stage and total percentiles (ms) and throughput (images/s).
    samples : dict label -> dict stage -> list of seconds
        The raw timings.
    """
    rng = np.random.default_rng(0)
    inputs = {}
    for label, pred in predictors.items():
        if frames:
            inputs[label] = rng.integers(0, 256, (batch, 240, 320, 3), dtype=np.uint8)
        else:
            s = pred.image_size
            inputs[label] = rng.standard_normal((batch, 3, s, s)).astype(np.float32)

    def call(pred: Any, x: np.ndarray) -> dict[str, float]:
        if not frames:
            return pred.predict(x)[1]
        t0 = clock()
        px = pred.preprocess(x)
        t1 = clock()
        timings = dict(pred.predict(px)[1])
        timings["preprocess"] = t1 - t0
        timings["total"] = timings["total"] + (t1 - t0)
        return timings

    for label, pred in predictors.items():
        for _ in range(warmup):
            call(pred, inputs[label])
    samples: dict[str, dict[str, list[float]]] = {label: {} for label in predictors}
    t_end = clock() + seconds * len(predictors)
    n = 0
    while n < max_iters and (n < min_iters or clock() < t_end):
        for label, pred in predictors.items():
            for k, v in call(pred, inputs[label]).items():
                samples[label].setdefault(k, []).append(v)
        n += 1
    return {label: _summary(batch, smp) for label, smp in samples.items()}, samples


def bench_model(model: Any, variants: list[dict[str, Any]], *, device: str, threads: int | None,
                engines_dir: Path | None, batches: list[int], seconds: float, min_iters: int, max_iters: int,
                warmup: int) -> dict[str, Any]:
    """Every variant of one model: setup time, batch-1 latency per stage, batch sweep, best batch."""
    predictors, out = make_predictors(model, variants, device=device, threads=threads, engines_dir=engines_dir)
    for label in predictors:
        out[label]["batches"] = {}
    for batch in batches:
        preds = {k: p for k, p in predictors.items() if batch == 1 or not out[k]["cuda_graph"]}
        if not preds:
            continue
        res, raw = measure_interleaved(preds, batch, seconds if batch == 1 else seconds / 2,
                                       min_iters if batch == 1 else max(3, min_iters // 4), max_iters,
                                       warmup if batch == 1 else max(1, warmup // 4))
        for label, r in res.items():
            if batch == 1:
                out[label]["batch1"] = r
                out[label]["batch1_total_samples_ms"] = [round(v * 1e3, 4) for v in raw[label]["total"]]
            out[label]["batches"][str(batch)] = {"total_ms": r["total_ms"], "throughput_per_s": r["throughput_per_s"]}
    for label in predictors:
        if not out[label]["batches"]:
            continue
        best_b, best = max(out[label]["batches"].items(), key=lambda kv: kv[1]["throughput_per_s"])
        out[label].update(best_batch=int(best_b), best_throughput_per_s=best["throughput_per_s"],
                          best_batch_total_ms=best["total_ms"])
    return out


def summarise(variants: dict[str, Any]) -> dict[str, Any]:
    """Batch-1 latency (p50 and min) of each variant and its speed-up over torch eager fp32; fused vs staged.

    The minimum is reported beside the median because on a shared machine the median includes time the process
    spent descheduled; the minimum is what the backend itself can do.
    """
    out: dict[str, Any] = {}
    for stat in ("p50", "min"):
        ms = {k: r["batch1"]["total_ms"][stat] for k, r in variants.items() if "batch1" in r}
        ref = ms.get("torch-fp32")
        out[f"batch1_{stat}_ms"] = ms
        out[f"speedup_vs_torch_fp32_{stat}"] = {k: ref / m for k, m in ms.items()} if ref else {}
        for staged in [k for k in ms if k.startswith("onnxruntime") and not k.endswith("-fused")]:
            fused = f"{staged}-fused"
            if fused in ms:
                out[f"fused_speedup_{staged}_{stat}"] = ms[staged] / ms[fused]
        int8 = {k: ms[k.replace("-int8", "-fp32")] / m for k, m in ms.items()
                if k.startswith("onnxruntime-int8") and k.replace("-int8", "-fp32") in ms}
        if int8:
            out[f"int8_speedup_vs_onnxruntime_fp32_{stat}"] = int8
    r = {k: [v["epoch_r_vs_fp32"], v["epoch_image_specific_r_vs_fp32"]] for k, v in variants.items()
         if "epoch_r_vs_fp32" in v}
    if r:
        out["int8_epoch_r_vs_fp32_all_and_image_specific"] = r
    return out


def run(*, device: str = "cpu", models: str = "default,base", montage: str = "things-eeg2",
        backend: str | None = None, seconds: float | None = None, min_iters: int = 20, max_iters: int = 2000,
        warmup: int = 10, threads: int | None = None, engines_dir: str | Path | None = None,
        out_dir: str | Path | None = None, write: bool = True) -> tuple[dict[str, Any], Path | None]:
    """Run the inference-latency benchmark; returns the payload and the written JSON path.

    Parameters
    ----------
    device : {"cpu", "cuda"}
    models : str
        Comma list of ``default`` (the embedded model), ViBE presets (``tiny``, ``base``: random weights) or
        checkpoint paths.
    backend : str | None
        Variants (see :func:`parse_variants`); None: every variant available on ``device``.
    seconds : float | None
        Time per batch-1 measurement (default 1.5 s for small models, 2 s for large ones).
    threads : int | None
        CPU threads for torch and ONNX Runtime (default: physical cores).
    engines_dir : path-like | None
        Engine cache (default: a temporary one, so that exports are timed as setup).
    """
    import torch

    from ..runtime.backends import physical_cores

    check_device(device)
    variants = parse_variants(backend, device)
    threads = threads or physical_cores()
    torch.set_num_threads(threads)
    load_before = load_average()
    tmp = tempfile.TemporaryDirectory(prefix="vibe-rt-bench-engines-")
    engines = Path(engines_dir) if engines_dir is not None else Path(tmp.name)
    results: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    try:
        for spec in [m.strip() for m in models.split(",") if m.strip()]:
            try:
                model, desc = resolve_model(spec, montage)
            except Exception as err:  # a preset that cannot be built here is reported, not fatal
                results[spec] = {"error": f"{type(err).__name__}: {err}"}
                logger.warning("%s: skipped (%s)", spec, err)
                continue
            n_params = sum(p.numel() for p in model.parameters())
            small = n_params < 20e6
            secs = seconds if seconds is not None else (1.5 if small else 2.0)
            batches = ([1, 4, 16] if small else [1, 4]) if device == "cpu" else [1, 8, 32, 64]
            per_model: dict[str, Any] = {"model": desc, "parameters": int(n_params),
                                         "image_size": int(model.encoder.image_size), "montage": montage,
                                         "batches": batches}
            per_model["variants"] = bench_model(model, variants, device=device, threads=threads,
                                                engines_dir=engines, batches=batches, seconds=secs,
                                                min_iters=min_iters if small else max(5, min_iters // 4),
                                                max_iters=max_iters, warmup=warmup if small else 2)
            for label, res in per_model["variants"].items():
                if "batch1" in res:
                    logger.info("%s %s: batch-1 p50 %.3f ms, p99 %.3f ms; best batch %d: %.1f/s", spec, label,
                                res["batch1"]["total_ms"]["p50"], res["batch1"]["total_ms"]["p99"],
                                res["best_batch"], res["best_throughput_per_s"])
            if any(v["backend"] == "onnxruntime" and v["precision"] == "int8" for v in variants):
                try:
                    per_model["int8_methods"] = int8_methods(model, threads=threads, engines_dir=engines,
                                                             seconds=secs, min_iters=min_iters if small else 5)
                except Exception as err:  # recorded, the variants above stand
                    logger.warning("%s: int8 methods not compared: %s", spec, err)
                    per_model["int8_methods"] = {"error": f"{type(err).__name__}: {err}"}
            results[spec] = per_model
            summary[spec] = summarise(per_model["variants"])
            if "dynamic" in per_model.get("int8_methods", {}):
                summary[spec]["encoder_int8_methods"] = {
                    m: {k: per_model["int8_methods"][m][k] for k in ("speedup_vs_fp32_p50", "tokens_r_vs_fp32")}
                    for m in ("dynamic", "static")}
    finally:
        tmp.cleanup()
    payload = {"question": "How fast does each backend run the ViBE chain, per stage and end to end, vs PyTorch "
                           "eager?",
               "config": {"device": device, "threads": threads, "models": models, "backend": backend,
                          "seconds": seconds, "min_iters": min_iters, "warmup": warmup},
               "device": device, "threads": threads, "loadavg_before": load_before,
               "loadavg_after": load_average(), "results": results, "summary": summary}
    path = None
    if write:
        # a CPU run on a GPU machine is named after the machine's CPU side
        gpu_machine = torch.cuda.is_available()
        name = machine_name() + ("-cpu" if gpu_machine and device == "cpu" else "")
        path = write_result(NAME, payload, out_dir=out_dir, machine=name)
    return payload, path

