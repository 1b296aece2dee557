"""A bubblewrap sandbox for one grading kernel: what a submission's code can see, touch and outlive.

`dpdl grade` runs nbval (pytest and the recorder plugin, :mod:`dpdl.grading.recorder`) outside, as the grader, and only the
Jupyter kernel inside a sandbox made with bubblewrap (``bwrap``). The two talk over jupyter_client's
``ipc`` transport: Unix sockets in a directory shared with that one sandbox (:class:`KernelSandbox`; as
root, a small tmpfs), which also receives the values a hidden check records. Inside the sandbox:

- the Python environment, the ``dpdl`` package directory (nothing else of the repository), the dataset
  registry, cache and mirrors are mounted read-only, at their own paths;
- ``/tmp`` is an empty tmpfs of ``Limits.disk`` bytes holding ``HOME`` (``/tmp/home``), the working
  directory (``/tmp/work``) and the dataset cache (``/tmp/data``); it is gone with the sandbox;
- no network (a loopback of its own), its own PID, IPC, UTS and cgroup namespaces, a new session
  (no terminal to inject keystrokes into), and every process dies with the sandbox;
- the kernel runs as an unprivileged uid without capabilities: as root, a distinct uid per concurrent
  sandbox (``FIRST_UID + slot``); otherwise uid 65534 in a user namespace of its own;
- per-process limits (``prlimit``): memory (data), processes of that uid, file size, open files.

The grader's files, the reference notebook, other submissions and the output folder are simply not
mounted. See DEVELOPERS.md, "Grading sandbox", for the choice of bubblewrap and what is not covered.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FIRST_UID",
    "Limits",
    "KernelSandbox",
    "SandboxUnavailable",
    "sandbox_unavailable_reason",
    "require_sandbox",
    "parse_size",
]

GiB, MiB = 2**30, 2**20
# As root, sandbox number n runs as uid FIRST_UID + n: far above the ranges Debian and systemd hand out
# (0-65535, DynamicUser 61184-65519, subuid ranges from 100000), so no real account shares it, and a
# fork bomb's process count (RLIMIT_NPROC is counted per uid) cannot starve a neighbour's kernel.
FIRST_UID = 2_100_000_000
MAX_SANDBOXES = 1024  # sandboxes at once on one machine (uid slots)
NOBODY = 65534  # the uid inside a user namespace when the grader is not root
# As root, the shared directory is a tmpfs of this size: room for the connection file, the sockets and
# the values file (the grader reads 8 MiB of it at most), and no way to fill the grader's disk.
SHARED_BYTES = 16 * MiB
INSIDE_HOME, INSIDE_WORK, INSIDE_DATA = "/tmp/home", "/tmp/work", "/tmp/data"
_FIX = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) on Linux with user namespaces enabled "
    "(sysctl kernel.unprivileged_userns_clone=1; in a container, allow them, e.g. docker run --privileged "
    "or a seccomp profile permitting clone/unshare), or grade knowingly without isolation with --no-sandbox"
)


class SandboxUnavailable(RuntimeError):
    """No sandbox can be made here; the message says why and how to fix it."""


@dataclass(frozen=True)
class Limits:
    """What one submission's sandbox may use.

    ``memory`` is RLIMIT_DATA, per process: its private writable memory (heap and anonymous mappings,
    where tensors live), a limit a process can set without cgroups. Not RLIMIT_AS: torch's kernel
    reserves address space it never uses (malloc arenas, thread stacks), 4.0 GB of it while grading the
    lab 1 exercise, against 0.95 GB of data and 0.8 GB resident (measured; DEVELOPERS.md), so a 4 GB
    address-space limit would leave nothing, while the 4 GB data limit leaves 3 GB for the student.
    ``processes`` is RLIMIT_NPROC for the sandbox's uid (threads count: torch starts one per core).
    ``disk`` is the size of the sandbox's tmpfs (HOME, the working directory, /tmp, the dataset cache);
    ``file_size`` caps any one file it writes, including the values file in the shared directory.
    """

    memory: int = 4 * GiB
    processes: int = 512
    file_size: int = 512 * MiB
    disk: int = 2 * GiB
    open_files: int = 1024

    def __post_init__(self) -> None:
        for name in ("memory", "processes", "file_size", "disk", "open_files"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"sandbox limit {name} must be a positive whole number; got {value!r}")


def parse_size(text: str) -> int:
    """Bytes from ``4G``, ``512M``, ``1.5GB`` or a plain number of bytes (``--memory``)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:I?B)?\s*", text, re.IGNORECASE)
    if match is None:
        raise ValueError(f"not a size: {text!r}; write it like 4G, 512M or 1.5G")
    value = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if value < 1:
        raise ValueError(f"a size must be positive; got {text!r}")
    return value


_UNITS = {"": 1, "K": 2**10, "M": MiB, "G": GiB, "T": 2**40}
_AVAILABILITY: dict[tuple[str, int], str | None] = {}


def sandbox_unavailable_reason() -> str | None:
    """Why no sandbox can be made here, or None when one can. Tried once per process (a trivial bwrap run)."""
    if not sys.platform.startswith("linux"):
        return f"the grading sandbox needs Linux (bubblewrap); this is {sys.platform}"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    key = (bwrap, os.geteuid())
    if key not in _AVAILABILITY:
        _AVAILABILITY[key] = _probe(bwrap)
    return _AVAILABILITY[key]


def require_sandbox() -> None:
    """Raise :class:`SandboxUnavailable`, saying why and how to fix it, when no sandbox can be made here."""
    reason = sandbox_unavailable_reason()
    if reason is not None:
        raise SandboxUnavailable(f"cannot grade in a sandbox: {reason}. To fix: {_FIX}.")


def _probe(bwrap: str) -> str | None:
    """Start a sandbox as a kernel's would be, running ``true``; None when that worked."""
    tools = ["prlimit"] + (["setpriv"] if os.geteuid() == 0 else [])
    for tool in tools:
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is not installed"
    try:
        with tempfile.TemporaryDirectory(prefix="dpdl-sandbox-probe-") as folder, KernelSandbox(Path(folder)) as box:
            command = box.command([shutil.which("true") or "/bin/true"])
            done = subprocess.run(command, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError, SandboxUnavailable) as err:
        return f"bubblewrap could not start ({err})"
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        return f"bubblewrap cannot create a sandbox here ({detail[-1] if detail else f'exit {done.returncode}'})"
    return None


class KernelSandbox:
    """One submission's sandbox: its uid, the directory it shares with the grader, its bwrap command line.

    Use as a context manager around one nbval run: entering takes a uid slot (as root) and makes the
    shared directory ``folder/box``; leaving frees the slot and deletes the directory. ``folder`` must
    be private to the grader (it holds the notebook and nbval's results beside ``box``).
    """

    def __init__(self, folder: Path, limits: Limits = Limits(), env: Mapping[str, str] | None = None) -> None:
        self.folder = Path(folder)
        self.limits = limits
        self.env = dict(env or {})
        self.shared = self.folder / "box"
        self.uid: int | None = None  # the kernel's uid as root; None in a user namespace
        self.shared_is_tmpfs = False
        self._slot_lock = None
        self._alive = None  # flocked while this sandbox lives: a mount whose lock is free is a dead grader's

    # -- life cycle ------------------------------------------------------------------------------------

    def __enter__(self) -> KernelSandbox:
        self.shared.mkdir(mode=0o700)
        if os.geteuid() == 0:
            _unmount_dead_graders_dirs()
            self.uid = self._take_uid_slot()
            self._alive = open(self.folder / ".alive", "w")
            fcntl.flock(self._alive, fcntl.LOCK_EX)
            self.shared_is_tmpfs = _mount_tmpfs(self.shared, SHARED_BYTES, self.uid)
            os.chown(self.shared, self.uid, self.uid)
        self._write_account_files()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.shared_is_tmpfs:
            subprocess.run(["umount", "--lazy", str(self.shared)], capture_output=True, check=False)
            self.shared_is_tmpfs = False
        shutil.rmtree(self.shared, ignore_errors=True)
        if self._alive is not None:
            self._alive.close()
            self._alive = None
        if self._slot_lock is not None:
            self._slot_lock.close()  # releases the flock
            self._slot_lock = None

    def _take_uid_slot(self) -> int:
        """Lock the first free uid slot among every grader on this machine (a flock per slot)."""
        slots = Path(tempfile.gettempdir()) / "dpdl-grade-uid-slots"
        slots.mkdir(mode=0o700, exist_ok=True)
        info = slots.lstat()
        if not os.path.isdir(slots) or os.path.islink(slots) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise SandboxUnavailable(f"{slots} is not a private directory of this user; remove it and retry")
        for slot in range(MAX_SANDBOXES):
            lock = open(slots / f"{slot}.lock", "a")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            self._slot_lock = lock
            return FIRST_UID + slot
        raise SandboxUnavailable(f"all {MAX_SANDBOXES} sandbox uids are in use on this machine")

    def _write_account_files(self) -> None:
        """``/etc/passwd`` and ``/etc/group`` naming only the sandbox's user (getpass, matplotlib, torch ask)."""
        uid = self.uid if self.uid is not None else NOBODY
        (self.folder / "passwd").write_text(f"student:x:{uid}:{uid}:student:{INSIDE_HOME}:/bin/sh\n", encoding="utf-8")
        (self.folder / "group").write_text(f"student:x:{uid}:\n", encoding="utf-8")
        for name in ("passwd", "group"):
            os.chmod(self.folder / name, 0o644)

    # -- paths shared with the grader ------------------------------------------------------------------

    @property
    def values_file(self) -> Path:
        """Where the kernel writes the values its hidden checks record (``DPDL_GRADE_VALUES``)."""
        return self.shared / "values.jsonl"

    # -- the command line ------------------------------------------------------------------------------

    def command(self, argv: Iterable[str]) -> list[str]:
        """``argv`` wrapped in bwrap, limits and the uid switch; ``argv[0]`` must be an absolute path."""
        argv = list(argv)
        limits = self.limits
        prlimit = [
            shutil.which("prlimit") or "/usr/bin/prlimit",
            f"--data={limits.memory}", f"--nproc={limits.processes}", f"--fsize={limits.file_size}",
            f"--nofile={limits.open_files}", "--core=0", "--",
        ]  # fmt: skip
        if self.uid is not None:
            drop = [
                shutil.which("setpriv") or "/usr/bin/setpriv",
                f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
            ]  # fmt: skip
        else:
            drop = []
        return [shutil.which("bwrap") or "bwrap", *self._bwrap_options(), "--", *prlimit, *drop, *argv]

    def _bwrap_options(self) -> list[str]:
        options = [
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "sandbox", "--die-with-parent", "--new-session", "--clearenv",
        ]  # fmt: skip
        if self.uid is not None:
            options += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]  # for setpriv, then dropped
        else:
            options += ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]
        mounts = _Mounts()
        mounts.system()
        mounts.tmpfs("/tmp", self.limits.disk)  # first: a venv or cache under the host's /tmp is mounted on it
        for path in _python_paths():
            mounts.read_only(path)
        package = _package_dir()
        mounts.read_only(package)
        registry = _registry_file()
        if registry is not None:
            mounts.read_only(registry)
        data_sources = [path for path in _data_sources() if path.is_dir()]
        for path in data_sources:
            mounts.read_only(path)
        mounts.file(self.folder / "passwd", "/etc/passwd")
        mounts.file(self.folder / "group", "/etc/group")
        for inside in (INSIDE_HOME, INSIDE_WORK, INSIDE_DATA):
            mounts.directory(inside, 0o700 if self.uid is None else 0o1777)
        mounts.writable(self.shared)
        options += mounts.options
        options += ["--proc", "/proc", "--dev", "/dev", "--chdir", INSIDE_WORK]
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": INSIDE_HOME,
            "USER": "student",
            "LOGNAME": "student",
            "LANG": "C.UTF-8",
            "TMPDIR": "/tmp",
            "PYTHONNOUSERSITE": "1",
            "PYTHONPATH": str(package.parent),  # the package alone, whatever the host's PYTHONPATH held
            "DPDL_DATA_DIR": INSIDE_DATA,
            "DPDL_DATA_MIRROR": os.pathsep.join(str(path) for path in data_sources),
            "DPDL_OFFLINE": "1",
        }
        if registry is not None:
            env["DPDL_REGISTRY"] = str(registry)
        env.update(self.env)
        for key, value in env.items():
            options += ["--setenv", key, value]
        return options


def _unmount_dead_graders_dirs() -> None:
    """Unmount the shared tmpfs a grader killed with SIGKILL left behind (its ``__exit__`` never ran), and
    remove its private folder: one whose ``.alive`` file nobody holds a lock on any more."""
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    for line in lines:
        before, _, after = line.partition(" - ")
        if not after.startswith("tmpfs dpdl-grade-shared "):
            continue
        target = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), before.split()[4]))
        try:
            alive = open(target.parent / ".alive")
        except OSError:
            continue  # not made by this version: leave it alone
        with alive:
            try:
                fcntl.flock(alive, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its grader lives
            subprocess.run(["umount", "--lazy", str(target)], capture_output=True, check=False)
        shutil.rmtree(target.parent, ignore_errors=True)


def _mount_tmpfs(path: Path, size: int, uid: int) -> bool:
    """Mount a tmpfs of ``size`` bytes owned by ``uid`` on ``path``; False where this root may not mount
    (a container without CAP_SYS_ADMIN): the directory then stays on the grader's disk."""
    options = f"size={size},mode=0700,uid={uid},gid={uid},nosuid,nodev,noexec"
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "dpdl-grade-shared", str(path)], capture_output=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


class _Mounts:
    """bwrap mount options, in order, with every missing parent directory created world-readable (bwrap
    would make them 0700, out of an unprivileged uid's reach) and nothing mounted twice."""

    def __init__(self) -> None:
        self.options: list[str] = []
        self._made: set[str] = {"/"}
        self._read_only: list[Path] = []

    def _parents(self, path: str) -> None:
        for parent in reversed(Path(path).parents):
            if str(parent) not in self._made:
                self.options += ["--perms", "0755", "--dir", str(parent)]
                self._made.add(str(parent))
        self._made.add(path)

    def system(self) -> None:
        """/usr read-only, /bin, /lib... as the host has them (links into /usr, or directories), the loader's cache."""
        self.read_only(Path("/usr"))
        for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(name):
                self.options += ["--symlink", os.readlink(name), name]
                self._made.add(name)
            elif os.path.isdir(name):
                self.read_only(Path(name))
        for name in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
            if os.path.exists(name):
                self.read_only(Path(name))

    def read_only(self, path: Path) -> None:
        if any(path == done or done in path.parents for done in self._read_only):
            return
        self._parents(str(path))
        self.options += ["--ro-bind", str(path), str(path)]
        self._read_only.append(path)

    def writable(self, path: Path) -> None:
        self._parents(str(path))
        self.options += ["--bind", str(path), str(path)]

    def file(self, source: Path, inside: str) -> None:
        self._parents(inside)
        self.options += ["--ro-bind", str(source), inside]

    def tmpfs(self, inside: str, size: int) -> None:
        self._parents(inside)
        self.options += ["--perms", "1777", "--size", str(size), "--tmpfs", inside]

    def directory(self, inside: str, mode: int) -> None:
        self._parents(inside)
        self.options += ["--perms", f"{mode:04o}", "--dir", inside]


def _python_paths() -> list[Path]:
    """The interpreter's installation and the environment's (a venv's) prefixes, as given and resolved."""
    paths = []
    for prefix in (sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))):
        for path in (Path(prefix).absolute(), Path(os.path.realpath(prefix))):
            if path not in paths and str(path) != "/":
                paths.append(path)
    return paths


def _package_dir() -> Path:
    """The ``dpdl`` package directory the grader itself imports (this file's grandparent)."""
    return Path(__file__).resolve().parents[1]


def _registry_file() -> Path | None:
    from dpdl.data.registry import registry_path

    path = registry_path()
    return path.resolve() if path.is_file() else None


def _data_sources() -> list[Path]:
    """The grader's dataset cache and mirrors: the sandbox's mirrors, read-only (it copies what it uses)."""
    from dpdl.data.store import cache_dir, mirror_dirs

    sources = []
    for path in [cache_dir(), *mirror_dirs()]:
        path = Path(os.path.realpath(path))
        if path not in sources:
            sources.append(path)
    return sources
