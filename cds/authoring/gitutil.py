"""The few git read operations authoring needs (version-bump check, ``rules diff``, changelog).

Plain ``git`` subprocesses, read-only: authoring never commits or checks anything out.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, check=False)


def repo_root(path: Path) -> Path | None:
    """The top of the git work tree holding ``path``, or None outside git."""
    start = path if path.is_dir() else path.parent
    try:
        proc = _git(start, "rev-parse", "--show-toplevel")
    except FileNotFoundError:
        return None
    return Path(proc.stdout.decode().strip()) if proc.returncode == 0 else None


def is_commit(root: Path, ref: str) -> bool:
    """Whether ``ref`` names a commit in the repository."""
    return _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode == 0


def show(root: Path, ref: str, relpath: str) -> str | None:
    """The text of a file at a ref, or None if it did not exist there."""
    proc = _git(root, "show", f"{ref}:{relpath}")
    return proc.stdout.decode("utf-8") if proc.returncode == 0 else None


def ls_tree(root: Path, ref: str, reldir: str) -> list[str]:
    """Paths (relative to the repository) under a directory at a ref."""
    proc = _git(root, "ls-tree", "-r", "--name-only", ref, "--", reldir.rstrip("/") + "/")
    return [line for line in proc.stdout.decode().splitlines() if line] if proc.returncode == 0 else []


def export_dir(root: Path, ref: str, reldir: str, target: Path) -> int:
    """Write the files of a directory at a ref under ``target`` (same relative layout); count them."""
    count = 0
    prefix = reldir.rstrip("/") + "/"
    for rel in ls_tree(root, ref, reldir):
        text = _git(root, "show", f"{ref}:{rel}")
        if text.returncode != 0:
            continue
        dest = target / rel[len(prefix) :]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(text.stdout)
        count += 1
    return count


def log(root: Path, relpath: str) -> list[tuple[str, str, str, str]]:
    """(commit, ISO date, author, subject) of commits touching a path, newest first."""
    proc = _git(root, "log", "--format=%H%x1f%ad%x1f%an%x1f%s", "--date=short", "--", relpath)
    if proc.returncode != 0:
        return []
    out = []
    for line in proc.stdout.decode().splitlines():
        parts = line.split("\x1f")
        if len(parts) == 4:
            out.append((parts[0], parts[1], parts[2], parts[3]))
    return out


def relative(root: Path, path: Path) -> str:
    """``path`` relative to the repository root, POSIX style."""
    return path.resolve().relative_to(root.resolve()).as_posix()
