"""Drive a container engine for the slow image test and `bench/image_size.py`.

Why this exists: the Dockerfile is the one artifact that reaches SageMaker
untested, and this machine has no Docker daemon. This module finds whatever
engine works (a Docker daemon if one answers, otherwise rootful podman with runc
and the vfs driver, see ../shared/notes/offline-testing.md), builds a Debian base
image from Debian's own packages when no registry of base images is reachable,
builds the serving image on it, and starts and removes containers.

Nothing here is pytest-specific, so the benchmark can reuse it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = "tests/image/setup_podman.sh"
SETUP_HINT = f"run `sudo bash {SETUP_SCRIPT}` (installs podman, runc and debootstrap from apt)"

# Everything the test starts carries this label, so a leftover is easy to find:
# `podman ps -a --filter label=org.sagemaker-batch-transform.test=image`.
TEST_LABEL = "org.sagemaker-batch-transform.test=image"
# The pid of the process that started a container: a container whose owner is
# gone (a test run killed with SIGKILL) is removed by the next run.
OWNER_LABEL = "org.sagemaker-batch-transform.owner-pid"
BASE_KEY_LABEL = "org.sagemaker-batch-transform.base-key"
BUILD_KEY_LABEL = "org.sagemaker-batch-transform.build-key"
SERVING_IMAGE = "localhost/sagemaker-serving:test"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# rootful podman caps its own RLIMIT_NPROC at 32768 before starting conmon and
# runc, and this sandbox has no CAP_SYS_RESOURCE, so runc cannot give a container
# podman's default limits (nofile 1048576, nproc 4194304): "error setting rlimit
# type 7/6: operation not permitted". Asking for limits at or under that works.
_PODMAN_NPROC_CAP = 32768


class EngineUnavailableError(RuntimeError):
    """No usable container engine (or no way to build the base); the text says what to do."""


class EngineError(RuntimeError):
    """An engine command failed; the text carries the command and its output's tail."""


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True)
class Engine:
    """One container engine CLI (`docker` or `podman`) with the flags it needs here."""

    name: str
    argv: tuple[str, ...]
    run_flags: tuple[str, ...] = field(default=())

    @property
    def is_podman(self) -> bool:
        return self.name == "podman"

    def cmd(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run one engine command, raising `EngineError` with its output when it fails."""
        argv = [*self.argv, *args]
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise EngineError(f"`{' '.join(argv)}` did not finish in {timeout:.0f} s") from exc
        if check and proc.returncode != 0:
            raise EngineError(
                f"`{' '.join(argv)}` exited {proc.returncode}:\n{_tail(proc.stderr + proc.stdout)}"
            )
        return proc

    # --- images -------------------------------------------------------------
    def image_inspect(self, ref: str) -> dict | None:
        """The engine's JSON description of an image, or None when it is not present."""
        proc = self.cmd("image", "inspect", ref, check=False)
        if proc.returncode != 0:
            return None
        data = json.loads(proc.stdout)
        return data[0] if data else None

    def image_history(self, ref: str) -> list[dict]:
        """Layers newest first, each as `size` (bytes) and `created_by`."""
        if self.is_podman:
            proc = self.cmd("image", "history", "--no-trunc", "--format", "json", ref)
            raw_rows = json.loads(proc.stdout)
        else:  # docker prints one JSON object per line; --human=false gives bytes
            proc = self.cmd(
                "image", "history", "--no-trunc", "--human=false", "--format", "{{json .}}", ref
            )
            raw_rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        return [
            {
                "size": _parse_size(raw.get("size", raw.get("Size", 0))),
                "created_by": raw.get("CreatedBy") or raw.get("createdBy") or "",
            }
            for raw in raw_rows
        ]

    def remove_image(self, ref: str) -> None:
        self.cmd("rmi", ref, check=False)

    # --- containers ---------------------------------------------------------
    def remove_stale_containers(self) -> list[str]:
        """Remove test containers whose starting process no longer exists; return their names."""
        proc = self.cmd("ps", "-a", "--filter", f"label={TEST_LABEL}", "--format", "{{.Names}}")
        removed = []
        for name in proc.stdout.split():
            info = self.cmd("container", "inspect", name, check=False)
            if info.returncode != 0:
                continue
            labels = (json.loads(info.stdout)[0].get("Config") or {}).get("Labels") or {}
            owner = labels.get(OWNER_LABEL, "")
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                self.remove_container(name)
                removed.append(name)
        return removed

    def remove_container(self, name: str) -> None:
        """Force-remove a container; a container that is already gone is fine."""
        self.cmd("rm", "-f", name, check=False, timeout=60)

    def container_state(self, name: str) -> dict:
        proc = self.cmd("container", "inspect", name)
        return json.loads(proc.stdout)[0]["State"]

    def logs(self, name: str) -> str:
        proc = self.cmd("logs", name, check=False)
        return proc.stdout + proc.stderr

    def published_port(self, name: str, container_port: int) -> tuple[str, int]:
        """The (host address, host port) a container port is published on."""
        proc = self.cmd("port", name, f"{container_port}/tcp")
        first = proc.stdout.strip().splitlines()[0]
        host, _, port = first.rpartition(":")
        return host, int(port)


def owner_labels() -> tuple[str, ...]:
    """`--label` flags marking a container as started by this process's test run."""
    return ("--label", TEST_LABEL, "--label", f"{OWNER_LABEL}={os.getpid()}")


def _parse_size(value: object) -> int:
    """Engine sizes arrive as ints (podman --format json) or '12.3MB' strings (docker)."""
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip().upper().replace(" ", "")
    units = {"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "B": 1}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(float(text or 0))


def _podman_ulimits() -> tuple[str, ...]:
    """Container rlimits runc can set without CAP_SYS_RESOURCE (see _PODMAN_NPROC_CAP)."""
    nofile_soft, nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    _, nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)
    if nofile_hard == resource.RLIM_INFINITY:
        nofile_hard = 1048576
    nofile_soft = nofile_hard if nofile_soft == resource.RLIM_INFINITY else nofile_soft
    if nproc_hard == resource.RLIM_INFINITY:
        nproc_hard = _PODMAN_NPROC_CAP
    nproc = min(nproc_hard, _PODMAN_NPROC_CAP)
    return (
        "--ulimit",
        f"nofile={nofile_hard}:{nofile_hard}",
        "--ulimit",
        f"nproc={nproc}:{nproc}",
    )


def _docker_daemon() -> Engine | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        proc = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0 or not proc.stdout.strip():
        return None  # a docker CLI without a daemon (as on this machine)
    return Engine("docker", (docker,))


def _podman() -> tuple[Engine | None, str]:
    podman = shutil.which("podman")
    if podman is None:
        return None, "podman is not installed"
    runtime = os.environ.get("IMAGE_TEST_OCI_RUNTIME") or shutil.which("runc") or "/usr/sbin/runc"
    if not Path(runtime).exists():
        return None, f"podman is installed but runc is not ({runtime} missing)"
    argv = (podman, "--runtime", runtime)
    proc = subprocess.run(
        [*argv, "info", "--format", "{{.Store.GraphDriverName}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        return None, f"`podman info` fails: {_tail(proc.stderr, 3)}"
    return Engine("podman", argv, run_flags=_podman_ulimits()), ""


def find_engine() -> Engine:
    """A Docker daemon that answers, else podman with runc; `EngineUnavailableError` otherwise.

    Set IMAGE_TEST_ENGINE=podman|docker to insist on one.
    """
    wanted = os.environ.get("IMAGE_TEST_ENGINE", "").strip().lower()
    if wanted not in {"", "docker", "podman"}:
        raise EngineUnavailableError(f"IMAGE_TEST_ENGINE={wanted!r}: use 'docker' or 'podman'")
    reasons = []
    if wanted in {"", "docker"}:
        docker = _docker_daemon()
        if docker is not None:
            return docker
        reasons.append("no Docker daemon answers `docker info`")
    if wanted in {"", "podman"}:
        podman, why = _podman()
        if podman is not None:
            return podman
        reasons.append(why)
    raise EngineUnavailableError(f"no container engine: {'; '.join(reasons)}; {SETUP_HINT}")


# --- the Debian base --------------------------------------------------------


@dataclass(frozen=True)
class DebianBase:
    """A base image made by debootstrap from Debian's packages (no registry needed).

    Its cache key hashes everything that decides the image's content; an image
    under `tag` whose label carries the same key is reused as it is.
    """

    tag: str = "localhost/base:bookworm"
    suite: str = "bookworm"
    variant: str = "minbase"
    include: tuple[str, ...] = ("python3", "python3-venv", "ca-certificates")
    arch: str = "amd64"
    # Which files are dropped before import; bump when the recipe changes.
    recipe: str = "v1: minus apt lists and downloaded .debs"
    # The mirror is not part of the key: any Debian mirror serves the same packages.
    mirror: str = field(
        default=os.environ.get("IMAGE_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian"),
        compare=False,
    )

    @property
    def key(self) -> str:
        params = {
            "suite": self.suite,
            "variant": self.variant,
            "include": sorted(self.include),
            "arch": self.arch,
            "recipe": self.recipe,
        }
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]

    def debootstrap_argv(self, rootfs: Path) -> list[str]:
        return [
            "debootstrap",
            f"--variant={self.variant}",
            f"--arch={self.arch}",
            f"--include={','.join(self.include)}",
            self.suite,
            str(rootfs),
            self.mirror,
        ]


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Serialize base builds between concurrent test runs on one machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_base(engine: Engine, base: DebianBase) -> bool:
    """True when the engine already holds `base.tag` built from the same parameters."""
    info = engine.image_inspect(base.tag)
    labels = ((info or {}).get("Config") or {}).get("Labels") or {}
    return labels.get(BASE_KEY_LABEL) == base.key


def ensure_debian_base(engine: Engine, base: DebianBase, log: Path) -> float | None:
    """Make `base.tag` exist; return the seconds spent building, or None when cached."""
    with _lock(Path(tempfile.gettempdir()) / "sagemaker-serving-base.lock"):
        if cached_base(engine, base):
            return None
        if shutil.which("debootstrap") is None:
            raise EngineUnavailableError(f"debootstrap is not installed; {SETUP_HINT}")
        if os.geteuid() != 0:
            raise EngineUnavailableError(
                "building the Debian base needs root (debootstrap, podman)"
            )
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="debian-base-", dir="/var/tmp") as tmp:
            rootfs = Path(tmp) / "rootfs"
            with log.open("ab") as out:
                proc = subprocess.run(
                    base.debootstrap_argv(rootfs),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=1200,
                    check=False,
                )
            if proc.returncode != 0:
                raise EngineError(
                    f"debootstrap exited {proc.returncode} (needs deb.debian.org); "
                    f"log: {log}\n{_tail(log.read_text(errors='replace'))}"
                )
            # Downloaded .debs and apt lists are 90 MB the image never needs.
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for item in (rootfs / junk).glob("*"):
                    if item.is_file() and item.name != "lock":
                        item.unlink()
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            try:
                imported = subprocess.run(
                    [
                        *engine.argv,
                        "import",
                        "--change",
                        f"LABEL {BASE_KEY_LABEL}={base.key}",
                        "--change",
                        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "--change",
                        'CMD ["/bin/bash"]',
                        "-",
                        base.tag,
                    ],
                    stdin=tar.stdout,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=False,
                )
            finally:
                assert tar.stdout is not None
                tar.stdout.close()
                tar.wait()
            if imported.returncode != 0 or tar.returncode != 0:
                raise EngineError(f"importing the Debian base failed:\n{_tail(imported.stderr)}")
        return time.monotonic() - started


# --- the serving image ------------------------------------------------------


def build_key(
    engine: Engine, context: Path, dockerfile: Path, build_args: Mapping[str, str]
) -> str:
    """Hash of everything a build reads: Dockerfile, context files, build args, base image ID.

    Compiled Python files are left out (host test runs leave them in the source
    tree); files a .dockerignore excludes are still hashed, which can only cause
    a needless rebuild, never a stale image.
    """
    digest = hashlib.sha256()
    digest.update(f"{engine.name}\0{dockerfile.read_bytes().hex()}\0".encode())
    for key, value in sorted(build_args.items()):
        image = engine.image_inspect(value) if key.endswith("IMAGE") else None
        digest.update(f"{key}={value}@{(image or {}).get('Id', '')}\0".encode())
    for path in sorted(context.rglob("*")):
        relative = path.relative_to(context)
        if "__pycache__" in relative.parts or path.suffix == ".pyc" or not path.is_file():
            continue
        executable = bool(path.stat().st_mode & 0o111)
        digest.update(f"{relative.as_posix()}\0{executable}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def build_image(
    engine: Engine,
    *,
    context: Path,
    dockerfile: Path,
    tag: str,
    build_args: Mapping[str, str],
    log: Path,
    timeout: float = 2400,
    reuse: bool = True,
) -> float | None:
    """Build `dockerfile` for linux/amd64 as `tag`; return the seconds it took.

    Returns None without building when `tag` already carries the `build_key` of
    the same inputs (with vfs even a fully cached podman build costs a minute).
    pip inside the build needs the host's CA bundle (podman only mounts what it
    is told) and the host network. The replaced image, if any, is removed so
    repeated runs do not pile up copies (vfs stores every layer in full).
    """
    key = build_key(engine, context, dockerfile, build_args)
    previous = engine.image_inspect(tag)
    labels = ((previous or {}).get("Config") or {}).get("Labels") or {}
    if reuse and labels.get(BUILD_KEY_LABEL) == key:
        return None
    argv = [*engine.argv, "build", "--platform", "linux/amd64", "-t", tag, "-f", str(dockerfile)]
    argv += ["--label", f"{BUILD_KEY_LABEL}={key}"]
    for key, value in build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    if engine.is_podman:
        argv += ["--network=host", *engine.run_flags]
        if HOST_CA_BUNDLE.exists():
            argv += ["-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    argv.append(str(context))
    started = time.monotonic()
    with log.open("ab") as out:
        out.write(("$ " + " ".join(argv) + "\n").encode())
        out.flush()
        try:
            proc = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise EngineError(f"image build did not finish in {timeout:.0f} s; log: {log}") from exc
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise EngineError(
            f"building {dockerfile} failed (exit {proc.returncode}); log: {log}\n"
            f"{_tail(log.read_text(errors='replace'), 60)}"
        )
    current = engine.image_inspect(tag)
    if previous and current and previous.get("Id") != current.get("Id"):
        engine.remove_image(previous["Id"])  # fails harmlessly if a container uses it
    return elapsed


@dataclass
class RunSpec:
    """How to start one container the way SageMaker does (see `start_container`)."""

    image: str
    name: str
    args: Sequence[str] = ("serve",)
    env: Mapping[str, str] = field(default_factory=dict)
    # (host dir, container dir); always mounted read-only.
    ro_mounts: Sequence[tuple[Path, str]] = ()
    # Container port published on 127.0.0.1 with an engine-chosen host port; None
    # starts the container with no network at all (only loopback inside).
    publish: int | None = 8080
    read_only: bool = True


def start_container(engine: Engine, spec: RunSpec) -> None:
    """`run -d IMAGE serve` with a read-only root, a tmpfs /tmp and a loopback-only port."""
    argv = ["run", "-d", "--name", spec.name, *owner_labels(), *engine.run_flags]
    if spec.read_only:
        argv.append("--read-only")
        if engine.is_podman:
            # podman otherwise adds writable /var/tmp and /run: only /tmp may be written.
            argv.append("--read-only-tmpfs=false")
        argv += ["--tmpfs", "/tmp:rw,size=256m,mode=1777"]
    for key, value in spec.env.items():
        argv += ["-e", f"{key}={value}"]
    for host_dir, container_dir in spec.ro_mounts:
        argv += ["-v", f"{host_dir}:{container_dir}:ro"]
    if spec.publish is None:
        argv.append("--network=none")
    else:
        argv += ["-p", f"127.0.0.1::{spec.publish}"]
    argv += [spec.image, *spec.args]
    engine.cmd(*argv, timeout=120)
