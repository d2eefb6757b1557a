"""Engines: run embdrift's sketches where the data lives, beyond one process.

An engine is an edge: it reads partitions, feeds each to the same mergeable sketches a
single-process run uses (:class:`~embdrift.stream.SketchSet`), merges them and tests the merged
sketches with the stream machinery (:class:`~embdrift.stream.StreamMonitor`). It never
re-implements a statistic. :mod:`embdrift.engines.dask` runs on Dask (``pip install
'embdrift[dask]'``); it imports Dask only when it is used. See docs/dask.md.
"""

from __future__ import annotations

__all__: list[str] = []
