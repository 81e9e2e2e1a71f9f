"""CPU checks of the fused CUDA kernels: every kernels/*.cu compiles with nvcc for sm_80 and
sm_90 (skipped without nvcc), every source is declared by one kernel family whose declaration
matches its source and its module, the Python side of every launch matches the kernel's C
signature, and the CPU twin of the dropout generator reproduces Philox4x32-10's published
known-answer vectors."""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import autograd_gpu.amp as amp_mod
import autograd_gpu.backend.kernels as kpkg
import autograd_gpu.clipping as clip_mod
from autograd_gpu import dtypes as _dt
from autograd_gpu.backend.kernels import bias_act as k_bias_act
from autograd_gpu.backend.kernels import cast as k_cast
from autograd_gpu.backend.kernels import cross_entropy as k_ce
from autograd_gpu.backend.kernels import dropout as k_dropout
from autograd_gpu.backend.kernels import elementwise as k_ew
from autograd_gpu.backend.kernels import layer_norm as k_ln
from autograd_gpu.backend.kernels import loader
from autograd_gpu.backend.kernels import multi_tensor as k_mt
from autograd_gpu.backend.kernels import segment_sum as k_seg
from autograd_gpu.backend.kernels import small as k_small
from autograd_gpu.backend.kernels import softmax as k_softmax
from autograd_gpu.backend.kernels.loader import FAMILIES, KernelFamily, kernel_dir, kernel_source
from autograd_gpu.optim import kernels as k_optim

for _info in pkgutil.iter_modules(kpkg.__path__):  # every family module of the backend
    importlib.import_module(f"autograd_gpu.backend.kernels.{_info.name}")

KDIR = Path(str(kernel_dir()))
SOURCES = sorted(p.stem for p in KDIR.glob("*.cu"))
NVCC = shutil.which("nvcc")


def _module_of(fam):
    """The module that declares a family (its entries are that module's functions)."""
    import sys

    for mod in list(sys.modules.values()):
        if any(getattr(mod, n, None) is fam for n in ("FAMILY", "KERNELS")):
            return mod
    raise AssertionError(f"no module declares {fam!r}")


def test_every_source_is_declared_by_one_family():
    by_source = {}
    for fam in FAMILIES.values():
        by_source.setdefault(fam.source, []).append(fam.name)
    assert set(by_source) == set(SOURCES), "kernels/*.cu vs the declared families"
    assert all(len(v) == 1 for v in by_source.values()), by_source


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_declaration_matches_its_module_and_the_registry(name):
    from autograd_gpu.backend.cupy_backend import CupyBackend
    from autograd_gpu.ops.registry import REGISTRY
    from autograd_gpu.optim.optimizers import SGD, Adam

    fam = FAMILIES[name]
    mod = _module_of(fam)
    assert fam.entries, name
    for entry in fam.entries:
        assert callable(getattr(mod, entry, None)), f"{name}: no entry {entry} in {mod.__name__}"
    assert set(fam.references) == set(fam.entries), f"{name}: a reference per entry"
    assert all(callable(r) for r in fam.references.values())
    for op in fam.ops:
        assert op in REGISTRY, f"{name}: op {op!r} is not registered"
    scope = {"CupyBackend": CupyBackend, "SGD": SGD, "Adam": Adam}
    for caller in fam.callers:
        head, *rest = caller.split(".")
        obj = scope.get(head, getattr(mod, head, None))
        for part in rest:
            obj = getattr(obj, part, None)
        assert callable(obj), f"{name}: caller {caller!r} not found"
    assert fam.dtypes and fam.name_expressions
    if fam.templates:
        assert all(d in loader.FLOATS for d in fam.dtypes)


def test_families_are_declared_once():
    with pytest.raises(ValueError, match="declared twice"):
        KernelFamily("softmax", source="softmax", templates=("softmax_fwd",))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_source_splices_the_common_header(name):
    fam = FAMILIES[name]
    src = kernel_source(fam.source)
    assert '#include "common.cuh"' not in src
    assert "struct Acc" in src  # the header's text is in the NVRTC source
    for kernel in fam.templates + fam.plain:
        assert f" {kernel}(" in src, f"{fam.source}.cu does not define {kernel}"


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
@pytest.mark.parametrize("stem", SOURCES)
def test_kernel_compiles_for_sm80_and_sm90(stem, tmp_path):
    cmd = [NVCC, "-std=c++17", "-DAG_COMPILE_CHECK", f"-I{KDIR}",
           "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90",
           "-fatbin", "-o", str(tmp_path / f"{stem}.fatbin"), str(KDIR / f"{stem}.cu")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"nvcc failed for {stem}.cu:\n{r.stderr[-4000:]}"
    assert (tmp_path / f"{stem}.fatbin").stat().st_size > 0


# Random123's known-answer vectors for philox4x32-10: (counter, key) -> output
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,want", KAT)
def test_philox_known_answers(ctr, key, want):
    got = k_dropout.philox4x32_10(np.array([ctr], dtype=np.uint32), key)[0]
    assert [int(v) for v in got] == list(want)


def test_philox_stream_layout_and_dropout_rate():
    seed, offset = 0x1234_5678_9ABC_DEF0, 7
    w = k_dropout.philox_words(10, seed, offset)
    block1 = k_dropout.philox4x32_10(
        np.array([[1, 0, offset, 0]], dtype=np.uint32), (seed & 0xFFFFFFFF, seed >> 32))[0]
    assert np.array_equal(w[4:8], block1)  # word i is lane i % 4 of block i // 4
    keep = k_dropout.dropout_keep_numpy((200, 500), 0.3, seed=3)
    assert abs(keep.mean() - 0.7) < 0.01
    assert np.array_equal(keep, k_dropout.dropout_keep_numpy((200, 500), 0.3, seed=3))
    assert not np.array_equal(keep, k_dropout.dropout_keep_numpy((200, 500), 0.3, seed=4))
    assert not np.array_equal(keep, k_dropout.dropout_keep_numpy((200, 500), 0.3, seed=3, offset=1))
    u = k_dropout.philox_uniform((1000,), seed=1)
    assert u.dtype == np.float32 and u.min() >= 0.0 and u.max() < 1.0


def test_kernel_wrappers_reject_unsupported_dtypes():
    with pytest.raises(TypeError, match="float16, bfloat16, float32 or float64"):
        loader.ctype(np.int32)


# ---------------------------------------------------------------------------------------------
# Launch-argument check without a GPU: every wrapper is run with numpy arrays and a stand-in for
# the compiled kernel that compares each argument with the kernel's C signature (count, scalar
# types, pointer element types). A mismatch here would be garbage on the device.

_SCALARS = {"long long": np.int64, "int": np.int32, "float": np.float32, "double": np.float64,
            "unsigned long long": np.uint64}


def _signature(stem, name):
    import re

    src = kernel_source(stem)
    m = re.search(r"__global__ void " + re.escape(name) + r"\((.*?)\)\s*\{", src, re.S)
    assert m, f"{name} not found in {stem}.cu"
    params = []
    for p in m.group(1).split(","):
        p = " ".join(p.replace("__restrict__", "").replace("const ", "").split())
        mt = re.fullmatch(r"MT_DECL\((\w+)\)", p)
        if mt:
            params += ["unsigned long long"] * k_mt.MT_SLOTS
            continue
        if "*" in p:
            params.append(("ptr", p.split("*")[0].strip()))
        else:
            params.append(" ".join(p.split()[:-1]))
    # MT_DECL expands to MT_SLOTS comma-separated params; the naive split above cut them apart
    out = []
    for p in params:
        if isinstance(p, str) and p.startswith("MT_DECL"):
            continue
        out.append(p)
    return out


def _elem_ok(base, arr, dtype):
    acc = np.float64 if dtype == np.float64 else np.float32
    want = {"T": [dtype], "typename Acc<T>::t": [acc], "long long": [np.int64],
            "float": [np.float32], "double": [np.float64], "__half": [np.float16],
            "__nv_bfloat16": [_dt.bfloat16], "unsigned char": [np.uint8, np.bool_],
            "unsigned int": [np.uint32]}[base]
    return arr.dtype in [np.dtype(w) for w in want]


class _FakeKernel:
    calls: list = []

    def __init__(self, stem, name, dtype):
        self.stem, self.name, self.dtype = stem, name, dtype

    def __call__(self, grid, block, args):
        sig = _signature(self.stem, self.name)
        assert len(args) == len(sig), f"{self.name}: {len(args)} args, signature has {len(sig)}"
        for i, (a, p) in enumerate(zip(args, sig)):
            if isinstance(p, tuple):
                assert isinstance(a, np.ndarray), f"{self.name} arg {i}: expected an array"
                assert a.flags.c_contiguous, f"{self.name} arg {i}: not contiguous"
                assert _elem_ok(p[1], a, self.dtype), \
                    f"{self.name} arg {i}: {p[1]}* got {a.dtype} (T={self.dtype})"
            else:
                assert type(a) is _SCALARS[p], f"{self.name} arg {i}: {p} got {type(a)}"
        assert 1 <= len(grid) <= 3 and all(int(g) >= 1 for g in grid), grid
        assert grid[0] < 2**31 and all(g < 65536 for g in grid[1:]), grid
        assert len(block) == 1 and 32 <= block[0] <= 1024 and block[0] % 32 == 0, block
        _FakeKernel.calls.append(self.name)


class _FakeBk:
    xp = np
    index = 0
    name = "fake"


@pytest.fixture
def fake_launch(monkeypatch):
    def k(self, bk, name, dtype=None):
        return _FakeKernel(self.source, name, None if dtype is None else np.dtype(dtype))

    monkeypatch.setattr(KernelFamily, "kernel", k)
    monkeypatch.setattr(k_mt, "ptr", lambda a: np.uint64(0 if a is None else 1))
    _FakeKernel.calls = []
    return _FakeBk()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # np.empty outputs: garbage values
@pytest.mark.parametrize("dtype", [np.float32, np.float16, _dt.bfloat16, np.float64])
def test_launch_arguments_match_kernel_signatures(fake_launch, dtype):
    bk = fake_launch
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 7)).astype(dtype)
    g = rng.standard_normal((3, 5, 7)).astype(dtype)
    for fwd, bwd in ((k_softmax.softmax, k_softmax.softmax_grad),
                     (k_softmax.log_softmax, k_softmax.log_softmax_grad)):
        y = fwd(bk, x)
        bwd(bk, g, y)
        bwd(bk, np.stack([g, g]), y)  # batched cotangent
    labels = rng.integers(0, 7, size=(3, 5))
    loss, lse, dlog = k_ce.cross_entropy(bk, x, labels)
    assert loss.shape == (3, 5) and lse.shape == (3, 5) and dlog.shape == x.shape
    k_ce.cross_entropy(bk, x, labels, ignore_index=-100, label_smoothing=0.1, want_dlogits=False)
    k_ce.cross_entropy_grad(bk, loss, dlog)
    k_ce.cross_entropy_dlogits(bk, x, labels, lse[..., None], label_smoothing=0.1)
    k_ln.layer_norm_grad_y(bk, g, x, lse[..., None])
    k_ln.layer_norm_grad_y(bk, np.stack([g, g]), x, lse)
    gam = rng.standard_normal(7).astype(dtype)
    for gm, bt in ((gam, gam), (None, None)):
        y, mu, rs = k_ln.layer_norm(bk, x, gm, bt, 1e-5)
        assert mu.shape == (3, 5)
        k_ln.layer_norm_grad(bk, g, x, gm, mu, rs)
    for act in ("relu", "gelu", "tanh"):
        k_bias_act.bias_act(bk, x, gam, act)
        dx, db = k_bias_act.bias_act_grad(bk, g, x, gam, act)
        assert db.shape == gam.shape
        assert k_bias_act.bias_act_grad(bk, g, x, gam, act, need_db=False)[1] is None
        k_bias_act.bias_act_grad(bk, g, x, None, act)
    t = np.zeros((6, 7), dtype=dtype)
    k_seg.scatter_add(bk, t, np.array([1, -1, 1]), np.ones((3, 7), dtype))
    k_seg.scatter_add(bk, t, (np.array([0, 2]), np.array([1, 1])), np.ones(2, dtype))
    k_seg.scatter_add(bk, t, t > 0, np.ones(int((t > 0).sum()), dtype))
    k_dropout.dropout(bk, x, 0.25, 123, 4)
    k_dropout.dropout_mask(bk, (4, 4), 0.25, 123, 0, dtype)
    arrays = [rng.standard_normal(s).astype(dtype) for s in [(3,), (4, 5)] * 6]
    clip_mod.fused_global_norm(bk, arrays)
    clip_mod.fused_clip_by_global_norm(bk, arrays, 1.0)
    clip_mod.fused_scale(bk, arrays, 0.5, inplace=True)
    amp_mod.fused_unscale_and_check(bk, arrays, 0.25)
    for (src, dst) in k_cast._NAMES:
        assert k_cast.cast_(bk, x.astype(src), dst).dtype == dst
    n = x.size
    k_ew._launch(bk, "relu_fwd", x.dtype, (x, np.empty_like(x), np.int64(n)), n)
    k_ew._launch(bk, "relu_bwd", x.dtype, (g, x, np.empty_like(x), np.int64(n)), n)
    k_ew._launch(bk, "add_rowvec", x.dtype, (x, gam, np.empty_like(x), np.int64(n),
                                             np.int64(7)), n)
    want = {"softmax_fwd", "softmax_bwd", "ce_fwd", "ce_bwd", "ce_dlogits", "ln_fwd", "ln_bwd_dx",
            "ln_bwd_y",
            "ln_bwd_params", "bias_act_fwd", "bias_act_bwd", "segment_sum", "dropout_fwd",
            "l2norm_partial", "mt_scale", "unscale_check", "cast_f32_bf16", "cast_bf16_f32",
            "cast_f32_f16", "cast_f16_f32", "relu_fwd", "relu_bwd", "add_rowvec"}
    assert want <= set(_FakeKernel.calls)


def test_optimizer_launch_arguments(fake_launch):
    bk = fake_launch
    rng = np.random.default_rng(1)
    shapes = [(3,), (4, 5)] * 5
    p = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    g = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    b = [np.zeros(s, np.float32) for s in shapes]
    k_optim.sgd_momentum_(bk, p, g, b, 0.1, momentum=0.9, first=True)
    k_optim.sgd_momentum_(bk, p, g, None, 0.1)
    k_optim.adam_(bk, p, g, b, [np.zeros(s, np.float32) for s in shapes], 3, 1e-3, adamw=True)
    assert _FakeKernel.calls.count("sgd_momentum") == 4 and _FakeKernel.calls.count("adam") == 2
    with pytest.raises(TypeError, match="float32"):
        k_optim.adam_(bk, [x.astype(np.float64) for x in p], g, b, b, 1)


def test_optimizer_kernel_entries_take_the_optimizer_contract(fake_launch):
    bk = fake_launch
    p, g = np.ones(5, np.float32), np.ones(5, np.float32)
    b, v = np.zeros(5, np.float32), np.zeros(5, np.float32)
    assert k_optim.sgd_momentum(bk, p, g, b, lr=0.1, momentum=0.9, dampening=0.0,
                                weight_decay=0.0, nesterov=False, first=True) is p
    k_optim.adam(bk, p, g, b, v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 decoupled=True, step=1)
    k_optim.adam(bk, [p, p], [g, g], [b, b], [v, v], lr=1e-3, step=2)
    assert _FakeKernel.calls == ["sgd_momentum", "adam", "adam"]


# ---------------------------------------------------------------------------------------------
# The GPU backend's kernel choices, run on the CPU: a NumPy backend with CupyBackend's fused
# operations, its kernel families ready and each entry replaced by the family's NumPy reference
# (same contract). Forward values, dtypes and first-order gradients (through the fused-gradient
# primitives) must equal the plain NumPy path; this checks the wiring (shapes, saved values,
# dtypes) that the GPU then runs with the real kernels.

_ROW_FAMILIES = (k_softmax, k_ce, k_ln, k_bias_act, k_dropout)


@pytest.fixture
def ref_backend(monkeypatch):
    """(backend, names of the entries it ran)."""
    from autograd_gpu.backend.cupy_backend import CupyBackend
    from autograd_gpu.backend.numpy_backend import NumpyBackend

    ran = []
    for mod in _ROW_FAMILIES:
        monkeypatch.setattr(mod.FAMILY, "ready", lambda bk: True)
        for entry, ref in mod.FAMILY.references.items():
            def run(bk, *args, _ref=ref, _entry=entry, **kw):
                ran.append(_entry)
                return _ref(*args, **kw)

            monkeypatch.setattr(mod, entry, run)
    ns = {name: getattr(CupyBackend, name) for name in CupyBackend.FUSED}
    return type("RefBackend", (NumpyBackend,), ns)(), ran


_WIRED = {"softmax": {"softmax", "softmax_grad"}, "log_softmax": {"log_softmax",
                                                                   "log_softmax_grad"},
          "cross_entropy": {"cross_entropy", "cross_entropy_dlogits"},
          "layer_norm": {"layer_norm", "layer_norm_grad_y"}, "bias_act": {"bias_act"},
          "gelu": set()}


def _through(op, bk, inputs, params, u, cast):
    import autograd_gpu as ag
    from autograd_gpu.ops.registry import apply
    from autograd_gpu.tensor import Tensor

    ts = [Tensor(a.astype(cast) if a.dtype == np.float64 else a, bk)
          if isinstance(a, np.ndarray) else a for a in inputs]
    diff = [t for t in ts if isinstance(t, Tensor) and t.dtype.kind in "fV"]
    with ag.GradientTape() as tape:
        tape.watch(diff)
        y = apply(op, *ts, **params)
    gs = tape.gradient(y, diff, output_gradients=Tensor(u.astype(y.dtype), bk))
    return y.numpy(), [g.numpy() for g in gs]


@pytest.mark.parametrize("name", sorted(_WIRED))
@pytest.mark.parametrize("cast", [np.float64, np.float32, _dt.bfloat16])
def test_kernel_branches_match_the_numpy_path(name, cast, ref_backend):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from autograd_gpu.backend import NUMPY
    from autograd_gpu.ops.registry import REGISTRY

    op = REGISTRY[name]
    ref_bk, ran = ref_backend
    tol = {np.float64: 1e-12, np.float32: 2e-6, _dt.bfloat16: 2e-2}[cast]

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data):
        inputs, params = op.sample(data.draw)
        inputs = list(inputs)
        y0 = op.forward(NUMPY, *inputs, **params)[0]
        u = np.random.default_rng(0).standard_normal(np.shape(y0))
        ya, ga = _through(op, NUMPY, inputs, params, u, cast)
        yb, gb = _through(op, ref_bk, inputs, params, u, cast)
        assert ya.dtype == yb.dtype and ya.shape == yb.shape
        np.testing.assert_allclose(yb.astype(np.float64), ya.astype(np.float64), rtol=tol,
                                   atol=tol)
        for a, b in zip(ga, gb):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_allclose(b.astype(np.float64), a.astype(np.float64), rtol=tol,
                                       atol=4 * tol)

    check()
    assert _WIRED[name] <= set(ran), f"{name}: kernels run {sorted(set(ran))}"


def test_cuda_module_without_a_gpu():
    import autograd_gpu as ag
    from autograd_gpu.backend.cupy_backend import cupy_status

    if cupy_status()[0]:
        pytest.skip("a GPU is usable here")
    assert ag.cuda.is_available() is False and ag.cuda.device_count() == 0
    calls = []
    step = ag.cuda.graphed(lambda x: calls.append(x) or x * 2, warmup=1)
    x = ag.Tensor.from_array(np.ones(3, np.float32), device="cpu")
    assert np.array_equal(step(x).numpy(), [2, 2, 2])  # warm-up runs eagerly anywhere
    with pytest.raises(ag.DeviceError, match="no usable GPU"):
        step(x)  # capture needs a GPU
    with pytest.raises(ag.ArgumentError, match="warmup"):
        ag.cuda.graphed(lambda x: x, warmup=0)


class _CudaBk:
    """A stand-in backend that runs CUDA kernels (hashable, as a backend must be)."""

    cuda_kernels = True
    index = 0


def test_family_readiness_compiles_once_and_honours_the_switch(monkeypatch):
    fam = k_softmax.FAMILY
    monkeypatch.setattr(fam, "_ready", {})
    calls = []
    monkeypatch.setattr(fam, "compile", lambda bk: calls.append(bk))
    bk = _CudaBk()
    assert fam.ready(bk) and fam.ready(bk)
    assert calls == [bk]  # probed once per backend, then cached
    from autograd_gpu.backend import NUMPY

    assert not fam.ready(NUMPY) and calls == [bk]  # a backend without CUDA kernels: no compile

    def broken(bk):
        raise RuntimeError("nvrtc: error")

    monkeypatch.setattr(fam, "compile", broken)
    with pytest.warns(RuntimeWarning, match="softmax.cu are unavailable.*nvrtc: error"):
        assert not fam.ready(_CudaBk())
    monkeypatch.setattr(fam, "compile", lambda bk: None)
    monkeypatch.setenv("AUTOGRAD_GPU_KERNELS", "0")
    assert not fam.ready(_CudaBk())
    monkeypatch.delenv("AUTOGRAD_GPU_KERNELS")
    try:
        loader.set_enabled(False)  # clears every family's answers
        assert not fam.ready(bk)
        loader.set_enabled(True)
        assert fam.ready(bk)
    finally:
        loader.set_enabled(None)


def test_family_compiles_its_name_expressions(monkeypatch):
    """compile() builds the module from the spliced source with every template instance and
    plain kernel, then loads the first kernel (a stand-in cupy.RawModule records the call)."""
    import sys
    import types

    made = []

    class RawModule:
        def __init__(self, code, options, name_expressions):
            made.append((code, options, tuple(name_expressions)))

        def get_function(self, expr):
            return ("fn", expr)

    cuda = types.SimpleNamespace(Device=lambda i: __import__("contextlib").nullcontext())
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(RawModule=RawModule,
                                                                   cuda=cuda))
    fam = k_ln.FAMILY
    monkeypatch.setattr(fam, "_modules", {})
    monkeypatch.setattr(fam, "_functions", {})
    fam.compile(_CudaBk())
    code, options, names = made[0]
    assert "ln_fwd" in code and options == ("-std=c++17",)
    assert names == tuple(f"{k}<{c}>" for k in fam.templates
                          for c in ("float", "double", "__half", "__nv_bfloat16"))
    assert fam.kernel(_CudaBk(), "ln_bwd_y", np.float16) == ("fn", "ln_bwd_y<__half>")
    assert len(made) == 1  # one module per device
    with pytest.raises(TypeError, match="float16, bfloat16"):
        fam.kernel(_CudaBk(), "ln_fwd", np.int32)
    fam = k_optim.FAMILY
    monkeypatch.setattr(fam, "_modules", {})
    monkeypatch.setattr(fam, "_functions", {})
    fam.compile(_CudaBk())
    assert made[-1][2] == ("sgd_momentum", "adam")


# ---------------------------------------------------------------------------------------------
# The multi-tensor bookkeeping (groups of MT_SLOTS, slot offsets, partial buffers), checked on
# the CPU: pointers become indices into a table of numpy arrays and each kernel's grid-level
# semantics is emulated in numpy, block by block as the CUDA code partitions the work.


class _Emu:
    def __init__(self):
        self.arrays = {}

    def ptr(self, a):
        if a is None:
            return np.uint64(0)
        key = len(self.arrays) + 1
        self.arrays[key] = a
        return np.uint64(key)

    def pick(self, args, list_no, t):
        return self.arrays[int(args[list_no * k_mt.MT_SLOTS + t])]

    def kernel(self, family, bk, name, dtype=None):
        emu = self

        def run(grid, block, args):
            bx, nt = grid
            nthreads = bx * block[0]
            nl = {"l2norm_partial": 1, "mt_scale": 2, "unscale_check": 1, "sgd_momentum": 3,
                  "adam": 4}[name]
            sizes = [int(s) for s in args[nl * k_mt.MT_SLOTS:(nl + 1) * k_mt.MT_SLOTS]]
            rest = args[(nl + 1) * k_mt.MT_SLOTS:]
            for t in range(nt):
                n = sizes[t]
                x = emu.pick(args, 0, t).reshape(-1)
                assert x.size == n, (name, t, x.size, n)
                if name == "l2norm_partial":
                    part, base = rest
                    for b in range(bx):  # block b covers i = b*T + k*nthreads + tid
                        idx = np.concatenate([np.arange(b * block[0] + s, n, nthreads)
                                              for s in range(block[0])]) if n else []
                        v = x[np.asarray(idx, dtype=np.int64)].astype(part.dtype)
                        part[int(base) + t * bx + b] = (v * v).sum()
                elif name == "mt_scale":
                    coef, max_norm, mode = rest
                    f = float(coef.reshape(()))
                    if mode == 1:
                        f = min(1.0, float(max_norm) / (f + 1e-6))
                    emu.pick(args, 1, t).reshape(-1)[:] = (x.astype(np.float64) * f).astype(
                        x.dtype)
                elif name == "unscale_check":
                    inv, found = rest
                    if not np.isfinite(x.astype(np.float64)).all():
                        found[...] = 1.0
                    x[:] = (x.astype(np.float64) * float(inv.reshape(()))).astype(x.dtype)
                elif name == "sgd_momentum":
                    lr, mom, damp, wd, nest, first = (float(v) for v in rest)
                    g = emu.pick(args, 1, t).reshape(-1)
                    d = g + wd * x
                    if mom:
                        buf = emu.pick(args, 2, t).reshape(-1)
                        buf[:] = d if first else mom * buf + (1 - damp) * d
                        d = d + mom * buf if nest else buf
                    x[:] = x - lr * d
                elif name == "adam":
                    lr, b1, b2, eps, wd, adamw, step = rest
                    g = emu.pick(args, 1, t).reshape(-1).astype(np.float64)
                    m, v = emu.pick(args, 2, t).reshape(-1), emu.pick(args, 3, t).reshape(-1)
                    s = float(step.reshape(()))
                    p = x.astype(np.float64)
                    if adamw:
                        p = p * (1 - lr * wd)
                    else:
                        g = g + wd * p
                    m[:] = b1 * m + (1 - b1) * g
                    v[:] = b2 * v + (1 - b2) * g * g
                    x[:] = p - (lr / (1 - b1**s)) * m / (np.sqrt(v) / np.sqrt(1 - b2**s) + eps)
            for t in range(nt, k_mt.MT_SLOTS):  # unused slots are null
                assert int(args[t]) == 0

        return run


@pytest.fixture
def emu(monkeypatch):
    e = _Emu()
    monkeypatch.setattr(KernelFamily, "kernel",
                        lambda self, bk, name, dtype=None: e.kernel(self, bk, name, dtype))
    monkeypatch.setattr(k_mt, "ptr", e.ptr)
    return _FakeBk()


def _arrays(dtypes, n=19, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(rng.integers(0, 4), rng.integers(1, 700)) for _ in range(n)]
    return [rng.standard_normal(s).astype(dtypes[i % len(dtypes)]) for i, s in enumerate(shapes)]


@pytest.mark.parametrize("dtypes", [[np.float32], [np.float32, np.float16, _dt.bfloat16],
                                    [np.float64, np.float32]])
def test_multi_tensor_bookkeeping(emu, dtypes):
    bk = emu
    arrs = _arrays(dtypes)
    ref = np.sqrt(sum(float((a.astype(np.float64) ** 2).sum()) for a in arrs))
    norm = clip_mod.fused_global_norm(bk, arrs)
    assert abs(float(norm) - ref) <= 1e-5 * ref
    assert norm.dtype == (np.float64 if np.float64 in dtypes else np.float32)
    clipped, _ = clip_mod.fused_clip_by_global_norm(bk, arrs, 1.0)
    for a, c in zip(arrs, clipped):
        np.testing.assert_allclose(c.astype(np.float64), a.astype(np.float64) / (ref + 1e-6),
                                   rtol=1e-2, atol=1e-6)
    before = [a.copy() for a in arrs]
    found = amp_mod.fused_unscale_and_check(bk, arrs, 0.5)
    assert float(found) == 0.0
    for a, b in zip(arrs, before):
        np.testing.assert_array_equal(a, (b.astype(np.float64) * 0.5).astype(b.dtype))
    big = max(range(len(arrs)), key=lambda i: arrs[i].size)
    arrs[big].reshape(-1)[-1] = np.inf
    assert float(amp_mod.fused_unscale_and_check(bk, arrs, 1.0)) == 1.0


def test_optimizer_bookkeeping(emu):
    bk = emu
    ps = _arrays([np.float32], n=13, seed=1)
    gs = _arrays([np.float32], n=13, seed=1)
    gs = [g * 0.5 + 1 for g in gs]
    bufs = [np.zeros_like(p) for p in ps]
    ref = [p.astype(np.float64) - 0.1 * g for p, g in zip(ps, gs)]
    k_optim.sgd_momentum_(bk, ps, gs, bufs, 0.1, momentum=0.9, first=True)
    for p, r, b, g in zip(ps, ref, bufs, gs):
        np.testing.assert_allclose(p, r, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(b, g)
    m = [np.zeros_like(p) for p in ps]
    v = [np.zeros_like(p) for p in ps]
    start = [p.copy() for p in ps]
    k_optim.adam_(bk, ps, gs, m, v, 1, lr=0.01)
    for p, s0, g in zip(ps, start, gs):  # the first Adam step moves each entry by ~lr
        np.testing.assert_allclose(p, s0 - 0.01 * np.sign(g), rtol=1e-4, atol=1e-5)


def _segment_sum_emulated(grid, block, args):
    """segment_sum.cu, thread (p, j) by thread, in numpy."""
    sorted_idx, order, values, target, K, D, M = args
    K, D, M = int(K), int(D), int(M)
    tf = target.reshape(-1)
    for p in range(K):
        row = int(sorted_idx[p])
        if p > 0 and int(sorted_idx[p - 1]) == row:
            continue
        if not 0 <= row < M:
            continue
        q = p
        acc = np.zeros(D, dtype=np.float64)
        while q < K and int(sorted_idx[q]) == row:
            acc += values[int(order[q]) * D:(int(order[q]) + 1) * D]
            q += 1
        tf[row * D:(row + 1) * D] = (tf[row * D:(row + 1) * D] + acc).astype(tf.dtype)


def test_scatter_add_bookkeeping(monkeypatch):
    monkeypatch.setattr(KernelFamily, "kernel",
                        lambda self, bk, name, dtype=None: _segment_sum_emulated)
    bk = _FakeBk()
    rng = np.random.default_rng(3)
    cases = [
        ((7, 3), rng.integers(-7, 7, size=20), (20, 3)),               # rows, negative indices
        ((5,), np.array([4, 4, 0, -1]), (4,)),                         # 1-D target
        ((6, 2, 3), rng.integers(0, 6, size=(4, 5)), (4, 5, 2, 3)),    # multi-dim index
        ((6, 5), (np.array([0, 5, 0]), np.array([1, 1, 1])), (3,)),    # tuple of arrays
        ((6, 5), (slice(1, 3), np.array([2, 2, 0])), (2, 3)),          # slice + array
        ((4, 4), rng.random((4, 4)) > 0.5, None),                      # boolean mask
    ]
    for shape, index, vshape in cases:
        if vshape is None:
            vshape = (int(index.sum()),)
        vals = rng.standard_normal(vshape)
        got = np.zeros(shape)
        k_seg.scatter_add(bk, got, index, vals)
        want = np.zeros(shape)
        np.add.at(want, index, vals)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=str(index))
    with pytest.raises(ValueError, match="C-contiguous"):
        k_seg.scatter_add(bk, np.zeros((4, 3)).T, np.array([0]), np.ones(4))


def test_dropout_branch_uses_the_philox_mask(ref_backend):
    import autograd_gpu as ag
    from autograd_gpu.tensor import Tensor

    bk, ran = ref_backend
    x = Tensor(np.ones((7, 9), np.float32), bk)
    y = ag.dropout(x, p=0.25, seed=99)
    keep = k_dropout.dropout_keep_numpy((7, 9), 0.25, 99)
    assert ran == ["dropout_mask"]
    np.testing.assert_allclose(y.numpy(), np.where(keep, 1 / 0.75, 0.0), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# small.cu without a GPU: the entries of kernels/small.py run with NumPy arrays against a stand-in
# that checks each launch against the kernel's C signature and then evaluates the kernel's own
# switch, parsed from small.cu. So the op codes of SMALL_OPS must name the same cases as the
# source, the self-check must pass against independent references, and the fallbacks must hold.

def _small_cases(family):
    """op code -> Python expression of that case of the op function small.cu's ``family``
    kernels call (scalar_op, unary_op, act_grad_op)."""
    import re

    src = kernel_source("small")
    fn = family[len("small_"):] + "_op"
    body = re.search(r"T " + fn + r"\(.*?\n\}\n", src, re.S).group(0)
    assert re.search(family + r"_f32\(.*?\{\s*AG_SMALL_INDEX\(i, n\) y\[i\] = " + fn, src, re.S)
    if family == "small_act_grad":
        m = re.search(r"op == 0 \? (.*?) : (.*?);", body)
        return {0: m.group(1), 1: m.group(2)}
    cases = {int(c): e for c, e in re.findall(r"case (\d+): return (.*?);", body)}
    cases[len(cases)] = re.search(r"default: return (.*?);", body).group(1)
    return {c: re.sub(r"ag_(\w+)\(", r"np.\1(", e) for c, e in cases.items()}


class _SmallEmu(_FakeKernel):
    def __call__(self, grid, block, args):
        super().__call__(grid, block, args)
        family = self.name.rsplit("_", 1)[0]
        n, op = int(args[-2]), int(args[-1])
        assert grid[0] * block[0] >= n
        expr = _small_cases(family)[op]
        if family == "small_act_grad":
            env = {"a": args[0].reshape(-1)[:n], "b": args[1].reshape(-1)[:n]}
        else:
            env = {"v": args[0].reshape(-1)[:n]}
            if family == "small_scalar":
                env["s"] = args[2]
        out = args[2 if family == "small_act_grad" else 1]
        with np.errstate(all="ignore"):
            out.reshape(-1)[:n] = eval(expr, {"np": np}, env)


_SMALL_REFS = {
    "small_scalar": {"add": lambda x, s: x + s, "sub": lambda x, s: x - s,
                     "rsub": lambda x, s: s - x, "mul": lambda x, s: x * s,
                     "div": lambda x, s: x / s, "rdiv": lambda x, s: s / x},
    "small_act_grad": {"tanh": lambda g, t: g - g * t * t,
                       "sigmoid": lambda g, t: g * (t - t * t)},
}


@pytest.fixture
def small_emu(monkeypatch):
    import types

    def k(self, bk, name, dtype=None):
        return _SmallEmu(self.source, name, np.dtype("f4" if name.endswith("f32") else "f8"))

    def ref(xp, family, op):
        return getattr(np, op) if family == "small_unary" else _SMALL_REFS[family][op]

    monkeypatch.setattr(KernelFamily, "kernel", k)
    monkeypatch.setattr(k_small, "_reference", ref)
    cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(streamIsCapturing=lambda p: 0),
                                 get_current_stream=lambda: types.SimpleNamespace(ptr=0))
    xp = types.SimpleNamespace(ndarray=np.ndarray, asarray=np.asarray, asnumpy=np.asarray,
                               cuda=cuda)
    _FakeKernel.calls = []

    class Bk:  # a stand-in backend (hashable: families keep per-backend state)
        index = 0
        name = "fake"

    bk = Bk()
    bk.xp = xp
    return bk


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_kernels_follow_their_source_and_fall_back(small_emu, dtype):
    import warnings

    bk = small_emu
    x = np.random.default_rng(0).standard_normal((5, 7)).astype(dtype)
    t = np.tanh(x[::-1].copy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a failed self-check warns: an op-code mismatch
        with np.errstate(all="ignore"):
            for family, ops in k_small.SMALL_OPS.items():
                f = getattr(k_small, "bind_" + family[len("small_"):])(bk)
                for op in ops:
                    if family == "small_scalar":
                        args, ref = (x, dtype(1.5)), _SMALL_REFS[family][op](x, dtype(1.5))
                    elif family == "small_unary":
                        args, ref = (x,), getattr(np, op)(x)
                    else:
                        args, ref = (x, t), _SMALL_REFS[family][op](x, t)
                    y = f(op, *args)
                    assert y is not None, (family, op)
                    assert y.dtype == dtype and y.shape == x.shape
                    assert np.array_equal(y, ref, equal_nan=True), (family, op)
                    assert f(op, *((args[0][:, ::2],) + args[1:])) is None  # strided
                f0 = k_small.SMALL_OPS[family][0]
                big = np.zeros(k_small.SMALL_MAX, dtype)
                assert f(f0, *((big,) * (2 if family == "small_act_grad" else 1)),
                         *((dtype(1),) if family == "small_scalar" else ())) is None
                h = x.astype(np.float16)
                assert f(f0, *((h,) * (2 if family == "small_act_grad" else 1)),
                         *((np.float16(1),) if family == "small_scalar" else ())) is None
            act = k_small.bind_act_grad(bk)
            assert act("tanh", x, t[:, :3].copy()) is None  # shapes differ
            assert act("relu", x, t) is None  # not a small.cu op
            e = k_small.bind_unary(bk)("exp", x[:0])
            assert e.shape == (0, 7)  # empty: no launch
    assert {f"{fam}_{'f32' if dtype == np.float32 else 'f64'}" for fam in k_small.SMALL_OPS} \
        <= set(_FakeKernel.calls)


def test_small_kernel_self_check_failure_disables_that_op(small_emu, monkeypatch):
    bk = small_emu
    f = k_small.bind_unary(bk)
    x = np.linspace(-1, 1, 11).astype(np.float32)
    monkeypatch.setattr(k_small, "_reference",
                        lambda xp, fam, op: (lambda a: np.sin(a)) if op == "cos" else
                        getattr(np, op))
    with np.errstate(all="ignore"):
        with pytest.warns(RuntimeWarning, match="disagrees with its reference"):
            assert f("cos", x) is None
        assert f("cos", x) is None  # reported once, then the reference path
        assert np.array_equal(f("sin", x), np.sin(x))


def test_small_kernels_read_cupys_contiguity_attribute(small_emu):
    """With an array type that keeps C-contiguity as an attribute (CuPy's ``_c_contiguous``),
    the factories read it instead of building ``flags``."""
    class Arr(np.ndarray):
        reads = 0

        @property
        def _c_contiguous(self):
            Arr.reads += 1
            return self.flags.c_contiguous

    small_emu.xp.ndarray = Arr
    f = k_small.bind_unary(small_emu)
    x = np.linspace(-1, 1, 12).reshape(3, 4).view(Arr)
    with np.errstate(all="ignore"):
        y = f("tanh", x)
    assert np.array_equal(np.asarray(y), np.tanh(np.asarray(x))) and Arr.reads > 0
    assert f("tanh", x[:, ::2]) is None


def test_cupy_backend_routes_small_arrays_and_switches_off(monkeypatch):
    """CupyBackend's dispatch without a GPU: a backend object whose array module is NumPy, its
    small-kernel family ready and its entries stand-ins. Small arrays go to the small.cu
    callables (bound once, on first use), a None from them falls back to the reference, and
    ``small_kernels = False`` sends everything to the reference."""
    from autograd_gpu.backend.base import Device
    from autograd_gpu.backend.cupy_backend import CupyBackend

    calls = []

    def fake(family):
        def f(op, *args):
            calls.append((family, op))
            return None if op == "cos" else np.full(args[0].shape, 7.0)
        return f

    bk = object.__new__(CupyBackend)
    bk.xp, bk.index, bk.device, bk.array_type = np, 0, Device("cpu"), np.ndarray
    looked_up = []
    monkeypatch.setattr(k_small.FAMILY, "ready", lambda b: b is bk)
    bk._SMALL = {family: (lambda b, family=family: looked_up.append(family) or fake(family))
                 for family in CupyBackend._SMALL}
    bk.small_kernels = True
    x = np.linspace(-1, 1, 8)
    assert (bk.unary("tanh", x) == 7.0).all() and (bk.unary("exp", x) == 7.0).all()
    assert np.array_equal(bk.unary("cos", x), np.cos(x))  # declined: the reference
    assert (bk.scalar_op("mul", x, 2.0) == 7.0).all()
    assert (bk.scalar_op("sub", 2.0, x) == 7.0).all() and calls[-1] == ("small_scalar", "rsub")
    assert bk.scalar_op("mul", np.arange(3), 2.0) is None  # integers: the ufunc
    assert bk.scalar_op("mul", x, x) is None  # no Python number
    assert (bk.act_grad("tanh", x, x) == 7.0).all()
    assert looked_up == ["small_unary", "small_scalar", "small_act_grad"]  # once each
    bk.small_kernels = False
    n = len(calls)
    assert np.array_equal(bk.unary("tanh", x), np.tanh(x)) and len(calls) == n
    bk.small_kernels = True  # back on: resolved again on first use
    assert (bk.unary("tanh", x) == 7.0).all() and len(calls) == n + 1


def test_small_kernel_whose_launch_raises_is_not_used(small_emu, monkeypatch):
    """A launch that raises on the self-check (a wrong argument type, say) disables that case
    with a warning naming the error, instead of breaking every op that reaches it."""
    loads = []

    def k(self, bk, name, dtype=None):
        loads.append(name)
        if name.endswith("f32"):
            raise KeyError("no such function in the module")

        def broken(grid, block, args):
            raise TypeError("bad kernel argument")
        return broken

    monkeypatch.setattr(KernelFamily, "kernel", k)
    f = k_small.bind_scalar(small_emu)
    x = np.linspace(-1, 1, 5)
    with np.errstate(all="ignore"):
        with pytest.warns(RuntimeWarning, match="failed its self-check .TypeError: bad kernel"):
            assert f("mul", x, np.float64(2.0)) is None
        assert f("mul", x, np.float64(2.0)) is None
        with pytest.warns(RuntimeWarning, match="failed its self-check .KeyError"):
            assert f("mul", x.astype(np.float32), np.float32(2.0)) is None
        n = len(loads)
        assert f("mul", x.astype(np.float32), np.float32(2.0)) is None
        assert f("mul", x.astype(np.float16), np.float16(2.0)) is None  # not covered
        assert f("mul", x.astype(np.float16), np.float16(2.0)) is None
        assert len(loads) == n  # declined cases are remembered, not looked up again
