"""Capture the code, git state and environment that every run records automatically."""

from __future__ import annotations

import functools
import getpass
import hashlib
import os
import platform
import re
import socket
import subprocess
import sys
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

from runlake.core import vocab

SOURCE_TYPES: tuple[str, ...] = ("NOTEBOOK", "LOCAL", "JOB")
SOURCE_TYPE_ENV = "RUNLAKE_SOURCE_TYPE"
# Presence of any of these (non-empty) means a scheduler or CI system launched the process.
JOB_ENVIRONMENT_VARIABLES: tuple[str, ...] = (
    "SLURM_JOB_ID",
    "PBS_JOBID",
    "LSB_JOBID",
    "AWS_BATCH_JOB_ID",
    "KUBERNETES_SERVICE_HOST",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "BUILDKITE",
    "JENKINS_URL",
    "AIRFLOW_CTX_DAG_ID",
)
STDIN_SOURCE = "<stdin>"
INTERACTIVE_SOURCE = "<interactive>"

TAG_USER = vocab.USER_TAG
TAG_SOURCE_NAME = vocab.SOURCE_NAME_TAG
TAG_SOURCE_TYPE = vocab.SOURCE_TYPE_TAG
TAG_GIT_COMMIT = vocab.GIT_COMMIT_TAG
TAG_GIT_BRANCH = vocab.GIT_BRANCH_TAG
TAG_GIT_REPO_URL = vocab.GIT_REPO_URL_TAG
TAG_GIT_REPO_URL_LEGACY = vocab.GIT_REPO_URL_LEGACY_TAG
TAG_GIT_DIRTY = vocab.GIT_DIRTY_TAG
TAG_ENTRY_POINT = vocab.ENTRY_POINT_TAG
TAG_SOURCE_SHA256 = vocab.SOURCE_SHA256_TAG

_GIT_TIMEOUT_S = 5
# Notebooks with embedded outputs can be huge; past this the snapshot keeps only its hash.
_MAX_SNAPSHOT_BYTES = 20 * 1024 * 1024
# A diff of a modified data file can be enormous; a truncated diff still shows what changed.
_MAX_DIFF_CHARS = 5 * 1024 * 1024


@dataclass(frozen=True)
class RunContext:
    """What a run records about where, how and from which code it was launched.

    Attributes:
        user: Login name of the user running the process.
        source_type: ``"NOTEBOOK"``, ``"LOCAL"`` or ``"JOB"`` (see ``capture_run_context``).
        source_name: Absolute path of the script or notebook, or ``"<stdin>"`` /
            ``"<interactive>"`` when the code came from neither.
        entry_point: Script or notebook file name, or the module name under ``python -m``.
        git_commit: Commit checked out in the source's repository.
        git_remote: URL of the repository's remote (``origin`` preferred), credentials removed.
        git_branch: Current branch; None when HEAD is detached.
        git_dirty: Whether tracked files differ from the commit or the source is untracked.
        git_diff: ``git diff HEAD`` output when the tree is dirty.
        script_bytes: Snapshot of the script or ``.ipynb`` file as it was on disk.
        script_name: Base file name to store the snapshot under.
        script_sha256: Hex SHA-256 of the script or notebook file.
        python_version: Interpreter version, e.g. ``"3.11.7"``.
        platform: ``platform.platform()`` string.
        hostname: Machine name.
        command_line: The interpreter's original command line (``sys.orig_argv``).
        packages: Installed distribution name to version.
    """

    user: str
    source_type: str
    source_name: str
    entry_point: str
    git_commit: str | None
    git_remote: str | None
    git_branch: str | None
    git_dirty: bool | None
    git_diff: str | None
    script_bytes: bytes | None
    script_name: str | None
    script_sha256: str | None
    python_version: str
    platform: str
    hostname: str
    command_line: list[str]
    packages: dict[str, str]

    @property
    def source_version(self) -> str | None:
        """The git commit, else ``"sha256:<hex>"`` of the script, else None."""
        if self.git_commit is not None:
            return self.git_commit
        if self.script_sha256 is not None:
            return f"sha256:{self.script_sha256}"
        return None


class _Source(NamedTuple):
    is_notebook: bool
    name: str
    entry_point: str
    path: str | None  # the file to snapshot, when there is one


class _GitState(NamedTuple):
    commit: str | None = None
    remote: str | None = None
    branch: str | None = None
    dirty: bool | None = None
    diff: str | None = None


class _Snapshot(NamedTuple):
    content: bytes | None = None
    name: str | None = None
    sha256: str | None = None


class _ProcessFacts(NamedTuple):
    user: str
    python_version: str
    platform: str
    hostname: str
    command_line: tuple[str, ...]


def capture_run_context(*, capture_packages: bool = True) -> RunContext:
    """Capture the context of the code that is running now.

    The source type is, in order: the value of ``RUNLAKE_SOURCE_TYPE`` when it is one of
    ``NOTEBOOK``, ``LOCAL`` or ``JOB``; ``NOTEBOOK`` inside a Jupyter kernel (checked before the
    scheduler variables because notebook servers on Kubernetes set ``KUBERNETES_SERVICE_HOST``);
    ``JOB`` when any of ``JOB_ENVIRONMENT_VARIABLES`` (Slurm, PBS, LSF, AWS Batch, Kubernetes,
    GitHub Actions, GitLab CI, Buildkite, Jenkins, Airflow) is set; otherwise ``LOCAL``.

    Git is asked about the directory of the script or notebook (the working directory for
    ``-c``, stdin and REPL code). Any git failure leaves the git fields None.

    Machine facts and the package list are computed once per process, and the package list
    again after a package is installed into a site-packages directory. A script's git state and snapshot are
    also taken once per process, because the code a script runs is the code it loaded, not
    what is on disk later; a notebook's are taken on every call since its cells keep changing.
    Every cache is keyed by process id, so forked workers capture their own.

    Args:
        capture_packages: Whether to list installed distributions (the slowest part).

    Returns:
        The captured context.
    """
    pid = os.getpid()
    facts = _process_facts(pid)
    source = _detect_source()
    if source.path is not None and not source.is_notebook:
        git, snapshot = _script_state(pid, source.path)
    else:
        git, snapshot = _capture_source_state(source.path)
    packages = dict(_installed_packages(pid, _sys_path_stamps())) if capture_packages else {}
    return RunContext(
        user=facts.user,
        source_type=_source_type(source.is_notebook),
        source_name=source.name,
        entry_point=source.entry_point,
        git_commit=git.commit,
        git_remote=git.remote,
        git_branch=git.branch,
        git_dirty=git.dirty,
        git_diff=git.diff,
        script_bytes=snapshot.content,
        script_name=snapshot.name,
        script_sha256=snapshot.sha256,
        python_version=facts.python_version,
        platform=facts.platform,
        hostname=facts.hostname,
        command_line=list(facts.command_line),
        packages=packages,
    )


def tags_for(ctx: RunContext) -> dict[str, str]:
    """The system tags a run sets from its context.

    MLflow's own tag names are used wherever MLflow has one, ``runlake.*`` otherwise. The diff
    is not a tag (it rarely fits a tag value); it goes into ``environment_json``.

    Args:
        ctx: A captured context.

    Returns:
        Tag name to value, leaving out tags whose value is unknown.
    """
    tags = {
        TAG_USER: ctx.user,
        TAG_SOURCE_NAME: ctx.source_name,
        TAG_SOURCE_TYPE: ctx.source_type,
        TAG_GIT_COMMIT: ctx.git_commit,
        TAG_GIT_BRANCH: ctx.git_branch,
        TAG_GIT_REPO_URL: ctx.git_remote,
        TAG_GIT_REPO_URL_LEGACY: ctx.git_remote,
        TAG_GIT_DIRTY: None if ctx.git_dirty is None else str(ctx.git_dirty).lower(),
        TAG_ENTRY_POINT: ctx.entry_point,
        TAG_SOURCE_SHA256: ctx.script_sha256,
    }
    return {key: value for key, value in tags.items() if value is not None}


def environment_json(ctx: RunContext) -> dict[str, Any]:
    """The document a run stores as the artifact ``runlake/environment.json``.

    Args:
        ctx: A captured context.

    Returns:
        A JSON-serialisable dict with ``python``, ``platform``, ``hostname``,
        ``command_line``, ``packages``, ``git`` and ``source`` keys.
    """
    return {
        "python": ctx.python_version,
        "platform": ctx.platform,
        "hostname": ctx.hostname,
        "command_line": list(ctx.command_line),
        "packages": dict(sorted(ctx.packages.items(), key=lambda item: item[0].lower())),
        "git": {
            "commit": ctx.git_commit,
            "branch": ctx.git_branch,
            "remote": ctx.git_remote,
            "dirty": ctx.git_dirty,
            "diff": ctx.git_diff,
        },
        "source": {
            "type": ctx.source_type,
            "name": ctx.source_name,
            "entry_point": ctx.entry_point,
            "script_name": ctx.script_name,
            "sha256": ctx.script_sha256,
            "version": ctx.source_version,
        },
    }


def requirements_txt(ctx: RunContext) -> str:
    """Pin every captured package as a ``requirements.txt`` file.

    Args:
        ctx: A captured context.

    Returns:
        ``name==version`` lines sorted by name, or ``""`` when no packages were captured.
    """
    lines = [f"{name}=={version}" for name, version in sorted(ctx.packages.items(), key=lambda item: item[0].lower())]
    return "".join(f"{line}\n" for line in lines)


def _source_type(is_notebook: bool) -> str:
    explicit = os.environ.get(SOURCE_TYPE_ENV, "").strip().upper()
    if explicit in SOURCE_TYPES:
        return explicit
    if explicit:
        warnings.warn(
            f"Ignoring {SOURCE_TYPE_ENV}={os.environ[SOURCE_TYPE_ENV]!r}: expected one of {', '.join(SOURCE_TYPES)}",
            stacklevel=3,
        )
    if is_notebook:
        return "NOTEBOOK"
    if any(os.environ.get(name) for name in JOB_ENVIRONMENT_VARIABLES):
        return "JOB"
    return "LOCAL"


def _detect_source() -> _Source:
    notebook = _notebook_source()
    if notebook is not None:
        return notebook
    # __main__.__file__ rather than sys.argv[0]: it is the real file under `python -m`, and it
    # is absent in REPLs and IPython, whose argv[0] names the launcher instead of user code.
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if isinstance(main_file, str) and os.path.isfile(main_file):
        path = os.path.abspath(main_file)
        module = getattr(getattr(main, "__spec__", None), "name", None)
        if isinstance(module, str) and module not in ("__main__", "__mp_main__"):
            entry_point = module.removesuffix(".__main__")
        else:
            entry_point = os.path.basename(path)
        return _Source(False, path, entry_point, path)
    argv0 = sys.argv[0] if sys.argv else ""
    name = STDIN_SOURCE if argv0 == "-" else INTERACTIVE_SOURCE
    return _Source(False, name, name, None)


def _notebook_source() -> _Source | None:
    # Never import IPython ourselves: a kernel has always imported ipykernel already, and
    # importing IPython elsewhere would cost a lot for nothing.
    if "ipykernel" not in sys.modules:
        return None
    get_ipython = getattr(sys.modules.get("IPython"), "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    if shell is None or not hasattr(shell, "kernel"):
        return None
    user_ns = getattr(shell, "user_ns", None) or {}
    # VS Code sets __vsc_ipynb_file__; ipykernel copies jupyter_server's JPY_SESSION_NAME into
    # __session__. Consoles get a non-notebook session name, hence the suffix check.
    candidates = (
        user_ns.get("__vsc_ipynb_file__"),
        user_ns.get("__session__"),
        os.environ.get("JPY_SESSION_NAME"),
    )
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.lower().endswith(".ipynb"):
            path = os.path.abspath(os.path.expanduser(candidate))
            name = os.path.basename(path)
            return _Source(True, path, name, path if os.path.isfile(path) else None)
    return _Source(True, INTERACTIVE_SOURCE, INTERACTIVE_SOURCE, None)


@functools.lru_cache(maxsize=1)
def _process_facts(pid: int) -> _ProcessFacts:
    """Machine and interpreter facts; ``pid`` is only the cache key (see capture_run_context)."""
    return _ProcessFacts(
        user=_user(),
        python_version=platform.python_version(),
        platform=platform.platform(),
        hostname=socket.gethostname(),
        command_line=tuple(getattr(sys, "orig_argv", sys.argv)),
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):
        # A container running as a uid with no passwd entry and no USER/LOGNAME variable.
        return "unknown"


def _sys_path_stamps() -> tuple[tuple[str, int], ...]:
    # Installing or upgrading a distribution adds or removes a *.dist-info directory, which
    # changes the modification time of its site directory: a cheap signal to list again.
    # Only site directories count, so a run writing checkpoints into its working directory
    # (often on sys.path) does not trigger a fresh listing every time.
    stamps = []
    for entry in sys.path:
        if os.path.basename(os.path.normpath(entry)) not in ("site-packages", "dist-packages"):
            continue
        try:
            stamps.append((entry, os.stat(entry).st_mtime_ns))
        except OSError:
            stamps.append((entry, 0))
    return tuple(stamps)


def site_packages_stamps() -> tuple[tuple[str, int], ...]:
    """(site directory, mtime) pairs: a cache key that changes when a package is installed."""
    return _sys_path_stamps()


@functools.lru_cache(maxsize=1)
def _installed_packages(pid: int, path_stamps: tuple[tuple[str, int], ...]) -> tuple[tuple[str, str], ...]:
    """Installed distributions; the arguments are only the cache key."""
    import importlib.metadata  # deferred: it costs ~10 ms of import time

    seen: dict[str, tuple[str, str]] = {}
    # distributions() walks sys.path in order, so the first of two same-named installs is the
    # one that `import` finds; keep that one.
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        version = dist.version
        if not name or not version:
            continue
        seen.setdefault(_canonical_name(name), (name, version))
    return tuple(sorted(seen.values(), key=lambda item: item[0].lower()))


def _canonical_name(name: str) -> str:
    # PEP 503 normalisation, which also makes the comparison case-insensitive.
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.lru_cache(maxsize=16)
def _script_state(pid: int, path: str) -> tuple[_GitState, _Snapshot]:
    """Git state and snapshot of a script; ``pid`` is only the cache key."""
    return _capture_source_state(path)


def _capture_source_state(path: str | None) -> tuple[_GitState, _Snapshot]:
    if path is None:
        return _capture_git(os.getcwd(), None), _Snapshot()
    # Resolve symlinks so git runs in the repository that actually holds the file.
    real = os.path.realpath(path)
    return _capture_git(os.path.dirname(real), os.path.basename(real)), _snapshot(real)


def _snapshot(path: str) -> _Snapshot:
    digest = hashlib.sha256()
    head = bytearray()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
                if len(head) <= _MAX_SNAPSHOT_BYTES:
                    head += chunk
    except OSError:
        return _Snapshot()
    content = bytes(head) if len(head) <= _MAX_SNAPSHOT_BYTES else None
    return _Snapshot(content, os.path.basename(path), digest.hexdigest())


class _Git:
    """Runs git in one directory and gives up for good after a timeout or a missing binary."""

    def __init__(self, cwd: str) -> None:
        self.cwd = cwd
        self.usable = True
        # No optional locks: a status refresh must never take index.lock from under the
        # user's own git commands. No prompts: nobody is there to answer them.
        self.env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"}

    def run(self, *args: str) -> subprocess.CompletedProcess[bytes] | None:
        if not self.usable:
            return None
        try:
            return subprocess.run(
                ["git", *args],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_GIT_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            # Missing git, a vanished directory or a hung network filesystem: every later
            # call would fail the same way, only slower.
            self.usable = False
            return None

    def output(self, *args: str) -> str | None:
        proc = self.run(*args)
        if proc is None or proc.returncode != 0:
            return None
        return proc.stdout.decode("utf-8", errors="replace")


def _capture_git(cwd: str, file_name: str | None) -> _GitState:
    git = _Git(cwd)
    if git.output("rev-parse", "--show-toplevel") is None:
        return _GitState()
    commit = _strip(git.output("rev-parse", "--verify", "--quiet", "HEAD"))
    branch = _strip(git.output("symbolic-ref", "--quiet", "--short", "HEAD"))
    remote = _pick_remote(git.output("config", "--get-regexp", r"^remote\..*\.url$"))
    status = git.output("status", "--porcelain", "--untracked-files=no")
    dirty: bool | None = None if status is None else bool(status.strip())
    if dirty is False and file_name is not None:
        # An untracked (or ignored) script is code the commit cannot reproduce.
        tracked = git.run("ls-files", "--error-unmatch", "--", file_name)
        if tracked is not None and tracked.returncode != 0:
            dirty = True
    diff = None
    if dirty and commit is not None:
        # --no-color and --no-ext-diff: a user's color.ui=always or diff tool must not leak in.
        diff = _truncate(git.output("diff", "--no-color", "--no-ext-diff", "HEAD"))
    return _GitState(commit, remote, branch, dirty, diff)


def _strip(text: str | None) -> str | None:
    return (text.strip() or None) if text is not None else None


def _truncate(diff: str | None) -> str | None:
    if diff is None or len(diff) <= _MAX_DIFF_CHARS:
        return diff
    return f"{diff[:_MAX_DIFF_CHARS]}\n# runlake: diff truncated at {_MAX_DIFF_CHARS} characters\n"


def _pick_remote(config: str | None) -> str | None:
    remotes: dict[str, str] = {}
    for line in (config or "").splitlines():
        key, _, url = line.partition(" ")
        name = key[len("remote.") : -len(".url")]
        if name and url:
            remotes.setdefault(name, url.strip())
    if not remotes:
        return None
    return _redact_url(remotes.get("origin") or next(iter(remotes.values())))


def _redact_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    # Remotes often embed access tokens (https://x-access-token:TOKEN@host/...); a tag is
    # visible to everyone who can read the lake. ssh's "git@" user is not a secret.
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
