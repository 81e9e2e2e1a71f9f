"""ag.nn: every layer's forward against NumPy, gradients through the tape against central
differences, modes, state dicts and the .npz loader's refusals."""

import os
import pickle
import zipfile

import numpy as np
import pytest

import autograd_gpu as ag
from autograd_gpu import nn

F64 = "float64"


def needs(*names):
    """Marks what a test uses; a name missing from ag fails at collection (a skip would hide a
    removed public name)."""
    missing = [n for n in names if not hasattr(ag, n)]
    assert not missing, f"ag lacks {missing}"
    return lambda test: test


def T(a):
    return ag.Tensor.from_array(np.array(a, dtype=np.float64))  # a fresh, contiguous copy


def fd_check(module, x, weights=None, eps=1e-6, rtol=1e-5, atol=1e-7, check_input=True):
    """Compare tape gradients of sum(module(x) * w) with central differences, for every
    parameter (and the input when check_input)."""
    x = x if isinstance(x, ag.Tensor) else T(x)
    out0 = module(x).numpy()
    w = np.random.default_rng(7).standard_normal(out0.shape) if weights is None else weights
    wt = T(w)

    def loss_value():
        return float((module(x).numpy() * w).sum())

    params = module.parameters()
    with ag.GradientTape() as tape:
        if check_input:
            tape.watch(x)
        loss = (module(x) * wt).sum()
    sources = params + ([x] if check_input else [])
    grads = tape.gradient(loss, sources)
    for src, g in zip(sources, grads):
        assert g is not None
        num = np.zeros(src.shape)
        arr = src._data
        for i in np.ndindex(*arr.shape):
            old = arr[i]
            arr[i] = old + eps
            up = loss_value()
            arr[i] = old - eps
            down = loss_value()
            arr[i] = old
            num[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(g.numpy(), num, rtol=rtol, atol=atol)


# ---- layers: forward against NumPy, gradients against finite differences --------------------

def test_linear_forward_and_grad():
    lin = nn.Linear(5, 3, seed=0, dtype=F64)
    x = np.random.default_rng(1).standard_normal((4, 5))
    W, b = lin.weight.numpy(), lin.bias.numpy()
    np.testing.assert_allclose(lin(T(x)).numpy(), x @ W + b, rtol=1e-12)
    # hand-computed gradients of sum(y * c): dW = x^T c, db = sum_rows c, dx = c W^T
    c = np.random.default_rng(2).standard_normal((4, 3))
    xt = T(x)
    with ag.GradientTape() as tape:
        tape.watch(xt)
        loss = (lin(xt) * T(c)).sum()
    gW, gb, gx = tape.gradient(loss, [lin.weight, lin.bias, xt])
    np.testing.assert_allclose(gW.numpy(), x.T @ c, rtol=1e-12)
    np.testing.assert_allclose(gb.numpy(), c.sum(0), rtol=1e-12)
    np.testing.assert_allclose(gx.numpy(), c @ W.T, rtol=1e-12)


def test_linear_init_matches_pytorch_bounds_and_seed():
    a, b = nn.Linear(100, 50, seed=3), nn.Linear(100, 50, seed=3)
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    w = a.weight.numpy()
    assert w.dtype == np.float32 and w.shape == (100, 50)
    assert np.abs(w).max() <= 0.1 and np.abs(w).max() > 0.09  # U(-1/sqrt(100), 1/sqrt(100))
    assert abs(w.std() - 0.1 / np.sqrt(3)) < 0.005
    assert not np.array_equal(w, nn.Linear(100, 50, seed=4).weight.numpy())
    assert nn.Linear(3, 2, bias=False).bias is None
    nn.manual_seed(11)
    w1 = nn.Linear(4, 4).weight.numpy()
    nn.manual_seed(11)
    np.testing.assert_array_equal(w1, nn.Linear(4, 4).weight.numpy())


def test_linear_rejects_wrong_width():
    with pytest.raises(ag.ShapeError, match="expected last dimension 5"):
        nn.Linear(5, 2)(ag.Tensor.ones((3, 4)))


_GELU = lambda z: 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))  # noqa: E731


@pytest.mark.parametrize("act, f, bias", [
    ("tanh", np.tanh, True), ("relu", lambda z: np.maximum(z, 0), True), ("gelu", _GELU, True),
    ("sigmoid", lambda z: 1 / (1 + np.exp(-z)), True), ("tanh", np.tanh, False)])
def test_dense_activation_and_grad(act, f, bias):
    """relu, tanh and gelu with a bias run as one bias_act op (one kernel on the GPU)."""
    d = nn.Dense(4, 3, activation=act, bias=bias, seed=1, dtype=F64)
    x = np.random.default_rng(0).standard_normal((2, 4))
    z = x @ d.weight.numpy() + (d.bias.numpy() if bias else 0)
    np.testing.assert_allclose(d(T(x)).numpy(), f(z), rtol=1e-12)
    fd_check(d, x)
    with pytest.raises(ag.ArgumentError, match="activation"):
        nn.Dense(2, 2, activation="swish")


def test_bias_act_checks_its_arguments():
    x = T(np.ones((2, 3)))
    with pytest.raises(ag.ArgumentError, match="bias_act: argument 'act'"):
        ag.bias_act(x, T(np.ones(3)), "swish")
    with pytest.raises(ag.ShapeError, match="bias_act"):
        ag.bias_act(x, T(np.ones(4)), "relu")


@pytest.mark.parametrize("layer, ref", [
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.Tanh(), np.tanh),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (nn.GELU(), lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))),
    (nn.Identity(), lambda x: x),
])
def test_activations(layer, ref):
    x = np.random.default_rng(0).standard_normal((3, 5))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from relu's kink for the difference check
    np.testing.assert_allclose(layer(T(x)).numpy(), ref(x), rtol=1e-10, atol=1e-12)
    fd_check(layer, x)


def test_gelu_exact():
    from math import erf

    x = np.linspace(-3, 3, 13)
    ref = np.array([0.5 * v * (1 + erf(v / np.sqrt(2))) for v in x])
    np.testing.assert_allclose(nn.GELU("none")(T(x)).numpy(), ref, rtol=1e-7, atol=1e-10)


def test_sequential_order_names_and_forward():
    model = nn.Sequential(nn.Linear(4, 8, seed=0, dtype=F64), nn.ReLU(),
                          nn.Linear(8, 2, seed=1, dtype=F64))
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [p.shape for p in model.parameters()] == [(4, 8), (8,), (8, 2), (2,)]
    assert model.parameters()[0] is model[0].weight
    assert len(model) == 3 and isinstance(model[1], nn.ReLU)
    assert model.num_parameters() == 4 * 8 + 8 + 8 * 2 + 2
    x = np.random.default_rng(0).standard_normal((3, 4))
    h = np.maximum(x @ model[0].weight.numpy() + model[0].bias.numpy(), 0)
    ref = h @ model[2].weight.numpy() + model[2].bias.numpy()
    np.testing.assert_allclose(model(T(x)).numpy(), ref, rtol=1e-12)
    fd_check(model, x)


def test_shared_parameter_listed_once_and_custom_module():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Linear(3, 3, seed=0, dtype=F64)
            self.dec = self.enc  # the same module twice

        def forward(self, x):
            return self.dec(self.enc(x))

    m = Tied()
    assert len(m.parameters()) == 2
    fd_check(m, np.random.default_rng(0).standard_normal((2, 3)))


def test_train_eval_propagates():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.1)))
    assert all(m.training for m in model.modules())
    model.eval()
    assert not any(m.training for m in model.modules())
    x = ag.Tensor.randn((4, 2), seed=0)
    assert model[1](x) is x  # dropout is the identity in eval mode
    model.train()
    assert all(m.training for m in model.modules())


@needs("dropout")
def test_dropout_train_mode():
    x = ag.Tensor.ones((200, 50), dtype=F64)
    y = nn.Dropout(0.3, seed=5)(x).numpy()
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.7)
    assert abs(kept.mean() - 0.7) < 0.02
    a, b = nn.Dropout(0.3, seed=5), nn.Dropout(0.3, seed=5)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


@needs("layer_norm")
def test_layer_norm_forward_and_grad():
    ln = nn.LayerNorm(6, dtype=F64)
    rng = np.random.default_rng(0)
    ln.weight.assign(rng.standard_normal(6))
    ln.bias.assign(rng.standard_normal(6))
    x = rng.standard_normal((3, 6))
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    ref = (x - mu) / np.sqrt(var + 1e-5) * ln.weight.numpy() + ln.bias.numpy()
    np.testing.assert_allclose(ln(T(x)).numpy(), ref, rtol=1e-10, atol=1e-12)
    fd_check(ln, x, rtol=1e-4, atol=1e-6)


@needs("embedding")
def test_embedding_forward_and_grad():
    emb = nn.Embedding(5, 3, seed=0, dtype=F64)
    idx = ag.Tensor.from_array(np.array([[0, 2], [2, 4]]))
    np.testing.assert_array_equal(emb(idx).numpy(), emb.weight.numpy()[[[0, 2], [2, 4]]])
    c = np.arange(12.0).reshape(2, 2, 3)
    with ag.GradientTape() as tape:
        loss = (emb(idx) * T(c)).sum()
    (g,) = tape.gradient(loss, emb.parameters())
    ref = np.zeros((5, 3))
    np.add.at(ref, np.array([0, 2, 2, 4]), c.reshape(4, 3))  # row 2 is used twice
    np.testing.assert_allclose(g.numpy(), ref)


def conv2d_ref(x, w, b, stride, padding):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out + b[None, :, None, None]


@needs("conv2d")
@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1)])
def test_conv2d_forward_and_grad(stride, padding):
    conv = nn.Conv2d(2, 3, 3, stride=stride, padding=padding, seed=0, dtype=F64)
    assert conv.weight.shape == (3, 2, 3, 3)
    assert np.abs(conv.weight.numpy()).max() <= 1 / np.sqrt(18)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5))
    ref = conv2d_ref(x, conv.weight.numpy(), conv.bias.numpy(), stride, padding)
    np.testing.assert_allclose(conv(T(x)).numpy(), ref, rtol=1e-10, atol=1e-12)
    fd_check(conv, x, rtol=1e-5, atol=1e-6)


@needs("max_pool2d")
def test_maxpool_forward_and_grad():
    rng = np.random.default_rng(0)
    x = rng.permutation(2 * 3 * 4 * 4).reshape(2, 3, 4, 4).astype(np.float64) / 10  # no ties
    ref = x.reshape(2, 3, 2, 2, 2, 2).max(axis=(3, 5))
    np.testing.assert_allclose(nn.MaxPool2d(2)(T(x)).numpy(), ref)
    fd_check(nn.MaxPool2d(2), x, eps=1e-4)


@needs("avg_pool2d")
def test_avgpool_forward():
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 6))
    ref = x.reshape(1, 2, 2, 2, 3, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(nn.AvgPool2d(2)(T(x)).numpy(), ref, rtol=1e-12)


def test_flatten():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    np.testing.assert_array_equal(nn.Flatten()(T(x)).numpy(), x.reshape(2, 60))
    np.testing.assert_array_equal(nn.Flatten(2)(T(x)).numpy(), x.reshape(2, 3, 20))
    fd_check(nn.Flatten(), x[:, :, :2, :2])


@needs("conv2d", "max_pool2d")
def test_small_cnn_grad():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, seed=0, dtype=F64), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3, seed=1, dtype=F64))
    x = np.random.default_rng(3).standard_normal((2, 1, 4, 4))
    fd_check(model, x, check_input=False, eps=1e-6, rtol=1e-4, atol=1e-6)


@needs("mse_loss")
def test_mse_loss():
    a, b = np.random.default_rng(0).standard_normal((2, 4, 3))
    np.testing.assert_allclose(nn.mse_loss(T(a), T(b)).numpy(), ((a - b) ** 2).mean())
    np.testing.assert_allclose(nn.MSELoss("sum")(T(a), T(b)).numpy(), ((a - b) ** 2).sum())


@needs("cross_entropy")
def test_cross_entropy():
    logits = np.random.default_rng(0).standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ref = -logp[np.arange(5), labels].mean()
    got = nn.cross_entropy(T(logits), ag.Tensor.from_array(labels)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    probs = np.eye(4)[labels]
    np.testing.assert_allclose(nn.CrossEntropyLoss()(T(logits), T(probs)).numpy(), ref,
                               rtol=1e-12)


# ---- state dicts and files -------------------------------------------------------------------

def make_model(seed=0):
    return nn.Sequential(nn.Linear(3, 4, seed=seed), nn.Tanh(), nn.Linear(4, 2, seed=seed + 1))


def snapshot(model):
    return [p.numpy().copy() for p in model.parameters()]


def assert_same(model, snap):
    for p, s in zip(model.parameters(), snap):
        np.testing.assert_array_equal(p.numpy(), s)


def test_state_dict_round_trip():
    a, b = make_model(0), make_model(10)
    sd = a.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    sd["0.weight"][...] = 0  # a copy: editing it does not touch the model
    assert np.abs(a[0].weight.numpy()).sum() > 0
    before = [id(p) for p in b.parameters()]
    assert b.load_state_dict(a.state_dict()) == ([], [])
    assert [id(p) for p in b.parameters()] == before  # same Parameter objects, new values
    assert_same(b, snapshot(a))
    x = ag.Tensor.randn((2, 3), seed=0)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_save_load_round_trip(tmp_path):
    a, b = make_model(0), make_model(10)
    path = tmp_path / "model.weights"  # exact path, no .npz appended
    a.save(path)
    assert path.exists() and zipfile.is_zipfile(path)
    b.load(path)
    assert_same(b, snapshot(a))


def test_save_load_bfloat16(tmp_path):
    a = nn.Linear(2, 3, seed=0, dtype="bfloat16")
    b = nn.Linear(2, 3, seed=1, dtype="bfloat16")
    a.save(tmp_path / "bf.npz")
    b.load(tmp_path / "bf.npz")
    assert b.weight.dtype == ag.dtypes.bfloat16
    np.testing.assert_array_equal(b.weight.numpy().astype(np.float32),
                                  a.weight.numpy().astype(np.float32))


def test_non_strict_load_reports_missing_and_unexpected():
    m = make_model(0)
    sd = make_model(5).state_dict()
    del sd["2.bias"]
    sd["extra"] = np.zeros(3, np.float32)
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert missing == ["2.bias"] and unexpected == ["extra"]
    np.testing.assert_array_equal(m[0].weight.numpy(), sd["0.weight"])


@pytest.mark.parametrize("edit, match", [
    (lambda sd: sd.pop("2.bias"), "missing"),
    (lambda sd: sd.update(bogus=np.zeros(2, np.float32)), "unexpected"),
    (lambda sd: sd.update({"2.bias": np.zeros(3, np.float32)}), "shape"),
    (lambda sd: sd.update({"2.bias": np.zeros(2, np.float64)}), "dtype"),
    (lambda sd: sd.update({"2.bias": np.array(["a", "b"])}), "numeric"),
    (lambda sd: sd.update({"2.bias": [1.0, 2.0]}), "array"),
])
def test_malformed_state_dict_refused_and_nothing_changes(edit, match):
    m = make_model(0)
    snap = snapshot(m)
    sd = make_model(5).state_dict()
    edit(sd)
    with pytest.raises(nn.StateDictError, match=match):
        m.load_state_dict(sd)
    assert_same(m, snap)  # the valid entries before the bad one were not assigned either


def test_malformed_file_refused_and_nothing_changes(tmp_path):
    m = make_model(0)
    snap = snapshot(m)
    good = make_model(5).state_dict()
    bad_names = dict(good)
    bad_names["0.kernel"] = bad_names.pop("0.weight")
    np.savez(tmp_path / "names.npz", **bad_names)
    bad_shape = dict(good)
    bad_shape["2.weight"] = np.zeros((2, 4), np.float32)
    np.savez(tmp_path / "shape.npz", **bad_shape)
    (tmp_path / "garbage.npz").write_bytes(b"not a zip at all")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    for name, match in [("names.npz", "names do not match"), ("shape.npz", "shape"),
                        ("garbage.npz", "not an .npz"), ("plain.npy", "not an .npz"),
                        ("absent.npz", "no such file")]:
        with pytest.raises(nn.StateDictError, match=match):
            m.load(tmp_path / name)
        assert_same(m, snap)
    assert isinstance(nn.StateDictError("x"), ag.AutogradError)


class _Payload:
    """Unpickling this would run code (it calls os.system-like side effects via __reduce__)."""

    def __reduce__(self):
        return (_mark_ran, ())


RAN = []


def _mark_ran():
    RAN.append(True)
    return "pwned"


def test_malicious_npz_never_runs_code(tmp_path):
    m = make_model(0)
    snap = snapshot(m)
    sd = {k: v for k, v in m.state_dict().items()}
    sd["0.bias"] = np.array([_Payload()] * 4, dtype=object)  # stored pickled inside the npz
    np.savez(tmp_path / "evil.npz", **sd)
    # a pickle disguised as an npz member
    with zipfile.ZipFile(tmp_path / "evil2.npz", "w") as z:
        z.writestr("0.weight.npy", pickle.dumps(_Payload()))
    for name in ("evil.npz", "evil2.npz"):
        with pytest.raises(nn.StateDictError):
            m.load(tmp_path / name)
        assert_same(m, snap)
    assert RAN == []
    # sanity: loading with pickle allowed would have run the payload
    with np.load(tmp_path / "evil.npz", allow_pickle=True) as z:
        z["0.bias"]
    assert RAN == [True]  # one object, pickled once
    RAN.clear()


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    m = make_model(0)
    path = tmp_path / "w.npz"
    m.save(path)
    original = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError):
        make_model(3).save(path)
    assert path.read_bytes() == original
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def test_module_errors():
    class Bad(nn.Module):
        def __init__(self):
            self.w = 1  # no super().__init__()

    with pytest.raises(ag.AutogradError, match="super"):
        Bad()
    with pytest.raises(ag.ArgumentError):
        nn.Sequential(nn.ReLU(), "relu")
    with pytest.raises(ag.ArgumentError):
        nn.Dropout(1.0)
    assert isinstance(nn.Parameter(np.ones(2, np.float32)), ag.Variable)
    assert "Linear(in_features=3" in repr(make_model())


# ---- GPU ---------------------------------------------------------------------------------------

@pytest.mark.gpu
def test_model_on_gpu_matches_cpu(tmp_path):
    def build():
        return nn.Sequential(nn.Linear(6, 16, seed=0), nn.GELU(), nn.LayerNorm(16),
                             nn.Dropout(0.2, seed=1), nn.Linear(16, 3, seed=2))

    cpu, gpu = build(), build().to("cuda")
    assert all(p.device == "cuda:0" for p in gpu.parameters())
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    outs, grads = [], []
    for model, dev in ((cpu, "cpu"), (gpu, "cuda")):
        model.eval()
        xt = ag.Tensor.from_array(x, device=dev)
        with ag.GradientTape() as tape:
            loss = (model(xt) ** 2).sum()
        grads.append([g.numpy() for g in tape.gradient(loss, model.parameters())])
        outs.append(model(xt).numpy())
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-4, atol=1e-5)
    for a, b in zip(grads[1], grads[0]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    gpu.save(tmp_path / "gpu.npz")  # a GPU model's file loads into a CPU model
    fresh = build()
    fresh.load(tmp_path / "gpu.npz")
    assert_same(fresh, snapshot(gpu))
    gpu.load_state_dict(make_model_like(gpu))
    assert gpu.parameters()[0].device == "cuda:0"


def make_model_like(model):
    return {k: np.zeros_like(v) for k, v in model.state_dict().items()}
