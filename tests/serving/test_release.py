"""Release state: path containment, the holder's take-and-keep semantics, and the manager's swap and retirement
with a real registry, real indexes and the in-process model."""

from __future__ import annotations

import asyncio
import os

import pytest

from llmops.errors import NotReadyError, RegistryError
from llmops.release.artifacts import ensure_within
from serving.release import ReleaseHolder, ReleaseLoader, ReleaseManager


def test_paths_must_stay_inside_the_roots(tmp_path, monkeypatch):
    root = tmp_path / "artifacts"
    (root / "indexes" / "v1").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    inside = root / "indexes" / "v1"
    # The canonical form is returned: it is what gets read.
    assert ensure_within(str(inside), [str(root)], "index_uri") == str(inside)
    assert ensure_within(f"file://{inside}", [str(root)], "index_uri") == str(inside)
    assert ensure_within(f"file://{root}/indexes/x/../v1/", [str(root)], "index_uri") == str(inside)
    monkeypatch.chdir(tmp_path / "elsewhere")
    crafted = [
        f"file://..{inside}",  # host '..': the path looks inside, a reader stripping file:// reads ../<path>
        f"file://host{inside}",
        f"file://localhost{inside}",
        str(root / ".." / "elsewhere"),
        f"file://{root}/../elsewhere",
        f"file://{root}/%2e%2e/elsewhere",  # percent-encoded dots are dots in a file URI
        f"file://{root}/%2E%2E%2Felsewhere",
        f"{root}#/../../elsewhere",
        "indexes/v1",  # relative: means something else where the release is served
        "./indexes/v1",
        f"file:indexes/v1",
        "/etc/passwd",
        f"{root}-evil/x",
        "s3://bucket/artifacts/x",
    ]
    for uri in crafted:
        with pytest.raises(RegistryError, match="index_uri"):
            ensure_within(uri, [str(root)], "index_uri")
    os.symlink(tmp_path / "elsewhere", root / "indexes" / "sneaky")  # a link out of the store is outside too
    with pytest.raises(RegistryError, match="outside"):
        ensure_within(str(root / "indexes" / "sneaky"), [str(root)], "adapter_uri")
    assert ensure_within("s3://bucket/artifacts/indexes/v1/", ["s3://bucket/artifacts"], "index_uri") == (
        "s3://bucket/artifacts/indexes/v1")
    for outside in ("s3://bucket/artifacts/../secrets", "s3://bucket/artifacts/%2e%2e/secrets",
                    "s3://bucket/artifacts/%2E%2E%2Fsecrets", "s3://bucket/artifacts/./x", "s3://other/artifacts/x",
                    "gs://bucket/artifacts/x", "s3://bucket/artifacts-evil/x", "s3:///artifacts/x",
                    "s3://bucket/artifacts/x?versionId=1"):
        with pytest.raises(RegistryError):
            ensure_within(outside, ["s3://bucket/artifacts"], "index_uri")


def test_holder_keeps_the_state_a_request_took(world):
    async def scenario():
        loader = ReleaseLoader(world.config)
        holder = ReleaseHolder()
        with pytest.raises(NotReadyError):
            holder.acquire()
        a = await loader.load(world.release_a)
        b = await loader.load(world.release_b)
        holder.swap(a)
        async with holder.use() as taken:
            assert holder.swap(b) is a
            assert taken is a and a.active == 1 and not a.idle.is_set()  # the request stays on a
            async with holder.use() as later:
                assert later is b
        assert a.active == 0 and a.idle.is_set() and b.idle.is_set()

    asyncio.run(scenario())


def test_manager_swaps_on_reload_and_retires_the_old_state_after_its_requests(world):
    alias = "manager"
    world.registry.promote(world.release_a.release, alias)

    async def scenario():
        swaps = []
        manager = ReleaseManager(world.registry, alias, ReleaseLoader(world.config), unload_grace_s=0,
                                 on_swap=lambda new, old: swaps.append((new.release_id, old and old.release_id)))
        first = await manager.reload()
        assert first.changed and first.release == world.release_a.release
        assert not (await manager.reload()).changed  # alias unchanged: nothing loaded
        old = manager.holder.acquire()  # a request in flight on release a
        world.registry.promote(world.release_b.release, alias)
        second = await manager.reload()
        assert (second.changed, second.previous, second.release) == (True, world.release_a.release,
                                                                     world.release_b.release)
        await asyncio.sleep(0.05)
        assert old in manager.retiring  # still in use: not retired
        manager.holder.release(old)
        await manager.drain()
        assert not manager.retiring
        assert swaps == [(world.release_a.release, None), (world.release_b.release, world.release_a.release)]
        await manager.close()

    asyncio.run(scenario())


def test_manager_refuses_a_release_on_another_base_model(world):
    alias = "other-base"
    other = world.registry.register(**{**world.release_a.model_dump(exclude={"release", "created_at"}),
                                      "base_model": "org/another-model"})
    world.registry.promote(other.release, alias)

    async def scenario():
        failures = []
        manager = ReleaseManager(world.registry, alias, ReleaseLoader(world.config), on_failure=failures.append)
        with pytest.raises(RegistryError, match="needs a restart"):
            await manager.reload()
        assert manager.holder.current is None and "another-model" in manager.last_error
        assert not (await manager.reload(retry_failed=False)).changed  # the watcher does not retry it
        with pytest.raises(RegistryError):
            await manager.reload()  # /admin/reload does
        assert len(failures) == 2

    asyncio.run(scenario())
