"""The embedding stage of a batch build on a Ray cluster (`hhg build --ray ADDRESS`): a pool of actors,
one encoder each, one actor per node by default; chunks of texts are scheduled to the actors and their
vectors come back to the driver, which alone writes the indexes and the caches (`index/batch.py`).

- Each actor picks its backend with its own node's `auto` rule (MLX on Apple silicon, ONNX Runtime CUDA
  where onnxruntime-gpu sees a GPU, ONNX Runtime on the CPU otherwise) at the precision the indexes
  recorded; every actor must produce that model, precision and dimension, or the run refuses.
- Each actor has up to IN_FLIGHT chunks queued, so it never waits for the driver. When an actor dies
  (node lost, out of memory, `ray.kill`), its chunks go to the other actors, and a replacement is
  started on its node (with its GPU) while actors remain to be replaced; a chunk's vectors are
  returned to the driver once, from the one run that succeeded, so nothing is lost or written twice.
- Ray is an optional extra (`pip install 'hhg[ray]'`), imported only here; the search path never
  imports this module.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from .errors import HhgError, ModelUnavailable

if TYPE_CHECKING:
    import numpy as np

    from .encoder import Progress

IN_FLIGHT = 2              # chunks queued per actor
CPUS_PER_ACTOR = 1         # what an actor reserves in Ray's accounting (the encoder uses the node's cores)


def ray_pool(address: str, actors: int | None = None) -> Callable[[dict], RayPool]:
    """The `open_pool` of a batch build on the Ray cluster at `address` ("auto", "ray://HOST:PORT", or
    "local" to start Ray on this machine), with `actors` actors (default: one per node)."""
    return lambda choice: RayPool(choice, address, actors)


class RayPool:
    """Encoder actors on a Ray cluster, used as a batch build's pool (`batch.Pool`)."""

    def __init__(self, choice: dict, address: str, actors: int | None = None) -> None:
        import ray

        self.choice = choice
        self.actors: list = []
        self.slots: dict = {}                  # actor -> its spawn slot (`_spawn`'s n: its node, its GPU)
        self.retried = 0                       # chunks sent again after their actor died
        self.last_actor = None                 # the actor whose chunk `map` yielded last
        self._started = _connect(address)
        try:                                   # (a failure from here on shuts down a Ray this pool started)
            self.nodes = _alive_nodes(address)
            self.size = actors or len(self.nodes)
            self.replacements = self.size      # how many dead actors may still be replaced
            self._actor_class = _encoder_actor()
            for n in range(self.size):
                self._spawn(n)
            self.info = self._check(ray.get([a.describe.remote() for a in self.actors]))
        except BaseException as err:
            self.close()
            if isinstance(err, ray.exceptions.RayError):
                raise HhgError(f"a Ray actor cannot load {choice['model']}: {_cause(err)}") from None
            raise
        self.dim = self.info[0]["dim"]
        self.loads = len(self.actors)

    def _spawn(self, n: int) -> None:
        """Start the `n`-th actor: on the `n`-th node (round robin), with that node's GPU when it has one
        and the actor is the node's first."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = self.nodes[n % len(self.nodes)]
        first_on_node = n < len(self.nodes)
        gpus = 1 if first_on_node and node.get("Resources", {}).get("GPU", 0) >= 1 else 0
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=True)
        actor = self._actor_class.options(num_cpus=CPUS_PER_ACTOR, num_gpus=gpus,
                                          scheduling_strategy=strategy).remote(self.choice)
        self.actors.append(actor)
        self.slots[actor] = n

    def _check(self, infos: list[dict]) -> list[dict]:
        """Refuse actors that do not make the indexes' model, precision and dimension (ModelUnavailable
        when an actor could not load the model at all). The precision is
        compared as each node's hhg keys it (`precision_key`: int8 with its scheme), so a node whose hhg
        computes int8 otherwise is refused too."""
        from .index.index import precision_key

        for info in infos:
            if "unavailable" in info:     # as a single build: the indexes stay keyword-searchable, with a notice
                raise ModelUnavailable(f"the Ray actor on {info['node']} cannot load {self.choice['model']}: "
                                       f"{info['unavailable']}")
        wanted = precision_key(self.choice["precision"]) or infos[0]["precision"]
        for info in infos:
            if info["precision"] != wanted or info["dim"] != infos[0]["dim"] or info["model"] != infos[0]["model"]:
                raise HhgError(f"the Ray actor on {info['node']} runs {info['model']} on {info['backend']} "
                               f"({info['precision']}, {info['dim']} dims); the indexes need {self.choice['model']} "
                               f"at {wanted}: every node must produce the same vectors")
        return infos

    def map(self, chunks: Iterable[tuple[int, list[str]]],
            progress: Progress | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(chunk id, vectors) for every chunk, as actors finish them; a chunk whose actor died is retried
        on another actor."""
        import ray

        source = iter(chunks)
        retry: deque[tuple[int, list[str]]] = deque()
        running: dict = {}                                  # ObjectRef -> (actor, chunk id, texts)
        while True:
            self._fill(source, retry, running)
            if not running:
                return
            (ref,), _ = ray.wait(list(running), num_returns=1)
            actor, chunk_id, texts = running.pop(ref)
            try:
                vectors = ray.get(ref)
            except ray.exceptions.RayActorError:
                self._lost(actor, running)
                retry.append((chunk_id, texts))
                self.retried += 1
                continue
            except ray.exceptions.RayTaskError as err:
                raise HhgError(f"a Ray actor failed to embed: {_cause(err)}") from None
            self.last_actor = actor
            yield chunk_id, vectors

    def _fill(self, source: Iterator[tuple[int, list[str]]], retry: deque, running: dict) -> None:
        """Queue chunks (retries first) on actors with fewer than IN_FLIGHT chunks."""
        for actor in list(self.actors):
            while sum(a is actor for a, _, _ in running.values()) < IN_FLIGHT:
                job = retry.popleft() if retry else next(source, None)
                if job is None:
                    return
                chunk_id, texts = job
                running[actor.embed.remote(texts)] = (actor, chunk_id, texts)

    def _lost(self, actor, running: dict) -> None:
        """Forget a dead actor; start a replacement in its slot (its node, its GPU) while replacements
        are left."""
        if actor not in self.actors:
            return                                          # (its other chunks failed before)
        self.actors.remove(actor)
        slot = self.slots.pop(actor)
        if self.replacements > 0:
            self.replacements -= 1
            self._spawn(slot)
            self.loads += 1
        if not self.actors:
            raise HhgError("every Ray actor died; see the Ray logs (`ray logs`) for why")

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors, self.slots = [], {}
        if self._started:
            ray.shutdown()


def _connect(address: str) -> bool:
    """Connect to (or, for "local", start) Ray; True when this call started it. Already connected (a
    caller that set Ray up itself): use that."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 configure_logging=True)
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise HhgError(f"cannot connect to Ray at {address}: {err}") from None
    return True


def _alive_nodes(address: str) -> list[dict]:
    """The cluster's live nodes (as `ray.nodes()` describes them)."""
    import ray

    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
    except (ConnectionError, RuntimeError, ray.exceptions.RayError) as err:
        raise HhgError(f"cannot list the nodes of the Ray cluster at {address}: {_cause(err)}") from None
    if not nodes:
        raise HhgError(f"the Ray cluster at {address} has no live node")
    return nodes


def _cause(err: BaseException) -> str:
    """The last line of a Ray error (the remote exception's own message)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _encoder_actor():
    """The actor class (defined here so that `ray` is imported only when a pool starts)."""
    import ray

    @ray.remote(max_restarts=0)
    class EncoderActor:
        """One encoder on one node: the indexes' model at their precision, on the node's `auto` backend."""

        def __init__(self, choice: dict) -> None:
            import socket

            from hhg_mlx.errors import ModelUnavailable
            from hhg_mlx.index.index import precision_key
            from hhg_mlx.loader import choose_encoder, load_encoder

            try:
                picked = choose_encoder(choice["model"], "auto", choice["precision"] or "auto", download=True)
                self.encoder = load_encoder(choice["model"], task=choice["task"], **picked.load_args(),
                                            download=True)
            except ModelUnavailable as err:      # told to the driver by `describe`, not as a dead actor
                self.info = {"node": socket.gethostname(), "unavailable": str(err)}
                return
            self.info = {"node": socket.gethostname(), "backend": picked.backend,
                         "precision": precision_key(picked.precision),
                         "model": self.encoder.model_id, "dim": self.encoder.dim}

        def describe(self) -> dict:
            return self.info

        def embed(self, texts: list[str]) -> np.ndarray:
            return self.encoder.embed_documents(texts)

    return EncoderActor
