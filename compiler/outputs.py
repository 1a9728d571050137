"""The output folder of a run (`--out`): what a run may remove there, how its files arrive, one run at a time.

- Ownership: a run records the files it wrote in a manifest (`.aimc-manifest.json`: names, run id, command).
  A later run removes only what that manifest lists (and only names this tool writes), never anything else.
  A file in `--out` named like one of our outputs (OUTPUTS) that no manifest of ours lists is the user's: the
  run refuses with one line before any work. It neither overwrites it nor leaves it beside its own outputs
  (an `accuracy.json` of another origin next to our `mapping.json` would make the folder describe two runs).
- Atomic publishing: files are written into a staging folder inside `--out` (so on its filesystem), then
  swapped in with os.replace, one file or folder at a time, the previous ones moved aside first. If any step
  fails, what moved is moved back: the previous outputs stay exactly as they were. SIGINT and SIGTERM are
  deferred during the swap so that an interrupt cannot stop it halfway. A move that still meets another
  filesystem (a mount inside `--out`) copies and then renames.
- One run at a time: a lock file (`.aimc-lock`, fcntl.flock) makes a second run on the same folder fail at
  once with one line (it does not wait: a run can take many minutes).
- Interrupts: SIGTERM raises SystemExit as SIGINT raises KeyboardInterrupt, so the staging folder is removed;
  a staging folder left by a killed run (SIGKILL, power loss) is removed by the next run, which holds the lock.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from compiler.errors import UserError

MANIFEST = ".aimc-manifest.json"
LOCK = ".aimc-lock"
STAGING_PREFIX = ".aimc-staging-"
# every name a run can write into --out; a manifest naming anything else is not followed
OUTPUTS = ("mapping.json", "cost.json", "accuracy.json", "hwa.json", "hwa_model", "report.html",
           "sweep.json", "sweep.csv", "sweep.html")  # the last three: a sweep's folder (compiler/dse/)
_ASIDE = ".previous"  # inside the staging folder: the files a publish replaces, until it has succeeded


class OutputDir:
    """`with OutputDir(out, command) as output:` write into `output.staging`, then
    `output.publish()`. Entering checks the folder, takes the lock and makes the staging folder (so a bad
    --out fails before any work); leaving removes the staging folder and the lock, and, after a failure,
    the folders this run created."""

    def __init__(self, path: Path, command: str):
        self.path = Path(path)
        self.command = command
        self.staging: Path | None = None
        self._created: list[Path] = []
        self._lock_fd: int | None = None
        self._sigterm: tuple | None = None  # (the handler ours replaced,) while ours is installed

    # --- entering: checks, lock, staging ------------------------------------------------------------
    def __enter__(self) -> "OutputDir":
        _check_target(self.path)
        self._catch_sigterm()  # from the first folder made on: a SIGTERM unwinds through _leave
        try:
            self._make_dirs()
            self._lock_fd = _lock(self.path / LOCK, self.path)
            _remove_stale_staging(self.path)
            self._check_conflicts()
            self.staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.path))
        except OSError as exc:
            self._leave(failed=True)
            raise _cannot_write(self.path, exc) from None
        except BaseException:
            self._leave(failed=True)
            raise
        return self

    def __exit__(self, kind, exc, tb) -> None:
        self._leave(failed=exc is not None)

    def _make_dirs(self) -> None:
        missing = []
        for folder in (self.path, *self.path.parents):
            if folder.is_dir():
                break
            missing.append(folder)
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                if not folder.is_dir():
                    raise
                continue  # made by someone else meanwhile: not ours to remove
            self._created.append(folder)

    def _check_conflicts(self) -> None:
        ours = set(read_manifest(self.path))
        for name in OUTPUTS:
            if name not in ours and os.path.lexists(self.path / name):
                raise UserError(f"--out {self.path}: holds {name}, which no earlier aimc-compile run recorded there "
                                f"(no {MANIFEST} lists it), so it may be yours; move it away or choose another --out")

    def _catch_sigterm(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._sigterm = (signal.signal(signal.SIGTERM, _terminate),)

    def _leave(self, failed: bool) -> None:
        if self._sigterm is not None:
            previous = self._sigterm[0]
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
            self._sigterm = None
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        if self._lock_fd is not None:
            _unlock(self.path / LOCK, self._lock_fd)
            self._lock_fd = None
        if failed:  # a folder this run made and left empty goes again
            for folder in reversed(self._created):
                try:
                    folder.rmdir()
                except OSError:
                    break
        self._created = []

    # --- publishing -------------------------------------------------------------------------------
    def publish(self) -> None:
        """Swap the staged files in, remove the previous run's files this run did not rewrite, write the
        manifest; all or nothing."""
        assert self.staging is not None, "publish() inside the with block"
        new = sorted(item.name for item in self.staging.iterdir() if not item.name.startswith("."))
        unknown = [name for name in new if name not in OUTPUTS]
        assert not unknown, f"outputs without a name in compiler.outputs.OUTPUTS: {unknown}"
        self._check_conflicts()  # a file of the user's may have appeared while the run worked
        previous = read_manifest(self.path)
        stale = [name for name in previous if name not in new and os.path.lexists(self.path / name)]
        run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        aside = self.staging / _ASIDE
        moved_aside: list[str] = []
        moved_in: list[str] = []
        deferred = _DeferredSignals()
        try:
            aside.mkdir()
            # first a manifest naming the old and the new files: whatever a crash leaves in between is ours
            journal = self.staging / (MANIFEST + ".journal")
            _write_manifest(journal, sorted(set(previous) | set(new)), run_id, self.command, complete=False)
            for name in [*new, *stale, MANIFEST]:
                if os.path.lexists(self.path / name):
                    _move(self.path / name, aside / name)
                    moved_aside.append(name)
            _move(journal, self.path / MANIFEST)
            moved_in.append(MANIFEST)
            for name in new:
                _move(self.staging / name, self.path / name)
                moved_in.append(name)
            final = self.staging / MANIFEST
            _write_manifest(final, new, run_id, self.command, complete=True)
            os.replace(final, self.path / MANIFEST)
        except BaseException as exc:
            _roll_back(self.path, aside, moved_in, moved_aside)
            if isinstance(exc, OSError):
                raise _cannot_write(self.path, exc) from None
            raise
        finally:
            deferred.release()


def read_manifest(folder: Path) -> list[str]:
    """The names the last run in `folder` wrote (only names this tool writes); [] without a readable manifest."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list):
        return []
    return [name for name in files if isinstance(name, str) and name in OUTPUTS]


def _write_manifest(path: Path, files: list[str], run_id: str, command: str, complete: bool) -> None:
    data = {"tool": "aimc-compile", "manifest_version": 1, "run_id": run_id, "command": command,
            "complete": complete, "files": files}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())


def _check_target(path: Path) -> None:
    """Refuse a --out that is a file, a filesystem root, the home folder or one above it."""
    try:
        if path.exists() and not path.is_dir():
            raise UserError(f"--out {path}: exists and is not a directory; choose another path")
        resolved = path.resolve()
    except OSError as exc:  # a name too long, a symlink loop
        raise _cannot_write(path, exc) from None
    except (RuntimeError, ValueError) as exc:  # a symlink loop (older Pythons), a NUL byte
        raise UserError(f"--out {str(path)[:80]}: not a usable path ({exc}); choose another") from None
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError, OSError):  # no home folder known
        home = None
    if resolved == Path(resolved.anchor) or (home is not None and (resolved == home or resolved in home.parents)):
        raise UserError(f"--out {path}: is {resolved}, a filesystem root or a home folder; give a folder of its "
                        f"own, e.g. --out {resolved / 'aimc-out'}")


def _cannot_write(path: Path, exc: OSError) -> UserError:
    return UserError(f"--out {path}: cannot write there ({exc.strerror or exc}); choose a writable directory")


def _lock(lock_path: Path, folder: Path) -> int:
    """An open descriptor holding the exclusive flock of `lock_path`; a UserError if another run holds it."""
    for _ in range(10):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return fd  # a filesystem without locks (some network mounts): run unlocked
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise UserError(f"--out {folder}: another aimc-compile run{f' (pid {holder})' if holder.isdigit() else ''} "
                            f"is writing there; wait for it to finish or choose another --out") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        os.close(fd)  # the run before us removed the lock file as we opened it: lock the new one
    raise UserError(f"--out {folder}: cannot take the lock {lock_path}; try again")


def _unlock(lock_path: Path, fd: int) -> None:
    """Remove the lock file while still holding it (a run that opened it meanwhile sees the change and
    locks a fresh file), then release it."""
    try:
        if os.fstat(fd).st_ino == os.stat(lock_path).st_ino:
            lock_path.unlink()
    except OSError:
        pass
    os.close(fd)


def _remove_stale_staging(folder: Path) -> None:
    """Staging folders of killed runs: ours to remove, since we hold the lock no live run can own them."""
    for item in folder.iterdir():
        if item.name.startswith(STAGING_PREFIX) and item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)


def _move(source: Path, target: Path) -> None:
    """os.replace; across filesystems (EXDEV), a copy beside the target renamed over it, then the source removed."""
    try:
        os.replace(source, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    partial = target.with_name(f"{STAGING_PREFIX}copy-{uuid.uuid4().hex[:8]}-{target.name}")
    try:
        if source.is_dir() and not source.is_symlink():
            shutil.copytree(source, partial, symlinks=True)
        else:
            shutil.copy2(source, partial, follow_symlinks=False)
        os.replace(partial, target)
    except BaseException:
        _remove(partial)
        raise
    _remove(source)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink()


def _roll_back(folder: Path, aside: Path, moved_in: list[str], moved_aside: list[str]) -> None:
    """Undo a publish that failed halfway: the new files out, the previous ones back. What cannot be put back
    is kept in a folder of its own (not a staging folder: nothing removes it) and named on stderr."""
    for name in reversed(moved_in):
        try:
            _remove(folder / name)
        except OSError:
            pass
    failed = []
    for name in reversed(moved_aside):
        try:
            _move(aside / name, folder / name)
        except OSError:
            failed.append(name)
    if failed:
        kept = folder / f".aimc-unrestored-{uuid.uuid4().hex[:8]}"
        try:
            os.replace(aside, kept)
        except OSError:
            kept = aside
        print(f"aimc-compile: could not put back {', '.join(failed)}; the previous files are in {kept}",
              file=sys.stderr)


def _terminate(signum: int, frame) -> None:
    """SIGTERM (timeout, CI cancel, kill): unwind like SIGINT, so `finally` and `with` clean up."""
    print("aimc-compile: terminated", file=sys.stderr)
    raise SystemExit(128 + signum)


class _DeferredSignals:
    """SIGINT and SIGTERM noted instead of acted on until release(), which then delivers the first one.
    (Python handlers, not a signal mask: any thread may receive a signal, the main thread runs the handler.)"""

    def __init__(self) -> None:
        self.caught: int | None = None
        self.saved = {}
        if threading.current_thread() is threading.main_thread():
            self.saved = {s: signal.signal(s, self._note) for s in (signal.SIGINT, signal.SIGTERM)}

    def _note(self, signum: int, frame) -> None:
        self.caught = self.caught or signum

    def release(self) -> None:
        for signum, handler in self.saved.items():
            if handler is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(signum, handler)
        if self.caught is not None:
            signal.raise_signal(self.caught)
