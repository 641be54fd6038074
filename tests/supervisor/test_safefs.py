"""Directories and files of a task: private by default, never created through a symlink."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.supervisor import safefs

pytestmark = pytest.mark.usefixtures("umask_022")


def test_a_new_task_directory_is_private_and_its_files_0600(tmp_path: Path) -> None:
    task = tmp_path / "root" / "t"
    safefs.make_task_dir(task, group=False)
    assert task.stat().st_mode & 0o777 == 0o700
    assert safefs.file_mode(task) == 0o600
    os.close(safefs.open_new(task / "f", os.O_WRONLY, safefs.file_mode(task)))
    assert (task / "f").stat().st_mode & 0o777 == 0o600


def test_a_shared_task_is_0750_with_0640_files_even_under_umask_077(tmp_path: Path) -> None:
    os.umask(0o077)
    task = tmp_path / "t"
    safefs.make_task_dir(task, group=True)
    assert task.stat().st_mode & 0o777 == 0o750
    safefs.make_subdir(task / "logs", task)
    assert (task / "logs").stat().st_mode & 0o777 == 0o750
    safefs.write_file(task / "f", b"x", safefs.file_mode(task))
    assert (task / "f").stat().st_mode & 0o777 == 0o640


def test_an_existing_directory_is_made_private_when_a_task_starts_there(tmp_path: Path) -> None:
    task = tmp_path / "t"
    task.mkdir(mode=0o755)
    safefs.make_task_dir(task, group=False)
    assert task.stat().st_mode & 0o777 == 0o700
    task.chmod(0o750)
    safefs.make_task_dir(task, group=None)  # recover keeps the owner's choice
    assert task.stat().st_mode & 0o777 == 0o750


@pytest.mark.parametrize("trailing", ["", "/"])
def test_a_symlinked_directory_is_refused(tmp_path: Path, trailing: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "logs").symlink_to(elsewhere)
    with pytest.raises(safefs.UnsafePath, match="symbolic link"):
        safefs.make_subdir(str(tmp_path / "t" / "logs") + trailing, tmp_path / "t")
    with pytest.raises(safefs.UnsafePath, match="symbolic link"):
        safefs.make_task_dir(tmp_path / "t" / "logs", group=None)


def test_a_file_where_a_directory_goes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "logs").write_text("")
    with pytest.raises(safefs.UnsafePath, match="not a directory"):
        safefs.make_dir(tmp_path / "logs")


def test_a_symlinked_file_is_never_written_through(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("precious")
    (tmp_path / "f").symlink_to(target)
    with pytest.raises(OSError):
        safefs.write_file(tmp_path / "f", b"x", 0o600)
    assert target.read_text() == "precious"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a directory of another user")
def test_another_users_directory_is_refused(tmp_path: Path) -> None:
    task = tmp_path / "t"
    task.mkdir()
    os.chown(task, 65534, 65534)
    with pytest.raises(safefs.UnsafePath, match="belongs to uid 65534"):
        safefs.make_task_dir(task, group=False)
