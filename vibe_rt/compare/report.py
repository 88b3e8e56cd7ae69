"""Comparison reports: JSON summary + running ERPs (``erps.npz``) + PNG figures + a small HTML page.

Figures (matplotlib, Agg backend): ``erp_overlay.png`` (grand-average live vs synthesized ERP per channel
group), ``metrics_over_time.png`` (event r, running ERP r, noise ceiling, latency against events),
``per_channel.png`` (running-ERP r, noise ceiling and fitted gain per channel).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import html
import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._json import to_jsonable
from ..errors import DataError
from ..montage import Montage
from .comparator import Comparator, ErpSet

__all__ = ["write_report", "read_report", "channel_groups"]

REPORT_JSON = "report.json"
ERPS_FILE = "erps.npz"


def channel_groups(ch_names: Sequence[str], max_groups: int = 6) -> dict[str, list[int]]:
    """Group channels by the letters of their label (``O``, ``PO``, ``P`` ...; CTF ``MLO``, ``MRT`` ...).

    Small groups are merged so that there are at most ``max_groups``.
    """
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(ch_names):
        m = re.match(r"[A-Za-z]+", name)
        key = (m.group(0) if m else name)[:3].upper()
        groups.setdefault(key, []).append(i)
    while len(groups) > max_groups:
        small = sorted(groups, key=lambda k: len(groups[k]))
        a, b = small[0], small[1]
        groups[f"{a}+{b}"] = sorted(groups.pop(a) + groups.pop(b))
    return groups


def _scale(montage: Montage) -> tuple[float, str]:
    return (1e6, "µV") if montage.modality == "EEG" else (1e15, "fT")


def _fig_erp(erps: ErpSet, montage: Montage, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    w = np.asarray(erps.counts, float)
    live = np.tensordot(w / w.sum(), erps.live, axes=1)
    synth = np.tensordot(w / w.sum(), erps.synth, axes=1)
    groups = channel_groups(montage.ch_names)
    k, unit = _scale(montage)
    n = len(groups)
    cols = min(3, n)
    rows = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False, sharex=True)
    t = montage.times * 1e3
    for ax, (g, idx) in zip(axes.ravel(), groups.items()):
        for i in idx:
            ax.plot(t, k * live[i], color="C0", lw=0.5, alpha=0.3)
            ax.plot(t, k * synth[i], color="C1", lw=0.5, alpha=0.3)
        ax.plot(t, k * live[idx].mean(0), color="C0", lw=2, label="live")
        ax.plot(t, k * synth[idx].mean(0), color="C1", lw=2, ls="--", label="synthesized")
        ax.axvline(0, color="k", lw=0.5)
        ax.set_title(f"{g} ({len(idx)} ch)", fontsize=9)
        ax.set_ylabel(unit)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("time (ms)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"Grand-average ERP, {int(w.sum())} events / {len(erps.keys)} images", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fig_time(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    n = [h["n_events"] for h in history]

    def col(key: str) -> np.ndarray:
        return np.array([np.nan if h.get(key) is None else h[key] for h in history], float)

    ax.plot(n, col("event_r"), ".", ms=3, color="0.6", label="event r")
    ax.plot(n, col("mean_event_r"), label="mean event r")
    ax.plot(n, col("erp_r"), lw=2, label="running ERP r")
    ax.plot(n, col("noise_ceiling"), ls="--", label="noise ceiling (split-half, SB)")
    ax.set_ylabel("Pearson r")
    ax.set_ylim(-0.2, 1.0)
    ax.legend(fontsize=8, loc="lower right")
    ax2.plot(n, 1e3 * col("latency_s"), color="C3")
    ax2.set_ylabel("latency (ms, live later > 0)")
    ax2.set_xlabel("events")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fig_channels(summary: dict[str, Any], montage: Montage, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    c = montage.n_channels
    x = np.arange(c)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(max(6, 0.3 * c), 5), sharex=True)
    r = np.array([np.nan if v is None else v for v in summary.get("erp_r_per_channel", [np.nan] * c)], float)
    ceil = summary.get("noise_ceiling_per_channel")
    ax.bar(x, r, color="C0", label="running ERP r")
    if ceil:
        ax.plot(x, np.array([np.nan if v is None else v for v in ceil], float), "k_", ms=10, label="noise ceiling")
    ax.set_ylabel("r")
    ax.legend(fontsize=8)
    g = np.array([np.nan if v is None else v for v in summary.get("gain_per_channel", [np.nan] * c)], float)
    ax2.bar(x, g, color="C2")
    ax2.axhline(1, color="k", lw=0.5)
    ax2.set_ylabel("gain (live / synth)")
    step = max(1, c // 60)
    ax2.set_xticks(x[::step])
    ax2.set_xticklabels(list(montage.ch_names)[::step], rotation=90, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(
    out_dir: str | Path,
    comparator: Comparator,
    *,
    outages: list[dict[str, Any]] | None = None,
    gaps: list[dict[str, Any]] | None = None,
    info: dict[str, Any] | None = None,
    figures: bool = True,
    html_page: bool = True,
    refresh_s: float | None = None,
    summary: dict[str, Any] | None = None,
) -> Path:
    """Write a comparison report folder and return the path of its ``report.json``.

    Parameters
    ----------
    out_dir : path
        Folder (created).
    comparator : Comparator
        The session's comparator.
    outages, gaps : list of dict | None
        What was missed (from :meth:`LiveComparator.outages` / :meth:`LiveComparator.data_gaps`).
    info : dict | None
        Streams, files, options (stored as is).
    figures, html_page : bool
        Write the PNG figures / the HTML page.
    refresh_s : float | None
        Live view: the HTML page reloads itself every this many seconds (a browser shows the comparison as it
        runs; no server). Every file is replaced atomically, so a reader never sees a half-written one.
    summary : dict | None
        ``comparator.summary()`` when the caller has it already (it costs time in proportion to the images).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    montage = comparator.montage
    summary = summary if summary is not None else comparator.summary()
    erps = comparator.erps(events=refresh_s is None)  # the single events (large) only in the final report
    with _replacing(out / ERPS_FILE) as tmp:
        erps.save(str(tmp))
    files = {"erps": ERPS_FILE}
    if figures and erps.keys:
        figs = [("erp_overlay", lambda path: _fig_erp(erps, montage, path)),
                ("per_channel", lambda path: _fig_channels(summary, montage, path))]
        if comparator.history:
            figs.append(("metrics_over_time", lambda path: _fig_time(comparator.history, path)))
        for name, draw in figs:
            with _replacing(out / f"{name}.png") as tmp:
                draw(tmp)
            files[name] = f"{name}.png"
    report = {
        "format": "vibe-rt-compare-report",
        "version": 1,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "montage": montage.to_dict(),
        "summary": summary,
        "missed": {"outages": outages or [], "data_gaps": gaps or [], "lost_events": comparator.lost},
        "info": info or {},
        "events": comparator.events,
        "history": comparator.history,
        "files": files,
    }
    path = out / REPORT_JSON
    with _replacing(path) as tmp:
        tmp.write_text(json.dumps(to_jsonable(report), indent=1))
    if html_page and figures:
        with _replacing(out / "index.html") as tmp:
            _html(tmp, report, refresh_s)
    return path


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix) and move it over ``path`` when the block succeeds."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _html(path: Path, report: dict[str, Any], refresh_s: float | None = None) -> None:
    s = report["summary"]

    def f(v: Any, fmt: str = ".3f") -> str:
        return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)

    rows = [("events compared", s["n_events"]), ("images", s["n_keys"]), ("events lost", s["n_lost"]),
            ("mean event r", f(s["mean_event_r"])), ("running ERP r", f(s["erp_r"])),
            ("ERP r after latency alignment", f(s.get("erp_r_aligned"))),
            ("noise ceiling (split-half, Spearman-Brown)", f(s["noise_ceiling"])),
            ("latency (ms, live later > 0)", f(None if s["latency_s"] is None else 1e3 * s["latency_s"], ".1f")),
            ("ERP RMSE (SI)", f(s["erp_rmse"], ".3g"))]
    table = "".join(f"<tr><td>{html.escape(str(a))}</td><td>{html.escape(str(b))}</td></tr>" for a, b in rows)
    imgs = "".join(f'<h2>{html.escape(k)}</h2><img src="{html.escape(v)}" style="max-width:100%">'
                   for k, v in report["files"].items() if v.endswith(".png"))
    live = (f"<meta http-equiv='refresh' content='{refresh_s:g}'>" if refresh_s else "")
    note = (f"<p>live: updated every {refresh_s:g} s ({html.escape(report['created'])})</p>" if refresh_s else "")
    page = (f"<!doctype html><html><head><meta charset='utf-8'>{live}<title>vibe-rt comparison</title></head>"
            f"<body><h1>vibe-rt comparison ({html.escape(report['montage']['name'])})</h1>{note}"
            f"<table border=1 cellpadding=4>{table}</table>{imgs}</body></html>")
    path.write_text(page, encoding="utf-8")


def read_report(path: str | Path) -> tuple[dict[str, Any], ErpSet, Montage]:
    """Read a report folder (or its ``report.json``): the JSON, the running ERPs and the montage."""
    p = Path(path)
    if p.is_dir():
        p = p / REPORT_JSON
    if not p.is_file():
        raise DataError(f"no comparison report at {path}; run `vibe-rt compare ... --report DIR` first")
    report = json.loads(p.read_text())
    if report.get("format") != "vibe-rt-compare-report":
        raise DataError(f"{p} is not a vibe-rt comparison report")
    erps = ErpSet.load(str(p.parent / report["files"]["erps"]))
    return report, erps, Montage.from_dict(report["montage"])
