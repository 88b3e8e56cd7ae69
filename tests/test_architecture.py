"""The dependency rules of the package, read from the imports of every module of ``vibe_rt/`` (with ``ast``).

Every ``import`` and ``from ... import`` counts, at module level or inside a function (a lazy import is still a
dependency), relative or absolute. The rules:

- ``stream/`` and ``runtime/`` use only ``models/``, ``checkpoint``, ``calibration``, ``devices/``, the leaf modules
  and their own package, and never each other;
- ``devices/`` (the device profiles) uses only the leaf modules;
- ``data/`` and ``models/`` never import ``training/``;
- only ``cli.py`` loads ``_commands/``; a ``_commands`` module imports no other one except ``_options`` (the
  shared argparse options);
- a leaf module imports no other vibe_rt module than ``errors`` and ``_logs`` (and ``vibe_rt`` itself for
  ``__version__``).

Every violation is reported at once, each as ``file:line imports module (rule)``. Those that are known and
being removed are listed in :data:`KNOWN_VIOLATIONS`; the test fails on any other, and on a listed one that no
longer occurs (delete its entry when it is fixed).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vibe_rt"

#: Top-level modules that depend on nothing else in vibe_rt (but errors and _logs); ``__init__`` is the package
#: itself (the version); ``options`` the declared command-line options; ``units`` the unit vocabulary.
LEAVES = frozenset({"errors", "_logs", "_imports", "_json", "montage", "lsl_config", "system", "stats", "options",
                    "units", "__init__"})
#: What stream/ and runtime/ may import besides their own package.
ENGINE_ALLOWED = LEAVES | {"models", "checkpoint", "calibration", "devices"}
#: What a leaf may import (and the package itself, which holds only the version).
LEAF_ALLOWED = frozenset({"errors", "_logs", "__init__"})

#: (importing file, imported module) pairs that break a rule today and are being removed; each must still
#: occur. Delete an entry when its import is gone.
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset({
})


class Import(NamedTuple):
    """One imported vibe_rt module of one file."""

    file: str
    """Importing file, relative to the repository root (``vibe_rt/stream/run.py``)."""
    line: int
    module: str
    """Dotted name of the imported module (``vibe_rt.runtime.predictor``; ``vibe_rt`` for the package)."""


def _is_module(dotted: str, root: Path) -> bool:
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path, root: Path = ROOT) -> list[Import]:
    """The vibe_rt modules that ``path`` (a file under ``root``) imports, everywhere in the file, with lines.

    ``from pkg import name`` names the submodule ``pkg.name`` when that is a module, else ``pkg``.
    """
    rel = path.relative_to(root).as_posix()
    name = ".".join(p for p in path.relative_to(root).with_suffix("").parts if p != "__init__")
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=rel)):
        if isinstance(node, ast.Import):
            out += [Import(rel, node.lineno, alias.name) for alias in node.names
                    if alias.name.split(".")[0] == "vibe_rt"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "vibe_rt":
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                out.append(Import(rel, node.lineno, sub if _is_module(sub, root) else source))
    return sorted(out, key=lambda imp: imp.line)


def _area(dotted_or_file: str) -> str:
    """The part of the package a module belongs to: ``stream``, ``runtime``, ``errors``, ``__init__`` ..."""
    parts = dotted_or_file.removesuffix(".py").replace("/", ".").split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def rule_broken(imp: Import) -> str | None:
    """The rule that ``imp`` breaks, or None."""
    src, dst = _area(imp.file), _area(imp.module)
    if src == dst and src != "_commands":
        return None  # inside its own package (or module)
    if src in ("stream", "runtime"):
        if dst in ("stream", "runtime"):
            return "stream/ and runtime/ never import each other"
        if dst not in ENGINE_ALLOWED:
            return "stream/ and runtime/ import only models/, checkpoint, calibration, devices/ and the leaf modules"
    if src == "devices" and dst not in LEAVES:
        return "devices/ imports only the leaf modules"
    if src in ("data", "models") and dst == "training":
        return "data/ and models/ never import training/"
    if dst == "_commands":
        if src == "_commands":
            if imp.module in ("vibe_rt._commands", "vibe_rt._commands._options"):
                return None
            return "a _commands module imports no other one (except _commands/_options.py)"
        if imp.file != "vibe_rt/cli.py":
            return "only vibe_rt/cli.py loads vibe_rt/_commands/"
    if imp.file.count("/") == 1 and src in LEAVES and dst not in LEAF_ALLOWED:
        return "a leaf module imports no other vibe_rt module than errors and _logs"
    return None


def violations() -> list[tuple[Import, str]]:
    """Every rule broken anywhere in vibe_rt/, in file and line order (once per file, line and module)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += [(imp, rule) for imp in dict.fromkeys(imports_of(path)) if (rule := rule_broken(imp)) is not None]
    return found


def test_dependency_rules():
    found = violations()
    new = [f"{imp.file}:{imp.line} imports {imp.module} ({rule})" for imp, rule in found
           if (imp.file, imp.module) not in KNOWN_VIOLATIONS]
    seen = {(imp.file, imp.module) for imp, _ in found}
    stale = sorted(KNOWN_VIOLATIONS - seen)
    problems = new + [f"KNOWN_VIOLATIONS lists {file} -> {module}, which no longer breaks a rule: delete the entry"
                      for file, module in stale]
    assert not problems, "\n" + "\n".join(problems)


def test_imports_are_read_from_every_kind_of_statement(tmp_path):
    """The reader sees module-level, function-local, relative, absolute and package imports."""
    pkg = tmp_path / "vibe_rt" / "stream"
    for name in ("vibe_rt/__init__.py", "vibe_rt/stream/__init__.py", "vibe_rt/errors.py",
                 "vibe_rt/compare/__init__.py", "vibe_rt/compare/calibrate.py", "vibe_rt/runtime/__init__.py",
                 "vibe_rt/runtime/predictor.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    src = pkg / "run.py"
    src.write_text("import numpy\nfrom .. import __version__\nfrom ..errors import StreamError\n"
                   "from . import sources\n\n"
                   "def f():\n    from ..compare import calibrate\n    import vibe_rt.runtime.predictor as p\n"
                   "    from vibe_rt.compare.calibrate import fit_calibration\n")
    got = [(imp.line, imp.module, rule_broken(imp)) for imp in imports_of(src, tmp_path)]
    assert got == [
        (2, "vibe_rt", None),
        (3, "vibe_rt.errors", None),
        (4, "vibe_rt.stream", None),
        (7, "vibe_rt.compare.calibrate",
         "stream/ and runtime/ import only models/, checkpoint, calibration, devices/ and the leaf modules"),
        (8, "vibe_rt.runtime.predictor", "stream/ and runtime/ never import each other"),
        (9, "vibe_rt.compare.calibrate",
         "stream/ and runtime/ import only models/, checkpoint, calibration, devices/ and the leaf modules"),
    ]


def test_rules():
    def broken(file: str, module: str) -> str | None:
        return rule_broken(Import(file, 1, module))

    assert broken("vibe_rt/data/ceiling.py", "vibe_rt.training.metrics")
    assert broken("vibe_rt/models/vae.py", "vibe_rt.training") and not broken("vibe_rt/data/x.py", "vibe_rt.stats")
    assert broken("vibe_rt/runtime/cache.py", "vibe_rt.stream.lsl")
    assert not broken("vibe_rt/runtime/cache.py", "vibe_rt.models.vibe")
    assert not broken("vibe_rt/stream/run.py", "vibe_rt.calibration")
    assert not broken("vibe_rt/stream/run.py", "vibe_rt.devices")
    assert broken("vibe_rt/devices/profile.py", "vibe_rt.data._forward")
    assert not broken("vibe_rt/devices/profile.py", "vibe_rt.montage")
    assert not broken("vibe_rt/stream/run.py", "vibe_rt")
    assert broken("vibe_rt/stream/run.py", "vibe_rt.data.simulate")
    assert broken("vibe_rt/compare/live.py", "vibe_rt._commands.compare")
    assert not broken("vibe_rt/cli.py", "vibe_rt._commands.compare")
    assert broken("vibe_rt/_commands/calibrate.py", "vibe_rt._commands.compare")
    assert not broken("vibe_rt/_commands/calibrate.py", "vibe_rt._commands._options")
    assert not broken("vibe_rt/_commands/calibrate.py", "vibe_rt.compare.calibrate")
    assert broken("vibe_rt/stats.py", "vibe_rt.montage") and not broken("vibe_rt/system.py", "vibe_rt")
    assert not broken("vibe_rt/montage.py", "vibe_rt.errors") and not broken("vibe_rt/system.py", "vibe_rt._logs")
    assert not broken("vibe_rt/__init__.py", "vibe_rt.errors") and broken("vibe_rt/__init__.py", "vibe_rt.stream")


def test_stream_package_loads_each_name_on_demand():
    """``vibe_rt.stream`` names its exports literally (for linters and readers) and loads each on first use."""
    import vibe_rt.stream as stream

    assert sorted(stream.__all__) == sorted(stream._MODULE_OF)
    for name in stream.__all__:
        assert getattr(stream, name).__name__ == name or name.startswith("default_")
