"""common.state's atomic writers of text files and generated folders: a failure leaves the old content whole."""

import os
import stat

import pytest

from tunekit.components.common.state import replace_directory, write_text


def test_write_text_replaces_a_symlink_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "report.json"
    link.symlink_to(victim)
    write_text(str(link), "new")
    assert victim.read_text() == "keep"
    assert not link.is_symlink() and link.read_text() == "new"


def test_write_text_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        write_text(str(path), "\ud83d")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]


def test_replace_directory_swaps_the_folder_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with replace_directory(str(target)) as folder:
            open(os.path.join(folder, "half.txt"), "w").close()
            raise RuntimeError("killed halfway")
    assert os.listdir(tmp_path) == ["model"] and os.listdir(target) == ["old.txt"]
    old = os.umask(0o002)
    try:
        with replace_directory(str(target)) as folder:
            assert os.path.dirname(folder) == str(tmp_path)
            (tmp_path / os.path.basename(folder) / "new.txt").write_text("new")
    finally:
        os.umask(old)
    assert os.listdir(tmp_path) == ["model"] and os.listdir(target) == ["new.txt"]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o775
