"""``python -m embdrift`` runs the command line."""

from __future__ import annotations

from embdrift.cli import main

main()
