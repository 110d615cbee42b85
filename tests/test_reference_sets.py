"""Reference sets (tables of runs made elsewhere) say which machine their runs trained on."""
from __future__ import annotations

from emotion_core import store
from emotion_core.store import reference
from emotion_core.views import labels, tables


def _manifest(run_id: str, kind: str = "model", device: str | None = None) -> dict:
    m = {"kind": kind, "run_id": run_id, "model": "mobilenet_v2", "dataset": "a",
         "classes": ["angry", "happy", "sad"], "created": "2026-11-30T01:02:03", "git_commit": "0123456789"}
    if device is not None:
        m["timings"] = {"device": device}
    return m


def _write_set(name: str, manifests: list[dict]) -> None:
    folder = store.paths.reference_dir() / name
    folder.mkdir(parents=True)
    store.write_json(folder / store.paths.REFERENCE_MANIFESTS,
                     {"note": f"made on {name}", "runs": {m["run_id"]: m for m in manifests}})


def test_each_reference_run_is_labelled_with_the_machine_it_trained_on() -> None:
    _write_set("gpuset", [_manifest("g-model", device="cuda:0"), _manifest("g-ens", kind="ensemble")])
    _write_set("cpuset", [_manifest("c-model", device="cpu")])
    _write_set("oldset", [_manifest("o-model")])  # made before runs recorded their device
    runs = {r.run_id: r for r in reference.all_reference_runs()}
    role = {rid: tables.run_role(r.manifest) for rid, r in runs.items()}
    assert role["g-model"] == "GPU reference (set gpuset, 11-30 01:02, 01234567)"
    assert role["g-ens"].startswith("GPU reference (set gpuset")  # an ensemble takes its set's
    assert role["c-model"].startswith("CPU reference (set cpuset")
    assert role["o-model"].startswith("reference (set oldset")
    assert labels.origin_tag(runs["c-model"].manifest).endswith("CPU reference")
    assert tables.reference_notes(list(runs.values()))["cpuset"] == ("CPU reference", "made on cpuset")


def test_a_set_that_mixes_machines_gives_an_ensemble_no_machine() -> None:
    _write_set("mixed", [_manifest("m-gpu", device="cuda:1"), _manifest("m-cpu", device="cpu"),
                         _manifest("m-ens", kind="ensemble")])
    runs = {r.run_id: r for r in reference.load_reference_runs("mixed")}
    assert [runs[k].manifest["reference_machine"] for k in ("m-gpu", "m-cpu", "m-ens")] == ["GPU", "CPU", None]


def test_a_local_run_is_nobodys_reference() -> None:
    local = _manifest("mine", device="cpu")
    assert tables.run_role(local) == "trained here" and labels.origin_tag(local) == ""
    # an external model scored here by scripts.reference is named as such on every page
    peer_here = dict(_manifest("peer-here", kind="reference", device="cpu"), trained_on="FER-2013")
    assert labels.origin_tag(peer_here) == " · external reference"
    assert tables.run_role(peer_here).startswith("external reference (FER-2013")


def test_an_external_models_scores_in_a_set_stay_an_external_reference() -> None:
    """The peer's tables committed as a set are the peer's, not a CPU run of ours."""
    peer = dict(_manifest("p-ref", kind="reference", device="cpu"), trained_on="FER-2013")
    _write_set("peerset", [peer])
    (run,) = reference.load_reference_runs("peerset")
    assert tables.run_role(run.manifest) == \
        "external reference (FER-2013; tables of set peerset, 11-30 01:02, 01234567)"
    assert labels.origin_tag(run.manifest).endswith("external reference")
    assert tables.reference_notes([run])["peerset"] == ("External reference", "made on peerset")


def test_a_run_made_from_a_changed_checkout_says_so(tmp_path, monkeypatch) -> None:
    """A lent GPU machine's git names the session's first commit while the tree it ran differs:
    the manifest records that, and the role says it."""
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "code.py").write_text("a = 1\n")
    subprocess.run([*git, "add", "code.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    monkeypatch.setattr(store.paths, "REPO_ROOT", repo)
    assert store.git_changed() is False
    (repo / "code.py").write_text("a = 2\n")
    assert store.git_changed() is True
    _write_set("changed", [dict(_manifest("ch", device="cuda:0"), git_changed=True)])
    (run,) = reference.load_reference_runs("changed")
    assert tables.run_role(run.manifest) == \
        "GPU reference (set changed, 11-30 01:02, 01234567 + uncommitted changes)"
