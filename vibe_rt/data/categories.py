"""Object categories of stimulus images: the declared input of the simulator's category-selective components.

Pixels alone do not say what an image shows, so the simulator does not guess: the category of an image is
*declared*. Procedural images (:func:`vibe_rt.data.stimuli.make_stimulus`) carry the category they were drawn
as; a folder of user images gets a category table (``SimulationConfig.categories`` /
``vibe-rt data simulate --categories FILE.tsv``); an image without a label (a camera frame, an
``EvokedModel.evoked(image)`` call without ``category``) drives no category-selective component.

Category table: tab-separated text with a header row and the columns ``image`` (path relative to the image
folder, or the bare file name when that is unique) and ``category`` (one of :data:`CATEGORIES` or ``none``),
optionally ``strength`` (a non-negative multiplier of the category response, default 1) and ``inverted``
(``1`` for an upside-down face or body, default 0). Every image of the folder needs a row.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError

CATEGORIES = ("face", "body", "object", "scene")
ANIMATE = ("face", "body")


@dataclass(frozen=True)
class CategoryLabel:
    """What an image shows, as far as the category-selective components are concerned.

    Attributes
    ----------
    name : str
        One of :data:`CATEGORIES`.
    strength : float
        Multiplies the category response (exemplar variation: a typical, whole, frontal face is 1).
    inverted : bool
        Shown upside down (faces and bodies: larger and later N170/N190; Rossion et al. 2000).
    """

    name: str
    strength: float = 1.0
    inverted: bool = False

    def __post_init__(self) -> None:
        if self.name not in CATEGORIES:
            raise DataError(f"unknown image category {self.name!r}; use one of {', '.join(CATEGORIES)} or none")
        if not (math.isfinite(self.strength) and self.strength >= 0):
            raise DataError(f"category strength must be a finite number >= 0, got {self.strength}")

    @property
    def animate(self) -> bool:
        """Faces and bodies are animate; objects and scenes are not."""
        return self.name in ANIMATE

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``images.json``)."""
        return {"name": self.name, "strength": round(float(self.strength), 4), "inverted": bool(self.inverted)}


def as_label(category: CategoryLabel | str | dict | None) -> CategoryLabel | None:
    """A :class:`CategoryLabel` from a label, a category name, its :meth:`~CategoryLabel.to_dict` form, or None."""
    if category is None or isinstance(category, CategoryLabel):
        return category
    if isinstance(category, str):
        return None if category == "none" else CategoryLabel(category)
    if isinstance(category, dict):
        return CategoryLabel(str(category["name"]), float(category.get("strength", 1.0)),
                             bool(category.get("inverted", False)))
    raise DataError(f"a category is a name ({', '.join(CATEGORIES)}), a CategoryLabel or None, got "
                    f"{type(category).__name__}")


def read_category_table(path: str | os.PathLike, image_dir: str | os.PathLike, files: Sequence[Path]
                        ) -> list[CategoryLabel | None]:
    """Category labels for ``files`` (images under ``image_dir``) from a category table.

    Parameters
    ----------
    path : path-like
        Tab-separated table (columns ``image``, ``category``, optional ``strength`` and ``inverted``).
    image_dir : path-like
        The folder the ``image`` column is relative to.
    files : sequence of Path
        The images that need a label, in order.

    Returns
    -------
    list of CategoryLabel or None
        One per file (None for ``none``).
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
    except OSError as exc:
        raise DataError(f"cannot read the category table {path}: {exc.strerror or exc}") from None
    if not rows or not {"image", "category"} <= set(rows[0]):
        raise DataError(f"{path}: a category table is tab-separated with a header row naming the columns "
                        "'image' and 'category' (optional 'strength', 'inverted')")
    root = Path(image_dir)
    by_rel: dict[str, CategoryLabel | None] = {}
    by_name: dict[str, list[CategoryLabel | None]] = {}
    for i, row in enumerate(rows, start=2):
        try:
            name = (row["category"] or "").strip()
            label = None if name == "none" else CategoryLabel(
                name, float(row.get("strength") or 1.0), (row.get("inverted") or "0").strip() in ("1", "true"))
        except (DataError, ValueError) as exc:
            raise DataError(f"{path} line {i}: {exc}") from None
        key = Path((row["image"] or "").strip()).as_posix()
        by_rel[key] = label
        by_name.setdefault(Path(key).name, []).append(label)
    out: list[CategoryLabel | None] = []
    missing = []
    for f in files:
        rel = f.relative_to(root).as_posix() if f.is_relative_to(root) else f.name
        if rel in by_rel:
            out.append(by_rel[rel])
        elif len(by_name.get(f.name, [])) == 1:
            out.append(by_name[f.name][0])
        else:
            missing.append(rel)
            out.append(None)
    if missing:
        raise DataError(f"{path} has no row for {len(missing)} image(s) of {root} (e.g. {', '.join(missing[:3])}); "
                        "give every image a row, with category 'none' where it shows none of "
                        f"{', '.join(CATEGORIES)}")
    return out
