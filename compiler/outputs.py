"""The output folder of a run (`--out`): what a run may remove there, how its files arrive, one run at a time.

- Ownership: a run records every file it wrote in a manifest (`.aimc-manifest.json`), as paths relative to
  `--out` at any depth (`hwa_model/config.json`, not `hwa_model`). A later run removes only listed files it
  does not write again, a folder only once it is empty, and never a path that holds one of its own inputs
  (`inputs=`, `protect()`: the checkpoint it compiles, the spec, the data). A name of ours (OUTPUTS) that no
  manifest lists is the user's: the run refuses with one line before any work, rather than overwrite it or
  leave it beside its own outputs; so does a new file that would replace one no manifest lists.
- No links: the lock and the manifest are opened without following a link (a link there is refused), and a
  file is moved into or out of a folder only if every folder on the way below `--out` is a real one.
- Atomic publishing: files are written into a staging folder inside `--out` (its filesystem), then swapped in
  with os.replace, file by file, the ones they replace moved aside first (`.previous` in the staging folder).
  A journal written before the first move lists every move. If a step fails, the moves are undone; if the
  process dies during the swap (SIGKILL, power loss), the next run on the folder finds the journal and rolls
  the swap back the same way: the previous outputs come back exactly, never discarded. SIGINT, SIGTERM and
  SIGHUP are deferred during the swap. A move that meets another filesystem copies and then renames.
- One run at a time: a lock file (`.aimc-lock`, fcntl.flock) makes a second run fail at once with one line.
- Interrupts: SIGTERM and SIGHUP raise SystemExit as SIGINT raises KeyboardInterrupt, so the staging folder
  is removed; a staging folder a killed run left before its swap is removed by the next run.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import signal
import stat
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
JOURNAL = ".aimc-publish.json"  # in a staging folder: the swap under way
# every name a run can write at the top of --out; a manifest entry under any other name is not followed
OUTPUTS = ("mapping.json", "cost.json", "accuracy.json", "hwa.json", "hwa_model", "report.html",
           "sweep.json", "sweep.csv", "sweep.html")  # the last three: a sweep's folder (compiler/dse/)
_ASIDE = ".previous"  # inside the staging folder: the files a publish replaces, until it has succeeded
_MAX_JSON_BYTES = 16 * 2 ** 20  # a manifest or journal beyond this is none of ours (a checkpoint lists ~10 files)
_DEFERRED = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class OutputDir:
    """`with OutputDir(out, command, inputs=...) as output:` write into `output.staging`, then
    `output.publish()`. Entering checks the folder, takes the lock, rolls back a swap a killed run left, and
    makes the staging folder (a bad --out fails before any work); leaving removes the staging folder and the
    lock, and, after a failure, the folders this run created. `inputs`: paths the run reads (names that are no
    path are ignored); more with protect(). No path holding one of them is removed or replaced."""

    def __init__(self, path: Path, command: str, inputs=()):
        self.path = Path(path)
        self.command = command
        self.staging: Path | None = None
        self.inputs: list[Path] = []
        self._created: list[Path] = []
        self._lock_fd: int | None = None
        self._handlers: dict[int, object] = {}  # signal -> the handler ours replaced, while ours is installed
        self.protect(*inputs)

    def protect(self, *paths) -> None:
        """Never remove or replace these paths (a file, or a folder and everything in it)."""
        for item in paths:
            try:
                if item is not None and str(item) and os.path.lexists(item):
                    self.inputs.append(Path(os.path.realpath(item)))
            except (OSError, ValueError, TypeError):  # not a path at all: a model name, a NUL byte
                continue

    # --- entering: checks, lock, recovery, staging --------------------------------------------------
    def __enter__(self) -> "OutputDir":
        _check_target(self.path)
        self._catch_signals()  # from the first folder made on: a SIGTERM or SIGHUP unwinds through _leave
        try:
            self._make_dirs()
            self._lock_fd = _lock(self.path / LOCK, self.path)
            _check_not_link(self.path / MANIFEST, self.path)
            deferred = _DeferredSignals()  # a roll back runs to its end too
            try:
                recover(self.path)
            finally:
                deferred.release()
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
        tops = {name.split("/")[0] for name in read_manifest(self.path)}
        for name in OUTPUTS:
            if name not in tops and os.path.lexists(self.path / name):
                raise UserError(f"--out {self.path}: holds {name}, which no earlier aimc-compile run recorded there "
                                f"(no {MANIFEST} lists it), so it may be yours; move it away or choose another --out")

    def _holds_input(self, target: Path) -> bool:
        real = Path(os.path.realpath(target))
        return any(real == p or p in real.parents or real in p.parents for p in self.inputs)

    def _catch_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in _DEFERRED[1:]:  # SIGINT already raises KeyboardInterrupt; an ignored SIGHUP (nohup) stays so
            if signal.getsignal(signum) is signal.SIG_DFL:
                self._handlers[signum] = signal.signal(signum, _terminate)

    def _leave(self, failed: bool) -> None:
        for signum, previous in self._handlers.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._handlers = {}
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
        new = _files_under(self.staging)
        unknown = [name for name in new if name.split("/")[0] not in OUTPUTS]
        assert not unknown, f"outputs without a name in compiler.outputs.OUTPUTS: {unknown}"
        self._check_conflicts()  # a file of the user's may have appeared while the run worked
        previous = read_manifest(self.path)
        listed = set(previous)
        for name in new:
            target = self.path / name
            if not _real_folders(self.path, name):
                raise UserError(f"--out {self.path}: a folder on the way to {name} is a link or a file; aimc-compile "
                                f"writes through no link: move it away or choose another --out")
            if not os.path.lexists(target):
                continue
            if not any(part in listed for part in _prefixes(name)):
                raise UserError(f"{target}: no {MANIFEST} lists it, so it may be yours; this run would replace it: "
                                f"move it away or choose another --out")
            if self._holds_input(target):
                raise UserError(f"{target}: this run reads it (an input) and would replace it; choose another --out")
        written = set(new)
        leftover = [name for name in previous if name not in written and os.path.lexists(self.path / name)]
        kept = [name for name in leftover if self._holds_input(self.path / name)]
        stale = [name for name in leftover if name not in kept and _real_folders(self.path, name)
                 and not _is_real_dir(self.path / name)]
        emptied = [name for name in leftover if name not in kept and _is_real_dir(self.path / name)]
        journal = {"run_id": f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}", "command": self.command,
                   "new": new, "replaced": [n for n in new if os.path.lexists(self.path / n)], "stale": stale,
                   "created": _missing_folders(self.path, new)}
        deferred = _DeferredSignals()
        try:
            _write_json(self.staging / JOURNAL, journal)  # before the first move: what a killed swap undoes
            for folder in journal["created"]:
                (self.path / folder).mkdir()
            for name in journal["replaced"] + stale:
                _move(self.path / name, _aside_target(self.staging, name))
            for name in new:
                _move(self.staging / name, self.path / name)
            _prune(self.path, stale, emptied)
            final = self.staging / MANIFEST
            _write_json(final, {"tool": "aimc-compile", "manifest_version": 2, "run_id": journal["run_id"],
                                "command": self.command, "complete": True, "files": sorted(written | set(kept))})
            os.replace(final, self.path / MANIFEST)
        except BaseException as exc:
            _roll_back(self.path, self.staging, journal)
            if isinstance(exc, OSError):
                raise _cannot_write(self.path, exc) from None
            raise
        finally:
            deferred.release()


# --- the manifest and the journal ---------------------------------------------------------------------

def read_manifest(folder: Path) -> list[str]:
    """The files the last run in `folder` wrote (relative paths under names this tool writes, none leading
    out of the folder); [] without a readable manifest."""
    data = _read_json(Path(folder) / MANIFEST)
    files = data.get("files") if isinstance(data, dict) else None
    return sorted({name for name in files if _valid(name)}) if isinstance(files, list) else []


def _valid(name: object) -> bool:
    """A relative path of ours: under a name of OUTPUTS, no `..`, `.` or empty part, no NUL."""
    if not isinstance(name, str) or "\0" in name or "\\" in name:
        return False
    parts = name.split("/")
    return parts[0] in OUTPUTS and all(part not in ("", ".", "..") for part in parts)


def _read_json(path: Path) -> object:
    """A small JSON file of ours, opened without following a link; None if it is anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_JSON_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return json.loads(handle.read(_MAX_JSON_BYTES + 1).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    finally:
        os.close(fd)


def _write_json(path: Path, data: dict) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())


def recover(folder: Path) -> None:
    """Staging folders left in `folder` by killed runs (call with the lock held): a swap that was under way
    (a journal, and the manifest not yet the swap's) is rolled back; then the staging folder goes."""
    manifest = _read_json(folder / MANIFEST)
    published = manifest.get("run_id") if isinstance(manifest, dict) else None
    for item in sorted(folder.iterdir()):
        if not item.name.startswith(STAGING_PREFIX) or item.is_symlink() or not item.is_dir():
            continue
        journal = _read_json(item / JOURNAL)
        if isinstance(journal, dict) and journal.get("run_id") != published:
            journal = {key: [n for n in _list(journal.get(key)) if _valid(n)]
                       for key in ("new", "replaced", "stale", "created")}
            _say(f"aimc-compile: {folder}: an earlier run was killed while publishing; its swap is rolled back")
            if not _roll_back(folder, item, journal):
                continue  # kept, renamed and named on stderr
        shutil.rmtree(item, ignore_errors=True)


def _roll_back(folder: Path, staging: Path, journal: dict) -> bool:
    """Undo a swap: the new files out, the previous ones back from `.previous`, the folders it made removed if
    empty. What cannot be put back is kept in a folder of its own (nothing removes it), named on stderr;
    False then."""
    aside = staging / _ASIDE
    replaced = set(journal["replaced"])
    for name in journal["new"]:  # moved in: no longer in the staging folder (a replaced one comes back below)
        target = folder / name
        if name not in replaced and not os.path.lexists(staging / name) and _real_folders(folder, name):
            try:
                _remove(target)
            except OSError:
                pass
    failed = []
    for name in journal["replaced"] + journal["stale"]:
        if os.path.lexists(aside / name):
            try:
                _make_folders(folder, name)
                _move(aside / name, folder / name)
            except (OSError, UserError):
                failed.append(name)
    for name in reversed(journal["created"]):
        try:
            (folder / name).rmdir()
        except OSError:
            pass
    if failed:
        kept = folder / f".aimc-unrestored-{uuid.uuid4().hex[:8]}"
        try:
            os.replace(aside, kept)
        except OSError:
            kept = aside
        _say(f"aimc-compile: could not put back {', '.join(failed)}; the previous files are in {kept}")
    return not failed


# --- paths -----------------------------------------------------------------------------------------

def _files_under(root: Path) -> list[str]:
    """Every file (and link) under `root` as a relative POSIX path, hidden names at the top left out."""
    found = []
    for here, folders, files in os.walk(root):
        relative = Path(here).relative_to(root)
        if relative == Path("."):
            folders[:] = [f for f in folders if not f.startswith(".")]
            files = [f for f in files if not f.startswith(".")]
        links = [f for f in folders if os.path.islink(os.path.join(here, f))]  # not descended: a file here
        found += [(relative / name).as_posix() for name in files + links]
    return sorted(found)


def _prefixes(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _real_folders(root: Path, name: str) -> bool:
    """Whether every folder between `root` and `root/name` that exists is a real folder (no link, no file)."""
    for prefix in _prefixes(name)[:-1]:
        try:
            mode = os.lstat(root / prefix).st_mode
        except FileNotFoundError:
            return True
        if not stat.S_ISDIR(mode):
            return False
    return True


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _missing_folders(root: Path, names: list[str]) -> list[str]:
    """The folders a publish of `names` must make below `root`, parents first."""
    missing: list[str] = []
    for name in names:
        for prefix in _prefixes(name)[:-1]:
            if prefix not in missing and not os.path.lexists(root / prefix):
                missing.append(prefix)
    return missing


def _make_folders(root: Path, name: str) -> None:
    if not _real_folders(root, name):
        raise UserError(f"{root / name}: a folder on the way is a link or a file")
    for prefix in _prefixes(name)[:-1]:
        if not os.path.lexists(root / prefix):
            (root / prefix).mkdir()


def _aside_target(staging: Path, name: str) -> Path:
    (staging / _ASIDE).mkdir(exist_ok=True)
    _make_folders(staging / _ASIDE, name)
    return staging / _ASIDE / name


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _prune(root: Path, removed: list[str], folders: list[str]) -> None:
    """Folders below `root` left empty by `removed` (and the listed `folders`, an older manifest's folder
    entries, with their empty subfolders); a folder holding anything stays."""
    candidates = {prefix for name in removed for prefix in _prefixes(name)[:-1]}
    for name in folders:
        for here, _, _ in os.walk(root / name):
            candidates.add(Path(here).relative_to(root).as_posix())
    for name in sorted(candidates, key=lambda n: n.count("/"), reverse=True):
        if _is_real_dir(root / name):
            try:
                (root / name).rmdir()
            except OSError:  # not empty: something of the user's, or of ours that stays
                pass


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


def _check_not_link(path: Path, folder: Path) -> None:
    if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        raise UserError(f"--out {folder}: {path.name} there is a link or not a plain file, so no aimc-compile run "
                        f"wrote it; aimc-compile writes through no link: remove it or choose another --out")


def _cannot_write(path: Path, exc: OSError) -> UserError:
    return UserError(f"--out {path}: cannot write there ({exc.strerror or exc}); choose a writable directory")


def safe_name(text: str, fallback: str = "run") -> str:
    """A file or folder name from untrusted text (a model name, a sweep label): letters, digits and `._-+=,`
    kept, anything else `_`, no leading dot (never `.`, `..` or hidden), at most 100 characters."""
    name = re.sub(r"[^A-Za-z0-9._+=,-]", "_", str(text)).lstrip(".")[:100]
    return name or fallback


# --- lock ------------------------------------------------------------------------------------------

def _lock(lock_path: Path, folder: Path) -> int:
    """An open descriptor holding the exclusive flock of `lock_path`; a UserError if another run holds it, or
    if the lock file is a link or not a plain file."""
    for _ in range(10):
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                raise
            fd = None
        if fd is None or not stat.S_ISREG(os.fstat(fd).st_mode):
            if fd is not None:
                os.close(fd)
            _check_not_link(lock_path, folder)
            raise UserError(f"--out {folder}: {LOCK} there is not a plain file; remove it or choose another --out")
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
            same = os.fstat(fd).st_ino == os.lstat(lock_path).st_ino
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
        if os.fstat(fd).st_ino == os.lstat(lock_path).st_ino:
            lock_path.unlink()
    except OSError:
        pass
    os.close(fd)


# --- moving ----------------------------------------------------------------------------------------

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


def _say(line: str) -> None:
    print(line.encode("ascii", "backslashreplace").decode(), file=sys.stderr, flush=True)


# --- signals ---------------------------------------------------------------------------------------

def _terminate(signum: int, frame) -> None:
    """SIGTERM (timeout, CI cancel, kill) or SIGHUP (the terminal closed): unwind like SIGINT, so `finally`
    and `with` clean up."""
    hangup = signum == getattr(signal, "SIGHUP", None)
    print(f"aimc-compile: terminated{' (SIGHUP: the terminal closed)' if hangup else ''}", file=sys.stderr)
    raise SystemExit(128 + signum)


class _DeferredSignals:
    """SIGINT, SIGTERM and SIGHUP noted instead of acted on until release(), which then delivers the first one
    (an ignored one, e.g. SIGHUP under nohup, stays ignored). Python handlers, not a signal mask: any thread
    may receive a signal, the main thread runs the handler."""

    def __init__(self) -> None:
        self.caught: int | None = None
        self.saved = {}
        if threading.current_thread() is threading.main_thread():
            self.saved = {s: signal.signal(s, self._note) for s in _DEFERRED
                          if signal.getsignal(s) is not signal.SIG_IGN}

    def _note(self, signum: int, frame) -> None:
        self.caught = self.caught or signum

    def release(self) -> None:
        for signum, handler in self.saved.items():
            if handler is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(signum, handler)
        if self.caught is not None:
            signal.raise_signal(self.caught)
