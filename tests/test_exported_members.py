"""Every module's ``__all__`` lists exactly its public names (STYLE.md §1)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import pytest

import embdrift

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(embdrift.__path__, prefix="embdrift.")
    if not m.name.endswith("__main__")
)


def _defined_public(module: types.ModuleType) -> set[str]:
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if inspect.ismodule(value):
            continue
        if getattr(value, "__module__", module.__name__) == module.__name__ and (
            inspect.isclass(value) or inspect.isfunction(value)
        ):
            names.add(name)
    return names


@pytest.mark.parametrize("name", ["embdrift", *MODULES])
def test_all_is_declared_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    for exported in module.__all__:
        assert hasattr(module, exported), f"{name}.__all__ names missing {exported!r}"
    missing = _defined_public(module) - set(module.__all__)
    assert not missing, f"{name} defines public names not in __all__: {sorted(missing)}"


def test_no_pickle_anywhere_in_the_package() -> None:
    import pathlib

    root = pathlib.Path(embdrift.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text, path
        assert "allow_pickle=True" not in text, path
