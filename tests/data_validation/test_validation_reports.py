"""Where `tunekit validate` writes its report: where the user finds it, never a fixed name in /tmp."""

import contextlib
import io
import json
import os
import re
import stat
import tempfile

import pytest

from tunekit.components.data_validation import cli


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data" / "train.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps({"input_text": f"q {i}", "output_text": "a"}) + "\n" for i in range(3)))
    return str(path)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The current folder, and a temporary folder that must stay empty."""
    here, scratch = tmp_path / "here", tmp_path / "tmp"
    here.mkdir()
    scratch.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return here, scratch


def printed_report(out: str) -> str:
    return re.search(r"full report: (\S+)", out).group(1)


def test_default_report_is_in_the_current_folder_and_the_printed_path_exists(data, workdir):
    here, scratch = workdir
    status, out, err = run([data])
    assert status == 0, err
    path = printed_report(out)
    assert os.path.samefile(path, here / cli.DEFAULT_REPORT)
    assert json.loads(open(path).read())["ok"] is True
    assert os.listdir(scratch) == []


def test_with_normalised_dir_the_report_goes_next_to_the_normalised_files(data, workdir, tmp_path):
    here, scratch = workdir
    out_dir = tmp_path / "normalised"
    status, out, err = run([data, "--normalised-dir", str(out_dir)])
    assert status == 0, err
    assert printed_report(out) == str(out_dir / cli.NORMALISED_REPORT)
    assert (out_dir / cli.NORMALISED_REPORT).exists() and os.listdir(here) == [] and os.listdir(scratch) == []


def test_a_symlink_at_the_report_name_is_replaced_not_followed_and_the_umask_is_kept(data, workdir, tmp_path):
    here, _ = workdir
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (here / cli.DEFAULT_REPORT).symlink_to(victim)
    old = os.umask(0o002)
    try:
        status, out, _ = run([data, "--html", str(here / "r.html")])
    finally:
        os.umask(old)
    assert status == 0 and victim.read_text() == "keep"
    report = here / cli.DEFAULT_REPORT
    assert not report.is_symlink() and json.loads(report.read_text())["ok"] is True
    assert stat.S_IMODE(os.stat(report).st_mode) == 0o664
    assert stat.S_IMODE(os.stat(here / "r.html").st_mode) == 0o664


def test_an_unwritable_report_place_is_one_line_and_the_summary_still_prints(data, tmp_path):
    (tmp_path / "afile").write_text("")
    status, out, err = run([data, "--report", str(tmp_path / "afile" / "r.json")])  # a file is in the way
    assert status == 0 and "VALID" in out and "full report" not in out
    assert err.count("\n") == 1 and "cannot write the report" in err and "--report PATH" in err
