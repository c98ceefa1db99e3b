"""A release is served only as it was released: crafted locations, tampered files, tampered manifests (files and
their sha256 rewritten together), added files and releases that pin nothing are refused by `llmops registry
promote` and by the server's release loader alike, which then keeps serving what it served. Real indexes, a real
LoRA adapter, the real CLI and the in-process model."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmops.index.artifact import MANIFEST_NAME
from cli.main import app as cli
from llmops.errors import ArtifactIntegrityError, RegistryError
from llmops.finetune.lora import ADAPTER_MANIFEST
from serving.release import ReleaseLoader, ReleaseManager
from tests.llm_fixtures import make_lora_adapter
from tests.serving.conftest import release_for, seal_adapter


@pytest.fixture(scope="module")
def store(world, tmp_path_factory):
    """A pristine adapter in the artifact store, a folder to copy artifacts into, and the config as a file."""
    root = Path(world.config.artifacts.root)
    adapter = root / "adapters" / "integrity-pristine"
    if not adapter.exists():
        seal_adapter(make_lora_adapter(world.tiny_llm, adapter, rank=8, seed=3), "integrity-v1", str(world.tiny_llm))
    config_file = tmp_path_factory.mktemp("integrity") / "config.yaml"
    config_file.write_text(json.dumps(world.config.model_dump(mode="json")), encoding="utf-8")
    return {"root": root, "adapter": adapter, "config_file": config_file}


def copy_of(source: Path, name: str) -> Path:
    """A copy of an artifact inside the store, to tamper with."""
    dest = source.parent / name
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(source, dest)
    return dest


def promote_cli(world, store, release: str, alias: str):
    result = CliRunner().invoke(cli, ["registry", "promote", release, "--alias", alias,
                                      "--config", str(store["config_file"])])
    result.text = " ".join(result.output.split())  # rich wraps long lines
    return result


def serve_refuses(world, release, alias: str, error: type[Exception], match: str) -> None:
    """The loader refuses the release; a manager serving release a keeps serving it."""
    async def scenario():
        loader = ReleaseLoader(world.config)
        with pytest.raises(error, match=match):
            await loader.load(release)
        world.registry.promote(world.release_a.release, alias)
        manager = ReleaseManager(world.registry, alias, loader, unload_grace_s=0)
        await manager.reload()
        world.registry.promote(release.release, alias)  # the registry API knows no artifact roots: it moves
        with pytest.raises(error):
            await manager.reload()
        assert manager.holder.current.release_id == world.release_a.release
        await manager.close()

    asyncio.run(scenario())


def flip_byte(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def rewrite_manifest_entry(directory: Path, manifest_name: str, file: str, data: bytes) -> None:
    """Replace `file` and its sha256 and size in the manifest together: the artifact verifies on its own."""
    (directory / file).write_bytes(data)
    manifest = json.loads((directory / manifest_name).read_text())
    manifest["files"][file] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (directory / manifest_name).write_text(json.dumps(manifest, indent=2))


# ------------------------------------------------------------------------------------------------ locations


def test_crafted_locations_are_refused_by_promote_and_by_the_server(world, store, tmp_path, monkeypatch):
    index = Path(world.release_a.index_uri)
    monkeypatch.chdir(tmp_path)  # file://../<path> would be read relative to here
    for uri in (f"file://..{index}", f"file://host{index}", f"{index}/../../..",
                f"file://{index}/%2e%2e/%2e%2e/%2e%2e", "indexes/" + index.name):
        crafted = release_for(world.registry, world.config, uri, world.release_a.index_version,
                              index_manifest_sha256=world.release_a.index_manifest_sha256)
        result = promote_cli(world, store, crafted.release, "crafted")
        assert result.exit_code == 2 and "index_uri" in result.text, (uri, result.output)
        serve_refuses(world, crafted, "crafted", RegistryError, "index_uri")


def test_an_adapter_linked_out_of_the_store_is_refused(world, store, tmp_path):
    outside = shutil.copytree(store["adapter"], tmp_path / "adapter-outside")
    link = store["root"] / "adapters" / "integrity-link"
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    release = release_for(world.registry, world.config, world.release_a.index_uri, world.release_a.index_version,
                          adapter_version="integrity-v1", adapter_uri=str(link),
                          index_manifest_sha256=world.release_a.index_manifest_sha256,
                          adapter_manifest_sha256=hashlib.sha256((outside / ADAPTER_MANIFEST).read_bytes()).hexdigest())
    assert promote_cli(world, store, release.release, "linked").exit_code == 2
    serve_refuses(world, release, "linked", RegistryError, "outside")


# ------------------------------------------------------------------------------------------------ tampering


def test_adapter_weights_with_one_byte_flipped_are_refused(world, store):
    adapter = copy_of(store["adapter"], "integrity-flipped")
    release = release_for(world.registry, world.config, world.release_a.index_uri, world.release_a.index_version,
                          adapter_version="integrity-v1", adapter_uri=str(adapter))
    flip_byte(adapter / "adapter_model.safetensors")
    result = promote_cli(world, store, release.release, "flipped")
    assert result.exit_code == 2 and "adapter_model.safetensors: sha256 mismatch" in result.text
    serve_refuses(world, release, "flipped", ArtifactIntegrityError, "adapter_model.safetensors")


def test_an_adapter_manifest_rewritten_with_its_files_is_refused(world, store):
    adapter = copy_of(store["adapter"], "integrity-rewritten")
    release = release_for(world.registry, world.config, world.release_a.index_uri, world.release_a.index_version,
                          adapter_version="integrity-v1", adapter_uri=str(adapter))
    weights = bytearray((adapter / "adapter_model.safetensors").read_bytes())
    weights[-1] ^= 0x01
    rewrite_manifest_entry(adapter, ADAPTER_MANIFEST, "adapter_model.safetensors", bytes(weights))
    from llmops.finetune.lora import verify_adapter

    verify_adapter(adapter)  # consistent on its own: only the release's pin tells
    result = promote_cli(world, store, release.release, "rewritten")
    assert result.exit_code == 2 and "not the manifest the release pinned" in result.text
    serve_refuses(world, release, "rewritten", ArtifactIntegrityError, "not the manifest the release pinned")


def test_a_file_added_to_an_adapter_is_refused(world, store):
    adapter = copy_of(store["adapter"], "integrity-added")
    release = release_for(world.registry, world.config, world.release_a.index_uri, world.release_a.index_version,
                          adapter_version="integrity-v1", adapter_uri=str(adapter))
    (adapter / "adapter_model.bin").write_bytes(b"weights vLLM would load by convention")
    serve_refuses(world, release, "added", ArtifactIntegrityError, "adapter_model.bin: not in the manifest")


def test_an_index_manifest_rewritten_with_its_files_is_refused(world, store):
    index = copy_of(Path(world.release_a.index_uri), "integrity-index-rewritten")
    release = release_for(world.registry, world.config, str(index), world.release_a.index_version)
    manifest = json.loads((index / MANIFEST_NAME).read_text())
    victim = sorted(manifest["files"])[0]
    rewrite_manifest_entry(index, MANIFEST_NAME, victim, (index / victim).read_bytes() + b"\0")
    result = promote_cli(world, store, release.release, "index-rewritten")
    assert result.exit_code == 2 and "not the manifest the release pinned" in result.text
    serve_refuses(world, release, "index-rewritten", ArtifactIntegrityError, "not the manifest the release pinned")


def test_a_release_naming_another_index_version_is_refused(world, store):
    release = release_for(world.registry, world.config, world.release_b.index_uri, world.release_a.index_version)
    serve_refuses(world, release, "other-version", ArtifactIntegrityError, "names index version")


# ------------------------------------------------------------------------------------------------ schema 1 releases


def test_a_release_without_pins_is_refused_until_repinned(world, store):
    legacy = world.registry.register(**{
        **world.release_a.model_dump(exclude={"release", "created_at", "schema_version", "index_manifest_sha256"}),
        "schema_version": 1, "adapter_version": "integrity-v1", "adapter_uri": str(store["adapter"]),
    })
    assert legacy.unpinned() == ["index", "adapter"]
    result = promote_cli(world, store, legacy.release, "legacy")
    assert result.exit_code == 2 and f"llmops registry repin {legacy.release}" in result.text
    serve_refuses(world, legacy, "legacy", RegistryError, "pins no manifest digest for its index and adapter")

    repinned = CliRunner().invoke(cli, ["registry", "repin", legacy.release, "--config", str(store["config_file"])])
    assert repinned.exit_code == 0, repinned.output
    new_id = repinned.output.split("->")[1].split()[0]
    new = world.registry.get(new_id)
    assert new.schema_version == 2 and not new.unpinned() and new.adapter_uri == legacy.adapter_uri
    assert promote_cli(world, store, new_id, "legacy").exit_code == 0

    async def serves():
        state = await ReleaseLoader(world.config).load(new)
        assert state.release_id == new_id and state.retriever.version == legacy.index_version

    asyncio.run(serves())


def test_promotion_pins_the_manifests_it_verified(world, store):
    from llmops.release.promotion import Candidate, promote_candidate
    from llmops.release.registry import GateOutcome

    adapter = copy_of(store["adapter"], "integrity-promoted")
    candidate = Candidate(
        index_version=world.release_a.index_version, base_model=world.config.llm.model, adapter_version="integrity-v1",
        adapter_uri=str(adapter), metrics={}, report_uri="r.json", decision_uri="d.json", gates_passed=True,
        gate_outcome=GateOutcome(passed=1, failed=0, skipped=0, summary="passed"),
    )
    result = promote_candidate(world.config, index_uri=world.release_a.index_uri, candidate=candidate, alias="pinned")
    release = result.release
    assert release.index_manifest_sha256 == world.release_a.index_manifest_sha256
    assert release.adapter_manifest_sha256 == hashlib.sha256((adapter / ADAPTER_MANIFEST).read_bytes()).hexdigest()
    assert world.registry.resolve("pinned") == release
    flip_byte(adapter / "adapter_config.json", 0)
    with pytest.raises(ArtifactIntegrityError, match="adapter_config.json"):  # nothing unverified is released
        promote_candidate(world.config, index_uri=world.release_a.index_uri, alias="pinned",
                          candidate=replace(candidate, report_uri="r2.json", decision_uri="d2.json"))


def test_promote_without_a_config_says_it_needs_one(world, tmp_path):
    result = CliRunner().invoke(cli, ["registry", "promote", world.release_a.release, "--root",
                                      world.config.artifacts.registry_root, "--config", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "none.yaml" in result.output
