"""fastnn.save / fastnn.load: round trips, atomic writes, and refusing bad files."""
import io
import json
import os
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn import Tensor, _config
from fastnn import random as fastnn_random
from fastnn.nn.module import Module, Parameter
from fastnn.serialization import load, save


class SerScale(Module):
    """y = x * weight, with a float and an int buffer (a leaf layer with _config)."""

    def __init__(self, features, init=1.0):
        super().__init__()
        self.features, self.init = features, init
        self.weight = Parameter(np.full(features, init, dtype=_config.get_default_dtype()))
        self.register_buffer("running", np.zeros(features, dtype=_config.get_default_dtype()))
        self.register_buffer("count", np.array(0, dtype=np.int64))

    def _config(self):
        return {"features": self.features, "init": self.init}

    def forward(self, x):
        return x * self.weight


class SerStack(Module):
    """A container rebuilt from its children through _from_config."""

    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            self.add_module(str(i), layer)

    @classmethod
    def _from_config(cls, config, children):
        return cls(*children.values())


class SerPair(Module):
    """A model whose constructor makes its own children; a pair argument in its config."""

    def __init__(self, features, sizes=(2, 3)):
        super().__init__()
        self.features, self.sizes = features, tuple(sizes)
        self.first = SerScale(features)
        self.second = SerScale(features, init=2.0)

    def _config(self):
        return {"features": self.features, "sizes": self.sizes}


class SerNeedsArgs(Module):
    """No _config although the constructor needs an argument: cannot be rebuilt."""

    def __init__(self, n):
        super().__init__()
        self.weight = Parameter(np.zeros(n))


def _model(seed=0):
    model = SerStack(SerPair(4, sizes=(5, 6)), SerScale(3, init=0.5), SerStack(SerScale(2)))
    rng = np.random.default_rng(seed)
    for key, (owner, name, kind) in model._state_slots().items():
        if kind == "param":
            owner._parameters[name].data[...] = rng.standard_normal(owner._parameters[name].shape)
        else:
            owner._buffers[name][...] = rng.integers(0, 100, np.shape(owner._buffers[name]))
    return model


def _assert_same(a, b):
    assert [(n, type(m)) for n, m in a.named_modules()] == [(n, type(m)) for n, m in b.named_modules()]
    assert [m.training for m in a.modules()] == [m.training for m in b.modules()]
    assert [m._config() for m in a.modules()] == [m._config() for m in b.modules()]
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        np.testing.assert_array_equal(sa[key], sb[key])


def _rewrite(path, header=None, members=None, drop=()):
    """Copy the zip at ``path`` replacing the header dict and/or members (bytes)."""
    with zipfile.ZipFile(path) as z:
        contents = {name: z.read(name) for name in z.namelist()}
    if header is not None:
        contents["fastnn.json"] = json.dumps(header).encode()
    contents.update(members or {})
    with zipfile.ZipFile(path, "w") as z:
        for name, data in contents.items():
            if name not in drop:
                z.writestr(name, data)


def _header(path):
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("fastnn.json"))


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_architecture_state_and_modes(tmp_path, dtype):
    previous = _config.get_default_dtype()
    _config.set_default_dtype(dtype)
    try:
        model = _model()
    finally:
        _config.set_default_dtype(previous)
    model._modules["0"].eval()
    path = tmp_path / "model.fnn"
    save(model, path)
    loaded = load(path)
    _assert_same(model, loaded)
    assert loaded._modules["0"].sizes == (5, 6)  # JSON list turned back into the constructor's tuple
    assert loaded._modules["1"].weight.dtype == dtype
    running = loaded._modules["1"]._buffers["running"]  # buffers come back as Tensors
    assert isinstance(running, Tensor) and not isinstance(running, Parameter) and running.dtype == dtype
    assert loaded._modules["1"].running is running
    assert _header(path)["dtype"] == np.dtype(dtype).name
    save(loaded, path)  # overwrite an existing file
    _assert_same(model, load(str(path)))
    assert os.listdir(tmp_path) == ["model.fnn"]


def test_file_layout_is_plain_zip_of_json_and_npy(tmp_path):
    model = _model()
    save(model, tmp_path / "m.fnn")
    header = _header(tmp_path / "m.fnn")
    assert header["format"] == "fastnn-model" and header["version"] == 1
    assert header["architecture"]["type"] == "SerStack"
    assert header["architecture"]["children"]["0"]["config"] == {"features": 4, "sizes": [5, 6]}
    assert header["arrays"] == list(model.state_dict())
    with np.load(tmp_path / "m.fnn", allow_pickle=False) as npz:  # plain NumPy can read the weights
        np.testing.assert_array_equal(npz["arrays/1.weight"], model.state_dict()["1.weight"])


def test_save_leaves_random_generators_alone(tmp_path):
    fastnn_random.manual_seed(123)
    np.random.seed(7)
    save(_model(), tmp_path / "m.fnn")
    after = fastnn_random.default_generator().random(), np.random.random()
    fastnn_random.manual_seed(123)
    np.random.seed(7)
    assert after == (fastnn_random.default_generator().random(), np.random.random())


def test_round_trip_with_builtin_layers(tmp_path):
    from fastnn.nn import Linear, ReLU, Residual, Sequential

    model = Sequential(Linear(6, 5), ReLU(), Residual(Sequential(Linear(5, 5), ReLU())), Linear(5, 2, bias=False))
    model.eval()
    save(model, tmp_path / "mlp.fnn")
    loaded = load(tmp_path / "mlp.fnn")
    _assert_same(model, loaded)
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(model.dtype)
    with fastnn.no_grad():
        np.testing.assert_array_equal(model(x).numpy(), loaded(x).numpy())
    assert all(isinstance(p, Parameter) and p.requires_grad for p in loaded.parameters())


# ------------------------------------------------------------------ what save refuses


def test_save_refuses_unrebuildable_modules(tmp_path):
    with pytest.raises(TypeError, match="SerNeedsArgs.*state_dict"):
        save(SerStack(SerNeedsArgs(3)), tmp_path / "a.fnn")
    pair = SerPair(4)
    pair.second = SerScale(7)  # replaced after construction: _config no longer describes it
    with pytest.raises(TypeError, match="SerPair"):
        save(pair, tmp_path / "b.fnn")
    with pytest.raises(TypeError, match="Module"):
        save({"weight": np.zeros(3)}, tmp_path / "c.fnn")
    assert os.listdir(tmp_path) == []


def test_save_refuses_shadowed_class_names_and_bad_configs(tmp_path):
    class SerScale(Module):  # same name as a registered class: unfindable when loading
        pass

    with pytest.raises(TypeError, match="named 'SerScale'"):
        save(SerScale(), tmp_path / "a.fnn")

    class SerOddConfig(Module):
        def _config(self):
            return {"callback": print}

    with pytest.raises(TypeError, match="JSON"):
        save(SerOddConfig(), tmp_path / "b.fnn")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_write_keeps_old_file_and_leaves_no_temp_files(tmp_path, monkeypatch, error):
    path = tmp_path / "model.fnn"
    save(_model(0), path)
    before = path.read_bytes()
    real_write_array = np.lib.format.write_array
    calls = []

    def failing_write_array(f, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            f.write(b"partial")
            raise error("disk full")
        return real_write_array(f, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing_write_array)
    with pytest.raises(error, match="disk full"):
        save(_model(1), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.fnn"]
    monkeypatch.undo()
    _assert_same(_model(0), load(path))


# ------------------------------------------------------------------ what load refuses


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.fnn"):
        load(tmp_path / "nope.fnn")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, -1])
def test_truncated_file(tmp_path, keep):
    save(_model(), tmp_path / "full.fnn")
    data = (tmp_path / "full.fnn").read_bytes()
    cut = len(data) - 1 if keep == -1 else int(len(data) * keep)
    (tmp_path / "cut.fnn").write_bytes(data[:cut])
    with pytest.raises(ValueError, match="cut.fnn"):
        load(tmp_path / "cut.fnn")


def test_corrupted_array_bytes_fail_crc(tmp_path):
    model = SerStack(SerScale(4000))
    save(model, tmp_path / "m.fnn")
    data = bytearray((tmp_path / "m.fnn").read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the 16 kB weight member
    (tmp_path / "m.fnn").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="m.fnn.*corrupt"):
        load(tmp_path / "m.fnn")


@pytest.mark.parametrize("content", [os.urandom(4096), b"", b"PK\x03\x04garbage", b"\x93NUMPY"])
def test_foreign_file(tmp_path, content):
    (tmp_path / "foreign.bin").write_bytes(content)
    with pytest.raises(ValueError, match="foreign.bin.*not a fastnn model file"):
        load(tmp_path / "foreign.bin")


def test_zip_without_header(tmp_path):
    np.savez(tmp_path / "weights.npz", weight=np.zeros(3))
    with pytest.raises(ValueError, match="weights.npz.*no fastnn.json"):
        load(tmp_path / "weights.npz")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format": "keras-model"}, "not a fastnn model file"),
        ({"version": 2}, "version 2.*upgrade fastnn"),
        ({"version": "1"}, "invalid format version"),
        ({"dtype": "int8"}, "invalid dtype"),
        ({"arrays": None}, "arrays"),
        ({"architecture": {"type": "NoSuchLayer", "config": {}, "children": {}}}, "unknown layer type 'NoSuchLayer'"),
        ({"architecture": {"type": "SerScale", "config": {"bogus": 1}, "children": {}}}, "cannot rebuild SerScale"),
        ({"architecture": []}, "invalid architecture"),
    ],
)
def test_bad_headers(tmp_path, change, message):
    path = tmp_path / "m.fnn"
    save(SerScale(3), path)
    _rewrite(path, header={**_header(path), **change})
    with pytest.raises(ValueError, match=f"m.fnn.*{message}"):
        load(path)


def test_header_not_json(tmp_path):
    path = tmp_path / "m.fnn"
    save(SerScale(3), path)
    _rewrite(path, members={"fastnn.json": b"{not json"})
    with pytest.raises(ValueError, match="m.fnn.*invalid fastnn.json"):
        load(path)


def test_missing_or_mismatched_arrays(tmp_path):
    path = tmp_path / "m.fnn"
    save(SerScale(3), path)
    _rewrite(path, drop=("arrays/weight.npy",))
    with pytest.raises(ValueError, match="m.fnn.*'arrays/weight.npy' is missing"):
        load(path)
    save(SerScale(3), path)
    _rewrite(path, header={**_header(path), "arrays": ["weight", "running"]})
    with pytest.raises(ValueError, match="m.fnn.*do not fit"):
        load(path)
    save(SerScale(3), path)
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(5, np.float32))
    _rewrite(path, members={"arrays/weight.npy": buffer.getvalue()})
    with pytest.raises(ValueError, match="m.fnn.*shape"):
        load(path)


_unpickled = []


def _record_unpickling():
    _unpickled.append(True)
    return "payload"


class _Payload:
    def __reduce__(self):
        return (_record_unpickling, ())


def test_pickled_member_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "m.fnn"
    save(SerScale(3), path)
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.array([_Payload()] * 3, dtype=object), allow_pickle=True)
    _rewrite(path, members={"arrays/weight.npy": buffer.getvalue()})
    with pytest.raises(ValueError, match="m.fnn.*pickle"):
        load(path)
    assert _unpickled == []


class SerNoConfig(Module):
    """Takes no arguments and builds its own children: needs no _config at all."""

    def __init__(self):
        super().__init__()
        self.body = SerPair(2)
        self.head = SerScale(5)


def test_argument_free_model_without_config_round_trips(tmp_path):
    model = SerNoConfig()
    model.head.weight.data[:] = [1, 2, 3, 4, 5]
    model.body.eval()
    save(model, tmp_path / "m.fnn")
    _assert_same(model, load(tmp_path / "m.fnn"))


def test_shared_submodule_is_refused(tmp_path):
    shared = SerScale(3)
    with pytest.raises(TypeError, match="several places"):
        save(SerStack(shared, shared), tmp_path / "m.fnn")
