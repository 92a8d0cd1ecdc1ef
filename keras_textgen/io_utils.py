"""Crash-safe file writing: a reader never sees a half-written file.

Temporary names are hidden (they start with a dot) and carry the host and
process id of their writer, `.<name>.<host>-<pid>.<random>.tmp[.ext]`, so a
temporary left behind by a killed process is never taken for a finished
file, and `remove_stale_temporaries` can tell it from one that a live
process is still writing.
"""

import contextlib
import os
import re
import shutil
import socket
import tempfile

_STALE = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+\.(tmp|old)(\.[^/]*)?$")


def _writer_tag():
    host = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


def _umask():
    """The process umask, read without changing it where Linux allows (os.umask is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path, text):
    """Writes `text` to `path` through a temp file in the same folder and a rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary file name next to `path`; renames it onto `path` on success.

    On error the temporary file is removed and `path` is untouched.
    The suffix is kept so that writers which check extensions (Keras wants
    `.keras` and `.weights.h5`) accept the temporary name.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    stem, ext = base.split(".", 1) if "." in base[1:] else (base, "")
    ext = f".{ext}" if ext else ""
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.{_writer_tag()}.", suffix=f".tmp{ext}", dir=folder)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; the finished file gets the usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_directory(path, overwrite=False):
    """Yields a temporary directory next to `path`; renames it onto `path` on success.

    A watcher (TensorFlow Serving polls its model folder) sees either no
    `path` or the complete one. With `overwrite=True` an existing `path` is
    replaced only after the new one is complete.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    prefix = f".{os.path.basename(path)}.{_writer_tag()}."
    tmp = tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders, which a server running as another user cannot read
    try:
        yield tmp
        if os.path.exists(path):
            if not overwrite:
                raise FileExistsError(path)
            old = tempfile.mkdtemp(prefix=prefix, suffix=".old", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def process_alive(pid):
    """Whether a process with this id runs on this machine (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except (OverflowError, ValueError, OSError):
        return False
    return True


def remove_stale_temporaries(folder):
    """Deletes temporaries in `folder` left by killed writers on this host.

    Only names made by `atomic_path` / `atomic_directory` are considered,
    and only those whose writer (same host name, process id) is no longer
    running; a temporary that a live process is still writing is kept.

    Returns:
        The names removed.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return []
    host = _writer_tag().rsplit("-", 1)[0]
    removed = []
    for name in os.listdir(folder):
        found = _STALE.match(name)
        if not found or found.group("host") != host or process_alive(int(found.group("pid"))):
            continue
        full = os.path.join(folder, name)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(full)
        removed.append(name)
    return sorted(removed)
