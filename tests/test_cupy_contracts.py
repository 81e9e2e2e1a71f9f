"""Call sites whose CuPy 14.2 counterpart behaves differently from the NumPy/SciPy function the
CPU path calls (read in CuPy 14.2's sources, 2026-12-07). Each CPU test runs our code against a
stand-in that follows CuPy's rule, so the adaptation is checked without a GPU; the ``gpu``
tests run the same calls on CuPy itself.

* cupy.cuda.nccl (CuPy 14): get_unique_id returns bytes and NcclCommunicator(ndev, commId, rank)
  takes bytes of length 128 only (CuPy 13 used a tuple of ints).
* cupyx.scipy.linalg.solve_triangular casts b to a's dtype (SciPy computes in the common one).
* cupy.linalg.solve requires a.shape[:-1] == b.shape[:-1] (NumPy broadcasts leading axes).
* cuSOLVER's status (devInfo) is not read unless ``cupyx.errstate(linalg='raise')``: a failed
  factorisation returns garbage where NumPy raises.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg

import autograd_gpu as ag
from autograd_gpu.distributed.comm import DistributedError
from autograd_gpu.distributed.nccl import NCCLCommunicator, nccl_status
from autograd_gpu.ops import solves as _sol

# ---- NCCL's unique id ------------------------------------------------------------------------


class _Nccl14:
    """cupy.cuda.nccl as CuPy 14 declares it: ``NcclCommunicator(int ndev, bytes commId, int
    rank)`` checks the id's type (Cython's ``bytes`` argument) and length."""

    def __init__(self):
        self.ids = []
        nccl = self

        class NcclCommunicator:
            def __init__(self, ndev, comm_id, rank):
                if not isinstance(comm_id, bytes):
                    raise TypeError(f"Argument 'commId' has incorrect type (expected bytes, got "
                                    f"{type(comm_id).__name__})")
                if len(comm_id) != 128:
                    raise ValueError(f"commId length {len(comm_id)} != 128.")
                nccl.ids.append(comm_id)

        self.NcclCommunicator = NcclCommunicator


class _Nccl13:
    """cupy.cuda.nccl before 14: the id is a tuple of 128 ints."""

    def __init__(self):
        self.ids = []
        nccl = self

        class NcclCommunicator:
            def __init__(self, ndev, comm_id, rank):
                if not isinstance(comm_id, tuple) or len(comm_id) != 128:
                    raise TypeError("commId expected a tuple of 128 ints")
                nccl.ids.append(comm_id)

        self.NcclCommunicator = NcclCommunicator


def _fake_cupy():
    import contextlib

    cuda = SimpleNamespace(Device=lambda i: contextlib.nullcontext(),
                           Stream=lambda non_blocking=False: SimpleNamespace(ptr=1))
    return SimpleNamespace(cuda=cuda)


def test_nccl_communicator_passes_cupy14_bytes_id_unchanged():
    uid = bytes(range(128))  # what CuPy 14's get_unique_id returns (after a pickle round trip)
    nccl = _Nccl14()
    NCCLCommunicator(uid, 0, 2, 0, cupy=_fake_cupy(), nccl=nccl)
    assert nccl.ids == [uid]
    NCCLCommunicator(bytearray(uid), 1, 2, 0, cupy=_fake_cupy(), nccl=nccl)
    assert nccl.ids[-1] == uid and type(nccl.ids[-1]) is bytes


def test_nccl_communicator_keeps_a_tuple_id_for_older_cupy():
    uid = tuple(range(-64, 64))
    nccl = _Nccl13()
    NCCLCommunicator(uid, 0, 2, 0, cupy=_fake_cupy(), nccl=nccl)
    assert nccl.ids == [uid]


def test_nccl_communicator_reports_a_refused_id():
    with pytest.raises(DistributedError, match="creating the communicator"):
        NCCLCommunicator(b"short", 0, 2, 0, cupy=_fake_cupy(), nccl=_Nccl14())


# ---- solve_triangular with operands of two dtypes --------------------------------------------


class _Xp:
    """numpy, with linalg.solve following cupy.linalg.solve's shape rule."""

    def __init__(self):
        def solve(a, b):
            if a.shape[:-1] != b.shape[:-1]:
                raise ValueError("a must have (..., M, M) shape and b must have (..., M, K) "
                                 "for multidimensional b")
            return np.linalg.solve(a, b)

        self.linalg = SimpleNamespace(solve=solve)

    def __getattr__(self, name):
        return getattr(np, name)


def _cupy_like_trsm(a, b, trans=0, lower=False, unit_diagonal=False, overwrite_b=False,
                    check_finite=False):
    """cupyx.scipy.linalg.solve_triangular's dtype rule: both operands in a's dtype (float32 or
    float64), or a's promoted with float32."""
    dt = a.dtype if a.dtype.char in "fd" else np.promote_types(a.dtype.char, "f")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
        a, b = a.astype(dt), b.astype(dt)
    return scipy.linalg.solve_triangular(a, b, trans=trans, lower=lower,
                                         unit_diagonal=unit_diagonal)


def _cupy_like_backend():
    return SimpleNamespace(xp=_Xp(), device=ag.Device("cuda:0"),
                           scipy=SimpleNamespace(linalg=SimpleNamespace(
                               solve_triangular=_cupy_like_trsm)))


def _tri(rng, n, dtype):
    a = np.triu(rng.uniform(-1, 1, (n, n))) + 3 * np.eye(n)
    return a.astype(dtype)


@pytest.mark.parametrize("bdt", [np.float64, np.complex64, np.complex128])
def test_trsm_computes_in_the_common_dtype_on_a_cupy_like_backend(bdt):
    rng = np.random.default_rng(0)
    a = _tri(rng, 4, np.float32)
    b = (rng.standard_normal((4, 2)) + (1j * rng.standard_normal((4, 2))
                                        if np.dtype(bdt).kind == "c" else 0)).astype(bdt)
    got = _sol._trsm(_cupy_like_backend(), a, b, 0, False, False)
    want = scipy.linalg.solve_triangular(a, b)
    assert got.dtype == want.dtype == np.result_type(a, b)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    if np.dtype(bdt).kind == "c":
        assert np.abs(got.imag).max() > 0.1  # the imaginary part of b survives


def test_trsm_batched_b_against_one_matrix_keeps_the_common_dtype():
    rng = np.random.default_rng(1)
    a = _tri(rng, 3, np.float32)
    b = rng.standard_normal((2, 3, 2))  # float64
    got = _sol._trsm(_cupy_like_backend(), a, b, 1, False, False)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, np.linalg.solve(a.T.astype(np.float64), b), rtol=1e-10)


# ---- solve with leading axes that broadcast --------------------------------------------------


@pytest.mark.parametrize("sa,sb", [((2,), ()), ((), (2,)), ((3, 1), (2,)), ((2,), (2,))])
def test_solve_broadcasts_leading_axes_before_a_cupy_like_solve(sa, sb):
    rng = np.random.default_rng(2)
    a = rng.standard_normal(sa + (3, 3)) + 4 * np.eye(3)
    b = rng.standard_normal(sb + (3, 2))
    x, _ = _sol.Solve.forward(_cupy_like_backend(), a, b)
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-12)


# ---- the same calls on CuPy ------------------------------------------------------------------


@pytest.mark.gpu
def test_gpu_solve_triangular_mixed_dtypes_match_cpu():
    rng = np.random.default_rng(3)
    a = _tri(rng, 4, np.float32)
    for b in (rng.standard_normal((2, 4, 3)),
              (rng.standard_normal((4, 3)) + 1j * rng.standard_normal((4, 3))).astype(
                  np.complex64)):
        cpu = ag.linalg.solve_triangular(ag.Tensor(a), ag.Tensor(b))
        gpu = ag.linalg.solve_triangular(ag.Tensor.from_array(a, device="cuda:0"),
                                         ag.Tensor.from_array(b, device="cuda:0"))
        assert gpu.dtype == cpu.dtype
        np.testing.assert_allclose(gpu.numpy(), cpu.numpy(), rtol=2e-5, atol=1e-6)


@pytest.mark.gpu
def test_gpu_inv_and_solve_of_a_batch_with_broadcast_leading_axes():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((3, 1, 4, 4)) + 5 * np.eye(4)
    b = rng.standard_normal((2, 4, 2))
    ga = ag.Tensor.from_array(a, device="cuda:0")
    np.testing.assert_allclose(ag.linalg.inv(ga).numpy(), np.linalg.inv(a), rtol=1e-10)
    x = ag.linalg.solve(ga, ag.Tensor.from_array(b, device="cuda:0"))
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(a, b), rtol=1e-10)
    with ag.GradientTape() as tape:
        ta = tape.watch(ag.Tensor.from_array(a, device="cuda:0"))
        y = ag.sum(ag.linalg.inv(ta))
    (g,) = tape.gradient(y, [ta])
    inv = np.linalg.inv(a)
    want = -np.swapaxes(inv, -1, -2) @ np.ones_like(a) @ np.swapaxes(inv, -1, -2)
    np.testing.assert_allclose(g.numpy(), want, rtol=1e-8)


@pytest.mark.gpu
def test_gpu_nccl_world_of_one_with_cupy_unique_id():
    ok, why = nccl_status()
    if not ok:
        pytest.skip(why)
    import cupy
    from cupy.cuda import nccl

    comm = NCCLCommunicator(nccl.get_unique_id(), 0, 1, 0)
    try:
        buf = cupy.arange(6, dtype=cupy.float32)
        comm.allreduce(buf, "sum").enqueue_wait()
        out = cupy.zeros(6, dtype=cupy.float32)
        comm.allgather(buf, out).enqueue_wait()
        np.testing.assert_array_equal(cupy.asnumpy(out), np.arange(6, dtype=np.float32))
        np.testing.assert_array_equal(cupy.asnumpy(buf), np.arange(6, dtype=np.float32))
    finally:
        comm.close()


# ---- cuSOLVER's status ------------------------------------------------------------------------


class _DeviceArray(np.ndarray):
    """A NumPy array that says it lives on the device (what _linalg_util.lapack looks for)."""

    __cuda_array_interface__ = {}


class _Cupyx:
    """cupyx as far as lapack uses it: ``errstate(linalg=...)`` sets the mode CuPy's cuSOLVER
    wrappers read (CuPy 14.2: 'ignore' by default, and 'raise' reads the status and raises
    numpy.linalg.LinAlgError)."""

    def __init__(self):
        self.linalg = "ignore"

    def errstate(self, *, linalg):
        import contextlib

        @contextlib.contextmanager
        def ctx():
            old, self.linalg = self.linalg, linalg
            try:
                yield
            finally:
                self.linalg = old
        return ctx()


def test_device_linalg_reads_cusolvers_status(monkeypatch):
    """A failed factorisation on the device raises ag.LinAlgError as on the CPU (CuPy's default
    would return the garbage silently), and inside a CUDA-graph capture the op is refused."""
    import sys

    from autograd_gpu.backend import cublas
    from autograd_gpu.ops._linalg_util import lapack

    fake = _Cupyx()
    monkeypatch.setitem(sys.modules, "cupyx", fake)

    def potrf(a):  # CuPy's cholesky: checks cuSOLVER's devInfo only under linalg='raise'
        if fake.linalg == "raise":
            raise np.linalg.LinAlgError("Error reported by potrf in cuSOLVER. devInfo = [2].")
        return a

    bad = np.array([[1.0, 2.0], [2.0, 1.0]]).view(_DeviceArray)
    with pytest.raises(ag.LinAlgError, match="cholesky: Error reported by potrf"):
        lapack("cholesky", potrf, bad)
    assert fake.linalg == "ignore"  # the mode is restored
    # host arrays: the routine's own LinAlgError, translated; no cupyx involved
    with pytest.raises(ag.LinAlgError, match="cholesky: .*positive definite"):
        lapack("cholesky", np.linalg.cholesky, np.array([[1.0, 2.0], [2.0, 1.0]]))
    monkeypatch.setattr(cublas._state, "binding", object(), raising=False)
    with pytest.raises(ag.ArgumentError, match="ag.cuda.graphed: the step runs 'cholesky'"):
        lapack("cholesky", potrf, bad)


@pytest.mark.gpu
def test_failed_factorisations_raise_on_the_gpu():
    indefinite = ag.Tensor.from_array(np.array([[1.0, 2.0], [2.0, 1.0]]), device="cuda")
    with pytest.raises(ag.LinAlgError, match="cholesky"):
        ag.linalg.cholesky(indefinite)
    singular = ag.Tensor.from_array(np.array([[1.0, 2.0], [2.0, 4.0]]), device="cuda")
    with pytest.raises(ag.LinAlgError):
        ag.linalg.solve(singular, ag.Tensor.from_array(np.ones(2), device="cuda"))
    with pytest.raises(ag.LinAlgError):
        ag.linalg.inv(singular)
    good = ag.Tensor.from_array(np.array([[2.0, 1.0], [1.0, 2.0]]), device="cuda")
    np.testing.assert_allclose(ag.linalg.cholesky(good).numpy(),
                               np.linalg.cholesky(good.numpy()), rtol=1e-12)


def test_cupyx_scipy_submodules_import_one_at_a_time(monkeypatch):
    """A cupyx.scipy submodule that cannot load (its CUDA library missing) fails only the ops
    that use it, with a DeviceError naming it; the others still import."""
    import sys
    import types

    from autograd_gpu.backend.cupy_backend import CupyScipy

    fft = types.ModuleType("cupyx.scipy.fft")
    monkeypatch.setitem(sys.modules, "cupyx.scipy.fft", fft)
    monkeypatch.setitem(sys.modules, "cupyx.scipy.signal", None)  # import raises ImportError
    sp = CupyScipy()
    assert sp.fft is fft and sp.__dict__["fft"] is fft  # cached after the first use
    with pytest.raises(ag.DeviceError, match=r"cupyx.scipy.signal could not be imported"):
        getattr(sp, "signal")  # noqa: B009 (the lookup is the test)
    with pytest.raises(AttributeError):
        getattr(sp, "stats")  # noqa: B009


class _CupyLike:
    """A device array as CuPy 14.2 makes one where it matters here: np.asarray refuses it (its
    ``__array__`` raises TypeError), ``.get()`` copies it to the host."""

    __cuda_array_interface__: dict = {}

    def __init__(self, a):
        self._a = np.asarray(a)
        self.dtype, self.shape = self._a.dtype, self._a.shape

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")

    def get(self):
        return self._a.copy()


def test_constant_arguments_given_as_device_arrays():
    """Counts and spacings given as raw device arrays are read off the device, as a Tensor's
    are (np.asarray on one raised CuPy's TypeError, naming neither op nor argument)."""
    x = ag.Tensor(np.arange(3.0))
    np.testing.assert_array_equal(ag.repeat(x, _CupyLike([1, 0, 2])).numpy(),
                                  np.repeat(np.arange(3.0), [1, 0, 2]))
    f = ag.Tensor(np.array([0.0, 1.0, 4.0, 9.0]))
    np.testing.assert_allclose(ag.gradient(f, _CupyLike(np.array([0.0, 1.0, 2.0, 3.0]))).numpy(),
                               np.gradient(f.numpy(), np.array([0.0, 1.0, 2.0, 3.0])))
    np.testing.assert_allclose(ag.gradient(f, _CupyLike(0.5)).numpy(),
                               np.gradient(f.numpy(), 0.5))
