"""Tables beyond one machine: :class:`ShardedEmbedding`, row-sharded over an engine.

``engine="local"`` (the default) keeps the shards in this process; ``engine="ray"`` puts one Ray
actor on each shard (``pip install ".[ray]"``). Ray is imported only when a Ray engine starts.
"""

from .engines import LocalEngine, RayEngine, ShardError
from .sharded import ShardedEmbedding

__all__ = ["LocalEngine", "RayEngine", "ShardError", "ShardedEmbedding"]
