"""The benchmark tables of README.md and benchmarks/README.md, rebuilt from results/*.json.

A thin entry point: the code is :mod:`vibe_rt.bench.tables`, also run by ``vibe-rt bench tables`` (this script
takes the same options). CI runs ``python benchmarks/make_table.py --check`` (exit 1 when a README is out of date).

Usage::

    python benchmarks/make_table.py                  # update both READMEs from benchmarks/results/
    python benchmarks/make_table.py --check          # exit 1 when a README is out of date
    python benchmarks/make_table.py --results DIR --print
"""

from _entry import run

if __name__ == "__main__":
    raise SystemExit(run("tables"))
