"""``ag.*`` is the documented API and nothing else, pinned against tests/public_api.txt: a name
that appears (an internal helper leaking through an import) or disappears fails here, so a
change of the public namespace is always a deliberate edit of that file."""

from __future__ import annotations

import inspect
import json
import pathlib
import subprocess
import sys
import types

import autograd_gpu as ag

PINNED = pathlib.Path(__file__).with_name("public_api.txt")


def _pinned() -> list:
    return [ln.strip() for ln in PINNED.read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]


def test_all_is_the_pinned_list():
    assert sorted(ag.__all__) == sorted(_pinned()), (
        "ag.__all__ differs from tests/public_api.txt: "
        f"added {sorted(set(ag.__all__) - set(_pinned()))}, "
        f"removed {sorted(set(_pinned()) - set(ag.__all__))}")
    assert len(set(ag.__all__)) == len(ag.__all__)


def test_the_namespace_after_import_is_exactly_all():
    # a fresh interpreter: this test session has imported many submodules since
    code = ("import json, autograd_gpu as ag; "
            "print(json.dumps(sorted(n for n in dir(ag) if not n.startswith('_'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    public = json.loads(out.strip().splitlines()[-1])
    assert public == sorted(ag.__all__), (
        f"not in __all__: {sorted(set(public) - set(ag.__all__))}; "
        f"missing: {sorted(set(ag.__all__) - set(public))}")


def test_internal_modules_are_not_attributes_but_still_import():
    import autograd_gpu.ops.registry as registry
    import autograd_gpu.tape as tape_module

    for name in ("tape", "ops", "backend", "sweep", "addons", "tensor", "functional"):
        assert not isinstance(getattr(ag, name, None), types.ModuleType), name
    assert tape_module.GradientTape is ag.GradientTape
    assert registry.REGISTRY is ag.REGISTRY
    assert isinstance(ag.vmap, types.FunctionType)


def test_every_public_name_is_documented():
    undocumented = [n for n in ag.__all__ if n != "REGISTRY"
                    and not (inspect.getdoc(getattr(ag, n)) or "").strip()]
    assert not undocumented, f"public names without a docstring: {undocumented}"
