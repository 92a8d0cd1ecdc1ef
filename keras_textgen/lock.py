"""One writer per model directory (and per export name): an exclusive lock file.

`keras-textgen train --out DIR` holds `DIR/.lock` for the whole run, and an
export holds `BASE_DIR/.<name>.lock` while it picks a version and writes, so
two runs started at once on the same target do not interleave their files:
the second fails at once with one line naming the process that holds it.

The lock is an `fcntl.flock` on the file, which the kernel releases when its
process ends however it ends, so a lock file left by a killed process is
stale by construction: the next run takes it over (and `Lock.stale_holder`
tells whose it was). The file holds the holder's PID, host, command and start
time, for the error message and for people. Where `fcntl` is missing
(Windows) the file is created with `O_EXCL` instead, and a file whose PID is
not a live process of this host is stale.

Example:

>>> with hold_directory("runs/python-docs", "train"):
...     ...  # write the model directory
"""

import contextlib
import errno
import json
import os
import socket
import time

from keras_textgen import errors
from keras_textgen import io_utils

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".lock"


class Lock:
    """A held lock: `release()` (or leave the `with` block of `hold`) to free it."""

    def __init__(self, path, fd, created_folder, stale_holder):
        self.path, self._fd, self._created_folder, self.stale_holder = path, fd, created_folder, stale_holder

    def release(self):
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)  # while still locked: a waiting opener then re-checks the inode (see acquire)
        os.close(self._fd)
        self._fd = None
        if self._created_folder:  # leave no empty folder behind a run that failed before writing
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(self.path))


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            info = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _describe(info):
    if not info.get("pid"):
        return "another process"
    since = f", since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info['since']))}" \
        if isinstance(info.get("since"), (int, float)) else ""
    return f"{info.get('command') or 'a keras-textgen process'} (PID {info['pid']} on {info.get('host', '?')}{since})"


def _busy(target, path, info):
    return errors.BusyError(f"{target} is in use by {_describe(info)}; wait for it to end or stop it "
                            f"(its lock file is {path})")


def acquire(path, command, target=None):
    """Takes the lock file `path` or raises `errors.BusyError` naming its holder.

    Args:
        path: the lock file; its folder is created if needed (and removed on
            release if it is then empty).
        command: what holds it, shown to a second writer (e.g. `"train"`).
        target: the name of what is locked, for the message (default: the folder).
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    target = target or folder
    created = not os.path.isdir(folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise errors.ConfigError(f"cannot write to {folder}: {e.strerror}") from None
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": time.time()}
    try:
        for _ in range(10):  # a holder may release (and remove the file) between our open and our check
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644) if fcntl else _create_exclusive(path, target)
            if fd is None:
                continue  # stale file removed: try again
            if fcntl:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as e:
                    os.close(fd)
                    if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise _busy(target, path, _read(path)) from None
                    raise
                try:
                    same = os.fstat(fd).st_ino == os.stat(path).st_ino
                except FileNotFoundError:
                    same = False
                if not same:  # we locked a file its holder had just removed
                    os.close(fd)
                    continue
            previous = b""
            with contextlib.suppress(OSError):
                previous = os.pread(fd, 1 << 16, 0)
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
            try:
                stale = json.loads(previous or b"{}") or None
            except ValueError:
                stale = {}
            created_now, created = created, False
            return Lock(path, fd, created_now, stale)
        raise _busy(target, path, _read(path))
    except OSError as e:
        _remove_created(folder, created)
        raise errors.ConfigError(f"cannot lock {path}: {e.strerror}") from None
    except BaseException:
        _remove_created(folder, created)
        raise


def _remove_created(folder, created):
    if created:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def _create_exclusive(path, target):  # pragma: no cover - the fallback where fcntl is missing
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        holder = _read(path)
        pid = holder.get("pid")
        if holder.get("host") == socket.gethostname() and pid and not io_utils.process_alive(pid):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            return None
        raise _busy(target, path, holder) from None


@contextlib.contextmanager
def hold(path, command, target=None):
    """`acquire` as a context manager: the lock is released (and its file removed) on exit."""
    lock = acquire(path, command, target)
    try:
        yield lock
    finally:
        lock.release()


def hold_directory(directory, command):
    """Holds `directory/.lock` (see `hold`); a `directory` that exists as a file is not locked (the caller says so)."""
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        return contextlib.nullcontext()
    return hold(os.path.join(directory, LOCK_FILE), command, target=directory)
