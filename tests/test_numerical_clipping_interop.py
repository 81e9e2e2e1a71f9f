"""NumericalChecker, gradient clipping and DLPack interop."""

from __future__ import annotations

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu.ops.registry import apply, defop


def T(x, dtype=np.float64):
    return ag.Tensor.from_array(np.asarray(x, dtype=dtype))


def test_checker_accepts_correct_gradients_full_and_random_mode():
    chk = ag.NumericalChecker()
    r = chk.check_gradient_central(lambda x: (ag.sin(x) * x).sum(), T(np.linspace(-1, 1, 7)))
    assert r.is_valid and r.mode == "full" and r.max_error < 1e-7
    big = ag.NumericalChecker(max_full_size=10, num_directions=5)
    r2 = big.check_gradient_central(lambda tape, x: ag.tanh(x) * 3.0, T(np.linspace(-1, 1, 50)))
    assert r2.is_valid and r2.mode == "random-direction"


def test_checker_with_tape_argument_style():
    def fn(tape, x):
        tape.watch(x)
        return (x**3).sum()

    r = ag.NumericalChecker().check_gradient_central(fn, T([0.5, -1.5]))
    assert r and np.allclose(r.analytic, 3 * np.array([0.5, -1.5]) ** 2)


@defop("wrong_square", register=False, saves=("x",))
class WrongSquare:
    """y = x^2 with a deliberately wrong vjp (3x instead of 2x)."""

    def forward(bk, x):
        return x * x, (x,)

    def vjp(F, g, saved, needs):
        return (g * 3.0 * saved[0],)

    def jvp(F, ts, saved):
        return ts[0] * 3.0 * saved[0]


def test_checker_catches_a_wrong_custom_gradient():
    r = ag.NumericalChecker().check_gradient_central(
        lambda x: apply(WrongSquare, x).sum(), T([1.0, 2.0, -0.5]))
    assert not r.is_valid
    assert r.worst_index == (1,)  # largest mismatch at x = 2: 6 vs 4
    assert r.max_error == pytest.approx(2.0, rel=1e-6)
    assert "MISMATCH" in r.summary()


def test_checker_rejects_bad_arguments():
    with pytest.raises(ag.ArgumentError):
        ag.NumericalChecker().check_gradient_central(lambda x: 1.0, T([1.0]))
    with pytest.raises(ag.ArgumentError):
        ag.NumericalChecker(eps=0)


def test_clip_by_global_norm():
    g1, g2 = T([3.0, 0.0]), T([0.0, 4.0])
    clipped, norm = ag.gradient_clipping.clip_by_global_norm([g1, None, g2], 1.0)
    assert norm.to_scalar() == pytest.approx(5.0)
    assert clipped[1] is None
    np.testing.assert_allclose(clipped[0].numpy(), [0.6, 0.0])
    np.testing.assert_allclose(clipped[2].numpy(), [0.0, 0.8])
    same, norm2 = ag.gradient_clipping.clip_by_global_norm([g1, g2], 10.0)
    np.testing.assert_allclose(same[0].numpy(), g1.numpy())
    assert norm2.to_scalar() == pytest.approx(5.0)


def test_clip_by_global_norm_keeps_low_precision_dtype_and_avoids_overflow():
    g = ag.Tensor.from_array(np.full(4, 300.0, np.float16))  # 300^2 overflows float16
    (c,), norm = ag.gradient_clipping.clip_by_global_norm([g], 1.0)
    assert c.dtype == np.float16 and norm.to_scalar() == pytest.approx(600.0)
    np.testing.assert_allclose(c.numpy().astype(np.float64), 0.5, rtol=1e-3)


def test_clip_by_value_and_errors():
    (c, n) = ag.gradient_clipping.clip_by_value([T([-5.0, 0.5, 7.0]), None], 1.0)
    np.testing.assert_array_equal(c.numpy(), [-1.0, 0.5, 1.0])
    assert n is None
    with pytest.raises(ag.ArgumentError):
        ag.gradient_clipping.clip_by_value([T([1.0])], -1.0)
    with pytest.raises(ag.ArgumentError):
        ag.gradient_clipping.clip_by_global_norm(T([1.0]), 1.0)


def test_dlpack_roundtrip_with_numpy_is_zero_copy():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = ag.from_dlpack(a)
    assert np.shares_memory(t.data, a)
    back = np.from_dlpack(t)
    assert np.shares_memory(back, a)
    with pytest.raises(ag.ArgumentError):
        ag.from_dlpack([1, 2])


def test_dlpack_with_torch_when_installed():
    torch = pytest.importorskip("torch")
    tt = torch.arange(4, dtype=torch.float32)
    t = ag.from_dlpack(tt)
    tt[0] = 42.0
    assert t.numpy()[0] == 42.0  # shared memory
    back = torch.from_dlpack(t)
    assert back[0].item() == 42.0
