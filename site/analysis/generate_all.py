"""Reproduce the figures of the post "embedding drift" through the embdrift library.

    python site/analysis/generate_all.py [--task embedding_drift] [--out DIR]

A thin entry: the figures come from ``embdrift.demo.run_demo`` (the same code as
``embdrift demo``). Same seed, same bytes: the SVGs carry no date and a fixed id salt. When the
running Python lacks embdrift, the script re-runs itself with the project's ``.venv`` (created by
``make demo``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TASKS = ("embedding_drift",)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=TASKS + ("all",), default="all")
    parser.add_argument("--out", type=Path, default=REPO / "site" / "figures")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        from embdrift.demo import run_demo
    except ImportError:
        venv_python = REPO / ".venv" / "bin" / "python"
        if venv_python.exists() and Path(sys.prefix).resolve() != venv_python.parents[1].resolve():
            os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])
        print("embdrift is not installed: run 'make demo' first.", file=sys.stderr)
        return 2
    for task in TASKS if args.task == "all" else (args.task,):
        output = run_demo(args.out / task, seed=args.seed)
        for path in (*output.figures, output.scores):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
