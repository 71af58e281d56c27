"""The data fingerprint (local files and Cloud Storage objects) and the retrain-or-skip decision."""

from urllib.parse import parse_qs, unquote, urlparse

import pytest
from fake_vertex import LoopbackFake
from google.auth.credentials import AnonymousCredentials

from tunekit.components.common.errors import UserError
from tunekit.components.deployment.champion import Champion
from tunekit.components.retraining.fingerprint import check_data, decide, fingerprint_uris, fingerprints_match


class FakeGcs(LoopbackFake):
    """Answers the Cloud Storage JSON API's object get and list with metadata (no content is ever read)."""

    thread_name = "fake-gcs"

    def __init__(self):
        super().__init__()
        self.objects: dict[tuple[str, str], dict] = {}

    def put(self, bucket, name, *, md5="", crc32c="AAAAAA==", generation=1, size=10):
        meta = {"bucket": bucket, "name": name, "generation": str(generation), "size": str(size), "crc32c": crc32c}
        if md5:
            meta["md5Hash"] = md5
        self.objects[(bucket, name)] = meta

    def start(self):
        from google.cloud import storage

        super().start()
        self.client = storage.Client(
            project="test-project", credentials=AnonymousCredentials(), client_options={"api_endpoint": self.url}
        )
        return self

    def _handle(self, handler, method):
        self.requests.append((method, handler.path, None))
        parsed = urlparse(handler.path)
        parts = parsed.path.split("/")  # ['', 'storage', 'v1', 'b', BUCKET, 'o', NAME?]
        bucket = parts[4]
        if len(parts) > 6 and parts[6]:
            meta = self.objects.get((bucket, unquote("/".join(parts[6:]))))
            status, body = (200, meta) if meta else (404, {"error": {"code": 404, "message": "No such object"}})
        else:
            prefix = parse_qs(parsed.query).get("prefix", [""])[0]
            items = [m for (b, n), m in sorted(self.objects.items()) if b == bucket and n.startswith(prefix)]
            status, body = 200, {"kind": "storage#objects", "items": items}
        self._send(handler, status, body)


def test_local_fingerprint_follows_content_not_path(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "moved" / "b.jsonl"
    a.write_text('{"input_text": "x", "output_text": "y"}\n')
    b.parent.mkdir()
    b.write_text(a.read_text())
    first = fingerprint_uris([str(a), ""])
    assert len(first) == 64
    assert fingerprint_uris([str(b), ""]) == first  # same bytes elsewhere
    assert fingerprint_uris([str(a), ""]) == first  # stable
    a.write_text(a.read_text() + '{"input_text": "z", "output_text": "w"}\n')
    assert fingerprint_uris([str(a), ""]) != first
    # Which input holds the data counts: the same file as validation data is a different run.
    assert fingerprint_uris(["", str(b)]) != fingerprint_uris([str(b), ""])


def test_local_folder_and_missing_file(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("1")
    first = fingerprint_uris([str(tmp_path / "d")])
    (tmp_path / "d" / "y.txt").write_text("2")
    assert fingerprint_uris([str(tmp_path / "d")]) != first
    with pytest.raises(UserError, match="not found") as info:
        fingerprint_uris([str(tmp_path / "nope.jsonl")])
    assert "nope.jsonl" in str(info.value)


def test_gcs_fingerprint_reads_metadata_only():
    with FakeGcs() as gcs:
        gcs.put("data", "train.jsonl", md5="md5-one==", generation=5)
        gcs.put("data", "composite.jsonl", crc32c="crc==", generation=7, size=99)
        first = fingerprint_uris(["gs://data/train.jsonl", "gs://data/composite.jsonl"], client=gcs.client)
        # A re-upload of the same bytes keeps the MD5: unchanged.
        gcs.put("data", "train.jsonl", md5="md5-one==", generation=6)
        assert fingerprint_uris(["gs://data/train.jsonl", "gs://data/composite.jsonl"], client=gcs.client) == first
        # New content: a new MD5.
        gcs.put("data", "train.jsonl", md5="md5-two==", generation=8)
        second = fingerprint_uris(["gs://data/train.jsonl", "gs://data/composite.jsonl"], client=gcs.client)
        assert second != first
        # A composite object (no MD5) changes with its generation.
        gcs.put("data", "composite.jsonl", crc32c="crc==", generation=9, size=99)
        assert (
            fingerprint_uris(["gs://data/train.jsonl", "gs://data/composite.jsonl"], client=gcs.client) != second
        )
        assert not any("alt=media" in path for _, path, _ in gcs.requests)  # nothing downloaded


def test_gcs_prefix_and_missing_object():
    with FakeGcs() as gcs:
        gcs.put("data", "shards/part-0.jsonl", md5="a==")
        gcs.put("data", "shards/part-1.jsonl", md5="b==")
        first = fingerprint_uris(["gs://data/shards"], client=gcs.client)
        assert fingerprint_uris(["gs://data/shards/"], client=gcs.client) == first
        gcs.put("data", "shards/part-2.jsonl", md5="c==")
        assert fingerprint_uris(["gs://data/shards"], client=gcs.client) != first
        with pytest.raises(UserError, match="no such Cloud Storage object") as info:
            fingerprint_uris(["gs://data/missing.jsonl"], client=gcs.client)
        assert "gs://data/missing.jsonl" in str(info.value)


def test_short_label_form_matches():
    full = "ab" * 32
    assert fingerprints_match(full, full)
    assert fingerprints_match(full, full[:32])  # the Vertex model label keeps 32 characters
    assert not fingerprints_match(full, full[:8])
    assert not fingerprints_match(full, "")
    assert not fingerprints_match(full, "cd" * 32)


def test_decide():
    fp = "1" * 64
    assert not decide(fp, fp, champion="m-1").proceed
    assert decide(fp, fp, champion="m-1").reason.startswith("skipped: data unchanged")
    assert decide(fp, fp, champion="m-1", force=True).proceed
    assert decide(fp, "2" * 64, champion="m-1").proceed
    assert decide(fp, "", champion="m-1").proceed
    assert decide(fp, "", champion="").proceed


def test_check_data_against_a_champion(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("{}\n")
    fp = fingerprint_uris([str(data)])
    calls = []

    def lookup(purpose, **kwargs):
        calls.append((purpose, kwargs))
        return Champion(purpose=purpose, model="/m", registry_id="p-1", data_fingerprint=fp[:32])

    decision = check_data(
        [str(data)], purpose="p", backend="vertex", project="proj", location="loc", find_champion=lookup
    )
    assert not decision.proceed and decision.fingerprint == fp
    assert calls == [("p", {"backend": "vertex", "local_registry": "", "project": "proj", "location": "loc"})]
    forced = check_data([str(data)], purpose="p", backend="vertex", force=True, find_champion=lookup)
    assert forced.proceed and len(calls) == 1  # forced: no lookup at all
    data.write_text("{}\n{}\n")
    assert check_data([str(data)], purpose="p", backend="vertex", find_champion=lookup).proceed
    assert check_data([str(data)], purpose="p", backend="local", find_champion=lambda *a, **k: None).proceed


def test_check_data_against_the_vertex_model_registry(tmp_path, monkeypatch):
    """The real champion lookup through aiplatform's REST transport: the label holds 32 hex characters."""
    from fake_vertex_pipelines import LOCATION, PROJECT, FakeVertexPipelines

    data = tmp_path / "train.jsonl"
    data.write_text('{"input_text": "a", "output_text": "b"}\n')
    fp = fingerprint_uris([str(data), ""])
    with FakeVertexPipelines() as fake:
        monkeypatch.setenv("TUNEKIT_VERTEX_BASE_URL", fake.url)
        model = fake.add_model("router", labels={"tunekit-purpose": "ticket-router", "tunekit-data-fp": fp[:32]})
        where = dict(purpose="ticket-router", backend="vertex", project=PROJECT, location=LOCATION)
        # No version holds the champion alias yet: train.
        assert check_data([str(data), ""], **where).proceed
        fake.models[model.split("@")[0]][0]["versionAliases"] = ["default", "champion"]
        unchanged = check_data([str(data), ""], **where)
        assert not unchanged.proceed and unchanged.champion_fingerprint == fp[:32]
        assert unchanged.reason.startswith("skipped: data unchanged")
        data.write_text('{"input_text": "a", "output_text": "c"}\n')
        assert check_data([str(data), ""], **where).proceed
        assert check_data(
            [str(data), ""], purpose="another-purpose", backend="vertex", project=PROJECT, location=LOCATION
        ).proceed
