"""The embedding stage on Ray: a local cluster in this process (num_cpus=2, started once for the module),
two MiniLM actors at fp32 on ONNX; vectors and search results identical to the single-process build,
and an actor killed mid-run without a vector lost or written twice."""
from __future__ import annotations

from collections import Counter

import pytest

from batch_fixtures import FP32, contents, copies, needs_minilm, reference, results  # noqa: F401
from hhg_mlx.errors import HhgError
from hhg_mlx.index import batch
from hhg_mlx.index.batch import build_many

ray = pytest.importorskip("ray")
pytestmark = needs_minilm


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


class Pools:
    """An `open_pool` that starts two-actor Ray pools and records each chunk id they return."""

    def __init__(self) -> None:
        from hhg_mlx.distributed import RayPool

        self.made: list[RayPool] = []
        self.returned: Counter = Counter()
        self._class = RayPool

    def __call__(self, choice: dict):
        pool = self._class(choice, "auto", actors=2)
        self.made.append(pool)
        real_map = pool.map

        def map(chunks, progress=None):
            for chunk_id, vectors in real_map(chunks, progress):
                self.returned[chunk_id] += 1
                yield chunk_id, vectors
        pool.map = map
        return pool


def test_ray_vectors_equal_the_single_process_build(tmp_path, cluster, reference, monkeypatch):
    monkeypatch.setattr(batch, "EMBED_BATCH", 16)
    roots = copies(reference, tmp_path)
    pools = Pools()
    result = build_many(roots, **FP32, open_pool=pools)
    (pool,) = pools.made
    assert result.loads == 2 and [a["backend"] for a in pool.info] == ["onnx", "onnx"]
    assert result.texts.embedded == result.texts.unique and max(pools.returned.values()) == 1
    for built, ref in zip(roots, reference):
        assert contents(built) == contents(ref)
        assert results(built) == results(ref)


def test_an_actor_killed_mid_run_loses_nothing_and_writes_nothing_twice(tmp_path, cluster, reference, monkeypatch):
    monkeypatch.setattr(batch, "EMBED_BATCH", 8)
    roots = copies(reference, tmp_path)
    pools = Pools()
    killed = []

    def kill_after_the_first_chunk(stage, done, total, note):
        if stage == "embed" and done and not killed:
            # the actor that just returned a chunk is running its next one (two are queued per actor)
            killed.append(pools.made[0].last_actor)
            ray.kill(killed[0])

    result = build_many(roots, **FP32, open_pool=pools, progress=kill_after_the_first_chunk)
    (pool,) = pools.made
    assert killed and pool.retried >= 1                             # its queued chunk went to another actor
    assert result.loads == 3                                        # two actors, then one replacement
    chunks = -(-result.texts.unique // 8)
    assert pools.returned == Counter(range(chunks))                 # every chunk returned exactly once
    assert result.texts.embedded == result.texts.unique
    for built, ref in zip(roots, reference):
        assert contents(built) == contents(ref)


def test_actors_that_would_make_other_vectors_are_refused():
    from hhg_mlx.distributed import RayPool

    pool = RayPool.__new__(RayPool)
    pool.choice = {"model": "minilm", "task": None, "backend": "onnx", "precision": "int8"}
    same = {"node": "mac-1", "backend": "onnx", "precision": "int8/q8-block128", "model": "minilm", "dim": 384}
    assert pool._check([same, {**same, "node": "mac-2"}]) == [same, {**same, "node": "mac-2"}]
    with pytest.raises(HhgError) as err:
        pool._check([same, {**same, "node": "gpu-1", "backend": "onnx-cuda", "precision": "fp16"}])
    assert str(err.value) == ("the Ray actor on gpu-1 runs minilm on onnx-cuda (fp16, 384 dims); the indexes need "
                              "minilm at int8/q8-block128: every node must produce the same vectors")
    with pytest.raises(HhgError) as err:          # an older hhg's int8 (per-batch dynamic) makes other vectors
        pool._check([same, {**same, "node": "mac-old", "precision": "int8"}])
    assert str(err.value).startswith("the Ray actor on mac-old runs minilm on onnx (int8, 384 dims); the indexes "
                                     "need minilm at int8/q8-block128")


class FakeRay:
    """Ray as `RayPool` sees it, in this process: live `nodes`, an actor class that records where each
    actor is placed (node id, GPUs), and the kills and shutdowns."""

    def __init__(self, monkeypatch, nodes: list[dict], *, started: bool, unavailable: str | None = None) -> None:
        from hhg_mlx import distributed

        self.nodes, self.placed, self.killed, self.shutdowns = nodes, [], [], 0
        self.unavailable = unavailable          # a node whose actor cannot load the model
        monkeypatch.setattr(distributed, "_connect", lambda address: started)
        monkeypatch.setattr(distributed, "_encoder_actor", lambda: self)
        monkeypatch.setattr(ray, "nodes", lambda: self.nodes)
        monkeypatch.setattr(ray, "get", lambda refs: refs)
        monkeypatch.setattr(ray, "kill", self.killed.append)
        monkeypatch.setattr(ray, "shutdown", self.shutdown)

    def shutdown(self) -> None:
        self.shutdowns += 1

    def options(self, num_cpus, num_gpus, scheduling_strategy):
        fake = self

        class Actor:
            def __init__(self, choice):
                fake.placed.append((scheduling_strategy.node_id, num_gpus))
                info = {"node": scheduling_strategy.node_id, "backend": "onnx", "precision": "fp32",
                        "model": choice["model"], "dim": 384}
                if scheduling_strategy.node_id == fake.unavailable:
                    info = {"node": scheduling_strategy.node_id, "unavailable": "no model folder minilm here"}
                self.describe = type("Method", (), {"remote": staticmethod(lambda: info)})

        return type("Options", (), {"remote": staticmethod(Actor)})


CHOICE = {"model": "minilm", "task": None, "backend": "onnx", "precision": "fp32"}
GPU_NODE, CPU_NODE_1, DEAD_NODE, CPU_NODE_2 = ("a" * 56, "b" * 56, "c" * 56, "d" * 56)     # (28-byte hex ids)
NODES = [{"NodeID": GPU_NODE, "Alive": True, "Resources": {"GPU": 1.0}},
         {"NodeID": CPU_NODE_1, "Alive": True, "Resources": {}},
         {"NodeID": DEAD_NODE, "Alive": False, "Resources": {}},
         {"NodeID": CPU_NODE_2, "Alive": True, "Resources": {}}]


def test_a_replacement_actor_takes_the_dead_actors_node_and_gpu(monkeypatch):
    from hhg_mlx.distributed import RayPool

    fake = FakeRay(monkeypatch, NODES, started=False)
    pool = RayPool(CHOICE, "auto", actors=4)        # a second actor on the GPU node, without its GPU
    assert fake.placed == [(GPU_NODE, 1), (CPU_NODE_1, 0), (CPU_NODE_2, 0), (GPU_NODE, 0)]
    first, second = pool.actors[0], pool.actors[1]
    pool._lost(first, {})
    assert fake.placed[-1] == (GPU_NODE, 1)         # the GPU the dead actor held
    pool._lost(second, {})
    assert fake.placed[-1] == (CPU_NODE_1, 0)
    assert pool.loads == 6 and len(pool.actors) == 4
    pool.close()
    assert len(fake.killed) == 4 and fake.shutdowns == 0            # the caller's Ray stays up


@pytest.mark.parametrize("started", [True, False])
def test_a_pool_that_fails_to_start_shuts_down_only_a_ray_it_started(monkeypatch, started):
    from hhg_mlx.distributed import RayPool

    fake = FakeRay(monkeypatch, NODES, started=started)

    def unreachable():
        raise ConnectionError("GCS at 10.0.0.5:6379 is unreachable")
    monkeypatch.setattr(ray, "nodes", unreachable)
    with pytest.raises(HhgError) as err:
        RayPool(CHOICE, "ray://10.0.0.5:10001")
    assert str(err.value) == ("cannot list the nodes of the Ray cluster at ray://10.0.0.5:10001: "
                              "GCS at 10.0.0.5:6379 is unreachable")
    assert fake.shutdowns == (1 if started else 0) and fake.placed == []


def test_an_actor_that_cannot_load_the_model_makes_the_pool_model_unavailable(monkeypatch):
    """As in a single build, a model that cannot be loaded is ModelUnavailable (the batch then leaves the
    indexes keyword-searchable with a notice), not a failed batch; the pool's actors are stopped."""
    from hhg_mlx.distributed import RayPool
    from hhg_mlx.errors import ModelUnavailable

    fake = FakeRay(monkeypatch, NODES, started=True, unavailable=CPU_NODE_1)
    with pytest.raises(ModelUnavailable) as err:
        RayPool(CHOICE, "auto")
    assert str(err.value) == f"the Ray actor on {CPU_NODE_1} cannot load minilm: no model folder minilm here"
    assert len(fake.killed) == 3 and fake.shutdowns == 1
