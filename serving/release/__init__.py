"""The served release: what a request runs on, and how a new one replaces it without dropping requests.

- `state`: `ReleaseState` (one loaded release and the count of requests on it) and `ReleaseHolder` (the current one).
- `loader`: `ReleaseLoader`, registry `Release` -> verified, loaded `ReleaseState` (index, adapter in vLLM, client).
- `manager`: `ReleaseManager`, follows the alias: reload, swap, retire the old release and unload its adapter.

Where a release's files may live (URI confinement) and their verification are `llmops.release.artifacts`.
"""

from serving.release.loader import ReleaseLoader, served_adapter_name
from serving.release.manager import ReleaseManager, ReloadResult
from serving.release.state import ReleaseHolder, ReleaseState

__all__ = ["ReleaseHolder", "ReleaseLoader", "ReleaseManager", "ReleaseState", "ReloadResult", "served_adapter_name"]
