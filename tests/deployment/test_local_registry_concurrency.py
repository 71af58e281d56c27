"""The local registry shared by several processes (nothing lost, no id twice), hand-edited shapes, file modes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.deployment import local_registry
from tunekit.components.deployment.champion import find_champion

#: A worker: waits for the go file, then registers or rolls back COUNT times; prints one JSON line per result.
WORKER = """
import json, os, sys, time
from tunekit.components.deployment import local_registry

action, registry, go, tag, count = sys.argv[1:6]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
for i in range(int(count)):
    if action == "register":
        stored = local_registry.register_model(registry, {"model_dir": f"{tag}-{i}"}, purpose="p")
        print(json.dumps([stored["id"], stored["model_dir"]]), flush=True)
    else:
        restored, rolled = local_registry.rollback(registry, "p")
        print(json.dumps([restored["id"], rolled["id"]]), flush=True)
"""


def run_at_once(tmp_path, action, registry, count, workers=2):
    """Starts ``workers`` worker processes, lets them go together, and returns each one's printed results."""
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, action, registry, str(go), f"w{n}", str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(workers)
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append([json.loads(line) for line in out.splitlines()])
    return results


def test_two_processes_registering_at_once_keep_every_model_with_distinct_ids(tmp_path):
    registry = str(tmp_path / "registry.json")
    start = time.monotonic()
    results = run_at_once(tmp_path, "register", registry, 100)
    assert time.monotonic() - start < 30
    models = json.load(open(registry))["models"]
    assert len(models) == 200
    ids = [m["id"] for m in models]
    assert len(set(ids)) == 200
    # Each process was told the id its model got, and that is the id stored with that model.
    reported = {model_dir: id_ for result in results for id_, model_dir in result}
    assert reported == {m["model_dir"]: m["id"] for m in models}
    assert {m["model_dir"] for m in models} == {f"w{n}-{i}" for n in (0, 1) for i in range(100)}
    # One champion, and its chain of previous champions goes through every model once.
    champions = [m for m in models if "champion" in m["aliases"]]
    assert champions == [models[-1]]
    by_id = {m["id"]: m for m in models}
    chain, current = [], champions[0]
    while current is not None:
        chain.append(current["id"])
        current = by_id.get(current["previous_champion"])
    assert sorted(chain) == sorted(ids)


def test_two_processes_rolling_back_at_once_lose_no_rollback(tmp_path):
    registry = str(tmp_path / "registry.json")
    for i in range(61):
        local_registry.register_model(registry, {"model_dir": f"m{i + 1}"}, purpose="p")
    results = run_at_once(tmp_path, "rollback", registry, 30)
    rolled_back = [rolled for result in results for _, rolled in result]
    assert sorted(rolled_back) == sorted(f"p-{n}" for n in range(2, 62))  # each one rolled back exactly once
    models = json.load(open(registry))["models"]
    assert [m["aliases"] for m in models] == [["champion"]] + [["rolled-back"]] * 60
    assert local_registry.champion(registry, "p")["id"] == "p-1"


def test_an_id_taken_by_a_hand_edit_is_not_given_again(tmp_path):
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"models": [{"id": "p-2", "purpose": "p", "model_dir": "x", "aliases": []}]}))
    stored = local_registry.register_model(str(registry), {"model_dir": "y"}, purpose="p")
    assert stored["id"] == "p-3"


def entry(number, aliases, previous=""):
    return {
        "id": f"p-{number}",
        "purpose": "p",
        "model_dir": f"m{number}",
        "aliases": aliases,
        "previous_champion": previous,
    }


def cli(*args):
    return subprocess.run([sys.executable, "-m", "tunekit.pipelines.cli", *args], capture_output=True, text=True)


def test_aliases_null_reads_as_no_aliases(tmp_path):
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"models": [entry(1, None), entry(2, ["champion"], "p-1"), entry(3, None)]}))
    assert find_champion("p", backend="local", local_registry=str(registry)).registry_id == "p-2"
    result = cli("rollback", "p", "--registry", str(registry))
    assert result.returncode == 0, result.stderr
    assert "champion of 'p' is p-1" in result.stdout
    assert [m["aliases"] for m in json.loads(registry.read_text())["models"]] == [
        ["champion"],
        ["rolled-back"],
        [],
    ]
    stored = local_registry.register_model(str(registry), {"model_dir": "m4"}, purpose="p")
    assert (stored["id"], stored["previous_champion"]) == ("p-4", "p-1")


@pytest.mark.parametrize(
    ("third", "message"),
    [
        (3, "entry 3 of 'models' is not an object (it is 3); fix or remove it"),
        ("p-3", "entry 3 of 'models' is not an object"),
        ({**entry(3, "champion")}, "entry 3 ('p-3'): 'aliases' must be a list of names"),
        ({**entry(3, []), "metrics": [1]}, "entry 3 ('p-3'): 'metrics' must be an object"),
        ({**entry(3, []), "id": 3}, "entry 3: 'id' must be a string"),
        ({**entry(3, []), "rollbacks": "x"}, "entry 3 ('p-3'): 'rollbacks' must be a list"),
    ],
)
def test_hand_edited_shapes_are_one_line_errors_naming_the_file(tmp_path, third, message):
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"models": [entry(1, []), entry(2, ["champion"], "p-1"), third]}))
    before = registry.read_text()
    for args in (("rollback", "p"), ("serve", "registry:p")):
        result = cli(*args, "--registry", str(registry))
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"error: {registry}: {message}")
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        local_registry.register_model(
            str(registry), {"model_dir": "m4"}, purpose="p"
        )  # what the deploy step calls
    assert caught.value.path == str(registry)
    assert registry.read_text() == before  # nothing written


@pytest.fixture
def umask():
    """Sets the process's umask for one test and restores it afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_new_registry_and_its_lock_file_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    registry = tmp_path / "registry.json"
    local_registry.register_model(str(registry), {"model_dir": "m1"}, purpose="p")
    local_registry.register_model(str(registry), {"model_dir": "m2"}, purpose="p")
    local_registry.rollback(str(registry), "p")
    assert (mode(registry), mode(str(registry) + ".lock")) == (expected, expected)
    assert sorted(os.listdir(tmp_path)) == ["registry.json", "registry.json.lock"]  # no temporary file left


def test_a_shared_registry_keeps_its_mode(tmp_path, umask):
    umask(0o077)
    registry = tmp_path / "registry.json"
    local_registry.register_model(str(registry), {"model_dir": "m1"}, purpose="p")
    os.chmod(registry, 0o664)
    local_registry.register_model(str(registry), {"model_dir": "m2"}, purpose="p")
    local_registry.rollback(str(registry), "p")
    assert mode(registry) == 0o664
