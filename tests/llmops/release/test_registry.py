"""Release registry: immutable releases, alias promotion/rollback with history, concurrency and crash safety."""

import json
import threading
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from llmops.errors import RegistryError
from llmops.release.registry import ReleaseRegistry, diff_releases


def release_fields(index_version: str = "idx1", passed: bool = True, rouge: float = 0.4, **extra) -> dict:
    return {
        "index_version": index_version,
        "index_uri": f"/store/indexes/{index_version}",
        "base_model": "org/model",
        "adapter_version": None,
        "adapter_uri": None,
        "eval_report_uri": f"/store/evals/{index_version}/report.json",
        "gate_decision_uri": f"/store/decisions/{index_version}.json",
        "gates_passed": passed,
        "metrics": {"rouge_l": rouge, "retrieval.recall@5": 0.9},
        "config": {"retrieval": {"k": 5}, "sampling": {"temperature": 0.0}},
        "git_sha": "abc123",
        "flyte_execution_id": None,
        **extra,
    }


@pytest.fixture(params=["local", "memory"])
def registry(request, tmp_path) -> ReleaseRegistry:
    # Both backends go through the same fsspec code path; memory:// stands in for s3:// / gs://.
    root = str(tmp_path / "registry") if request.param == "local" else f"memory://registry-{uuid.uuid4().hex}"
    return ReleaseRegistry(root)


def test_same_binding_gives_the_same_immutable_release(registry):
    a = registry.register(**release_fields())
    again = registry.register(**release_fields(flyte_execution_id="p:d:other-run"))
    other = registry.register(**release_fields(index_version="idx2"))
    assert again == a and again.created_at == a.created_at  # found, not rewritten
    assert other.release != a.release
    assert [r.release for r in registry.releases()] == [a.release, other.release]


def test_promote_and_rollback_keep_history(registry):
    r1 = registry.register(**release_fields("idx1"))
    r2 = registry.register(**release_fields("idx2"))
    assert registry.resolve("production") is None
    registry.promote(r1.release, "production")
    registry.promote(r2.release, "production")
    assert registry.resolve("production").release == r2.release
    event = registry.rollback("production", reason="bad answers")
    assert event.action == "rollback" and event.release == r1.release and event.previous == r2.release
    assert registry.resolve("production").release == r1.release
    history = registry.history("production")
    assert [(e.action, e.release, e.previous) for e in history] == [
        ("promote", r1.release, None),
        ("promote", r2.release, r1.release),
        ("rollback", r1.release, r2.release),
    ]
    # Rolling back the rollback returns to r2: rollback follows the history of the current pointer.
    assert registry.rollback("production").release == r2.release


def test_rollback_without_an_earlier_release_is_refused(registry):
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback("production")
    registry.promote(registry.register(**release_fields()).release, "production")
    with pytest.raises(RegistryError, match="no earlier release"):
        registry.rollback("production")


def test_failed_gates_need_force_and_a_reason(registry):
    failed = registry.register(**release_fields(passed=False))
    with pytest.raises(RegistryError, match="did not pass its gates.*--force --reason"):
        registry.promote(failed.release, "production")
    with pytest.raises(RegistryError, match="needs a reason"):
        registry.promote(failed.release, "production", force=True)
    event = registry.promote(failed.release, "production", force=True, reason="hotfix for INC-42")
    assert registry.history("production")[-1] == event
    assert event.forced and event.reason == "hotfix for INC-42"


def test_aliases_are_independent(registry):
    r1 = registry.register(**release_fields("idx1"))
    r2 = registry.register(**release_fields("idx2"))
    registry.promote(r1.release, "production")
    registry.promote(r2.release, "staging")
    assert {a: p.release for a, p in registry.aliases().items()} == {"production": r1.release, "staging": r2.release}


def test_invalid_names_are_rejected_before_touching_storage(registry):
    with pytest.raises(RegistryError, match="invalid alias"):
        registry.pointer("../production")
    with pytest.raises(RegistryError, match="invalid release id"):
        registry.get("../../etc/passwd")
    with pytest.raises(RegistryError, match="does not exist"):
        registry.get("r-" + "0" * 16)


def test_concurrent_promotions_leave_a_consistent_alias_and_history(tmp_path):
    registry = ReleaseRegistry(str(tmp_path / "registry"))
    releases = [registry.register(**release_fields(f"idx{i}")).release for i in range(12)]
    barrier = threading.Barrier(len(releases))

    def promote(release: str) -> None:
        barrier.wait()
        ReleaseRegistry(registry.root).promote(release, "production")

    threads = [threading.Thread(target=promote, args=(r,)) for r in releases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = registry.history("production")
    assert len(history) == len(releases) and {e.release for e in history} == set(releases)
    # Promotions were serialised: each event's `previous` is the release of the event before it.
    ordered = sorted(history, key=lambda e: e.id)
    assert [e.previous for e in ordered] == [None] + [e.release for e in ordered[:-1]]
    assert registry.resolve("production").release == ordered[-1].release


def test_a_crash_mid_promotion_leaves_the_previous_production_intact(tmp_path, monkeypatch):
    registry = ReleaseRegistry(str(tmp_path / "registry"))
    r1 = registry.register(**release_fields("idx1"))
    r2 = registry.register(**release_fields("idx2"))
    registry.promote(r1.release, "production")
    pointer_file = Path(registry.root, "aliases", "production.json")
    before = pointer_file.read_bytes()

    real_replace = __import__("os").replace

    def crash_on_pointer(src, dst):
        if str(dst).endswith("aliases/production.json"):
            raise OSError("killed before the rename")
        return real_replace(src, dst)

    monkeypatch.setattr("llmops.release.registry.os.replace", crash_on_pointer)
    with pytest.raises(OSError):
        registry.promote(r2.release, "production")
    monkeypatch.undo()
    assert pointer_file.read_bytes() == before
    assert registry.resolve("production").release == r1.release
    json.loads(before)  # still a complete pointer
    # The next promotion works, and rollback from it returns to r1.
    registry.promote(r2.release, "production")
    assert registry.rollback("production").release == r1.release


def test_a_rerun_finds_the_release_and_is_told_it_existed(registry):
    first, created = registry.register_or_find(**release_fields())
    again, created_again = registry.register_or_find(
        **release_fields(gate_decision_uri="/store/decisions/rerun.json", flyte_execution_id="p:d:rerun")
    )
    assert created and not created_again and again == first  # the first run's decision stays with the release
    assert again.gate_decision_uri == "/store/decisions/idx1.json"


def test_gate_outcome_labels_never_show_a_skipped_gate_as_a_pass(registry):
    def outcome(passed, failed, skipped):
        return {"passed": passed, "failed": failed, "skipped": skipped, "summary": "..."}

    labels = [
        (True, outcome(3, 0, 0), "passed"),
        (True, outcome(1, 0, 2), "passed, 2 of 3 gates skipped"),
        (False, outcome(0, 0, 2), "failed: nothing was checked (2 of 2 gates skipped)"),
        (False, outcome(1, 1, 1), "failed, 1 of 3 gates skipped"),
    ]
    for i, (passed, counts, label) in enumerate(labels):
        r = registry.register(**release_fields(f"idx{i}", passed=passed, gate_outcome=counts))
        assert registry.get(r.release).gates_label() == label  # stored and read back
        assert registry.get(r.release).gate_outcome.skipped == counts["skipped"]
    legacy = registry.register(**release_fields("old", passed=True))  # registered before outcomes were kept
    assert legacy.gate_outcome is None and legacy.gates_label() == "passed"


def test_diff_names_what_changed():
    r1 = _release(release_fields("idx1", rouge=0.40))
    r2 = _release(release_fields("idx2", rouge=0.45, config={"retrieval": {"k": 8}, "sampling": {"temperature": 0.0}}))
    d = diff_releases(r1, r2)
    assert d["changed"]["index_version"] == ("idx1", "idx2")
    assert d["metrics"]["rouge_l"]["delta"] == pytest.approx(0.05)
    assert "retrieval.recall@5" not in d["metrics"]  # unchanged
    assert d["config"] == {"retrieval.k": (5, 8)}
    skipped = {"passed": 1, "failed": 0, "skipped": 1, "summary": "..."}
    r3 = _release(release_fields("idx2", rouge=0.45, gate_outcome=skipped))
    assert diff_releases(r2, r3)["changed"] == {"gates": ("passed", "passed, 1 of 2 gates skipped")}


def _release(fields: dict):
    from llmops.release.registry import Release

    return Release(release="r-" + "1" * 16, created_at="2026-11-22T00:00:00Z", **fields)


def test_a_release_pins_its_manifests_and_the_pins_are_part_of_its_id(registry):
    pins = {"index_manifest_sha256": "a" * 64, "adapter_manifest_sha256": "b" * 64}
    pinned = registry.register(**release_fields(adapter_version="ad1", adapter_uri="/store/adapters/ad1", **pins))
    other = registry.register(**release_fields(adapter_version="ad1", adapter_uri="/store/adapters/ad1",
                                               **pins | {"adapter_manifest_sha256": "c" * 64}))
    assert pinned.schema_version == 2 and not pinned.unpinned()
    assert other.release != pinned.release  # other adapter bytes: another release
    assert registry.get(pinned.release) == pinned
    with pytest.raises(ValidationError):
        _release(release_fields(index_manifest_sha256="not-a-digest"))


def test_a_schema_1_release_still_reads_and_says_what_it_does_not_pin(tmp_path):
    registry = ReleaseRegistry(str(tmp_path / "registry"))
    old = {k: v for k, v in _release(release_fields(adapter_version="ad1", adapter_uri="/store/adapters/ad1"))
           .model_dump(mode="json").items() if not k.endswith("_manifest_sha256")}
    old["schema_version"] = 1
    path = Path(registry.root, "releases", old["release"], "release.json")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(old))
    release = registry.get(old["release"])
    assert release.schema_version == 1 and release.unpinned() == ["index", "adapter"]
