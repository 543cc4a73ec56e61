"""fastnn.dask: block-wise inference on Dask, dask.dataframe and process pools."""
import concurrent.futures
import multiprocessing

import numpy as np
import pytest

import fastnn
from fastnn import nn

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
import fastnn.dask as fdask  # noqa: E402


def _model(seed=0):
    # wide enough that every batch below runs the packed matmul path (see test_row_independence)
    fastnn.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


def test_predict_on_local_cluster_equals_local_predict(client, data):
    model = _model()
    expected = fastnn.predict(model, data)
    x = da.from_array(data, chunks=((300, 250, 450), 64))
    out = fdask.predict(model, x, batch_size=100)
    assert isinstance(out, da.Array) and out.chunks == ((300, 250, 450), (10,))
    np.testing.assert_array_equal(out.compute(), expected)
    # the model travelled once to each worker and each block ran on the worker's 1 thread
    per_worker = client.run(lambda: dict(fdask.stats))
    assert len(per_worker) == 2
    assert all(s["loads"] <= 1 and s["threads"] in (None, 1) for s in per_worker.values())
    assert sum(s["loads"] for s in per_worker.values()) >= 1
    # the graph holds the model once, whatever the number of blocks
    graph = fdask.predict(model, da.from_array(data, chunks=50), batch_size=50).__dask_graph__()
    assert [str(key).split("-")[0] for key in graph].count("SharedModel") == 1


def test_predict_same_model_again_reuses_workers_copy(client, data):
    model = _model()
    x = da.from_array(data, chunks=100)
    first = fdask.predict(model, x, batch_size=100).compute()
    before = sum(s["loads"] for s in client.run(lambda: dict(fdask.stats)).values())
    second = fdask.predict(model, x, batch_size=100).compute()
    after = sum(s["loads"] for s in client.run(lambda: dict(fdask.stats)).values())
    np.testing.assert_array_equal(first, second)
    assert after == before


def test_predict_images_drops_feature_axes(data):
    fastnn.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 3))
    images = data.reshape(-1, 1, 8, 8)
    x = da.from_array(images, chunks=(200, 1, 4, 8))  # feature axes chunked too: merged
    out = fdask.predict(model, x, batch_size=100)
    assert out.shape == (1000, 3)
    np.testing.assert_array_equal(out.compute(scheduler="sync"), fastnn.predict(model, images))


def test_predict_rejects_numpy_input(data):
    with pytest.raises(TypeError, match="dask.array"):
        fdask.predict(_model(), data)


def test_model_bytes_round_trip(data):
    model = _model()
    again = fdask.model_from_bytes(fdask.model_to_bytes(model))
    np.testing.assert_array_equal(fastnn.predict(again, data), fastnn.predict(model, data))
    assert fdask.SharedModel(model).digest == fdask.SharedModel(again).digest


def test_ref_without_install_raises():
    ref = fdask.SharedModel(_model(seed=7), batch_size=10).ref
    assert ref.data is None
    fdask._models.pop(ref.digest, None)
    with pytest.raises(RuntimeError, match="initializer=shared.install"):
        ref(np.zeros((4, 64), np.float32))


def test_dataframe_partitions_recipe(client, data):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    model = _model()
    features = [f"f{i}" for i in range(64)]
    frame = dd.from_pandas(pd.DataFrame(data, columns=features), npartitions=3)

    # --- the README recipe
    shared = dask.delayed(fdask.SharedModel(model, batch_size=100))
    columns = [f"score{i}" for i in range(10)]

    def score(part, shared):
        out = shared(part[features].to_numpy(np.float32))
        return pd.DataFrame(out, index=part.index, columns=columns)

    scores = frame.map_partitions(score, shared, meta=pd.DataFrame(columns=columns, dtype=np.float32))
    # ---
    np.testing.assert_array_equal(scores.compute().to_numpy(), fastnn.predict(model, data))


def test_process_pool_recipe(data):
    model = _model()
    # --- the README recipe: the model is sent once per process, by the initializer
    shared = fdask.SharedModel(model, batch_size=100)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx, initializer=shared.install) as pool:
        out = np.concatenate(list(pool.map(shared.ref, np.array_split(data, 4))))
    # ---
    np.testing.assert_array_equal(out, fastnn.predict(model, data))
