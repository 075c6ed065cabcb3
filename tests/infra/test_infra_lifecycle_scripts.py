"""The notebook lifecycle scripts: lint, size, rendering, and real runs against a scratch root.

The scripts run for real with bash; only the commands that reach the network or the
system (curl, sudo, chown, systemctl, the Jupyter environment's python) are stubs on PATH,
and every path the scripts touch is pointed into a temporary directory.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest

from infra.notebook import (
    MAX_LIFECYCLE_CONTENT,
    ON_CREATE_SCRIPT,
    ON_START_SCRIPT,
    lifecycle_content,
    render_script,
)
from infra.settings import MAX_IDLE_MINUTES

VERSION = "4.105.1"
SCRIPTS = [ON_CREATE_SCRIPT, ON_START_SCRIPT]
SHELLCHECK = shutil.which("shellcheck") or str(Path(sys.executable).with_name("shellcheck"))

# --- stubs -------------------------------------------------------------------------------

STUB_LOG_LINE = 'printf \'%s %s\\n\' "$(basename "$0")" "$*" >>"$STUB_LOG"\n'
STUBS = {
    # Runs the command as the current user: `sudo -u USER -H -- cmd ...` -> `cmd ...`.
    "sudo": STUB_LOG_LINE + 'while [ $# -gt 0 ]; do case "$1" in -u) shift 2 ;; -H|-E|-i) shift ;;'
    " --) shift; break ;; *) break ;; esac; done\n"
    'exec "$@"\n',
    "chown": STUB_LOG_LINE,
    "systemctl": STUB_LOG_LINE,
    # Serves the uv installer and the code-server tarball from files next to the stubs.
    "curl": STUB_LOG_LINE
    + '[ -z "$OFFLINE" ] || exit 6\n'  # OFFLINE=1: "could not resolve host"
    + 'for url; do :; done\ncase "$url" in\n'
    '  https://astral.sh/uv/install.sh) cat "$(dirname "$0")/uv-installer.sh" ;;\n'
    '  https://github.com/coder/code-server/releases/*) cat "$FAKE_TARBALL" ;;\n'
    '  *) echo "unexpected URL $url" >&2; exit 22 ;;\nesac\n',
}
# `uv venv ... DIR` makes a python that imports ipykernel once `uv pip install --python
# DIR/bin/python ipykernel` has run.
FAKE_UV = """#!/bin/sh
printf 'uv %s\\n' "$*" >>"$STUB_LOG"
case "$1" in
  venv) for dir; do :; done; mkdir -p "$dir/bin"
        printf '#!/bin/sh\\n[ -f "%s/ipykernel" ]\\n' "$dir" >"$dir/bin/python"
        chmod +x "$dir/bin/python" ;;
  pip) touch "$(dirname "$(dirname "$4")")/ipykernel" ;;
esac
"""
UV_INSTALLER = (
    '#!/bin/sh\nset -e\nmkdir -p "$UV_INSTALL_DIR"\n'
    "cat >\"$UV_INSTALL_DIR/uv\" <<'EOF'\n" + FAKE_UV + "EOF\n"
    'chmod +x "$UV_INSTALL_DIR/uv"\ncp "$UV_INSTALL_DIR/uv" "$UV_INSTALL_DIR/uvx"\n'
)
FAKE_CODE_SERVER = """#!/bin/sh
printf 'code-server %s\\n' "$*" >>"$STUB_LOG"
list="$XDG_DATA_HOME/code-server/extensions.txt"
case "$1" in
  --list-extensions) cat "$list" 2>/dev/null || true ;;
  --install-extension) mkdir -p "$(dirname "$list")"; echo "$2" >>"$list" ;;
esac
"""


def _write_executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.startswith("#!") else "#!/bin/sh\n" + text)
    path.chmod(0o755)


def _tarball(path: Path, version: str = VERSION) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = FAKE_CODE_SERVER.encode()
        info = tarfile.TarInfo(f"code-server-{version}-linux-amd64/bin/code-server")
        info.size, info.mode = len(data), 0o755
        archive.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return path


class Scratch(SimpleNamespace):
    root: Path
    home: Path
    tools: Path
    env: dict[str, str]
    log: Path

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def run(self, script: Path, **env: str) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        done = subprocess.run(
            ["bash", str(script)],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.seconds = time.monotonic() - started
        assert done.returncode == 0, done.stderr + done.stdout
        return done

    def snapshot(self, *, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
        """Every path under the root: kind, mode, mtime and content hash or link target."""
        state = {}
        for path in sorted(self.root.rglob("*")):
            rel = str(path.relative_to(self.root))
            if rel.startswith(skip):
                continue
            info = path.lstat()
            if path.is_symlink():
                state[rel] = ("link", str(path.readlink()))
            elif path.is_dir():
                state[rel] = ("dir", info.st_mode)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                state[rel] = ("file", info.st_mode, info.st_mtime_ns, digest)
        return state


@pytest.fixture
def scratch(tmp_path: Path) -> Scratch:
    root = tmp_path / "root"
    home = root / "home" / "ec2-user"
    stubs = tmp_path / "stubs"
    for name, body in STUBS.items():
        _write_executable(stubs / name, body)
    (stubs / "uv-installer.sh").write_text(UV_INSTALLER)
    (home / "SageMaker").mkdir(parents=True)
    (home / ".jupyter").mkdir()
    (home / ".jupyter" / "jupyter_server_config.py").write_text("c.ServerApp.port = 8443\n")
    # The Jupyter environment already has jupyter-server-proxy unless told otherwise.
    _write_executable(
        home / "anaconda3/envs/JupyterSystemEnv/bin/python",
        STUB_LOG_LINE + '[ -z "$NO_PROXY_PACKAGE" ] || [ "$1" != "-c" ]\n',
    )
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "usr/local/bin").mkdir(parents=True)
    metadata = root / "opt/ml/metadata/resource-metadata.json"
    metadata.parent.mkdir(parents=True)
    metadata.write_text(
        json.dumps(
            {
                "ResourceName": "nb",
                "ResourceArn": "arn:aws:sagemaker:eu-west-1:123456789012:notebook-instance/nb",
            }
        )
    )
    log = tmp_path / "calls.log"
    env = {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "STUB_LOG": str(log),
        "FAKE_TARBALL": str(_tarball(tmp_path / "code-server.tar.gz")),
        "NB_HOME": str(home),
        "SYSTEMD_DIR": str(root / "etc/systemd/system"),
        "BIN_DIR": str(root / "usr/local/bin"),
        "METADATA_FILE": str(metadata),
        "UV_WAIT_SECONDS": "10",
    }
    return Scratch(root=root, home=home, tools=home / "SageMaker/.tools", env=env, log=log)


@pytest.fixture
def rendered(tmp_path: Path) -> dict[str, Path]:
    """The scripts exactly as the stack sends them (dev values)."""
    out = {}
    for script, values in (
        (ON_CREATE_SCRIPT, {"CODE_SERVER_VERSION": VERSION}),
        (ON_START_SCRIPT, {"IDLE_TIMEOUT_MINUTES": "60"}),
    ):
        out[script.name] = tmp_path / script.name
        out[script.name].write_text(render_script(script, values))
    return out


# --- static checks -----------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean_and_bash_parses(script: Path, rendered: dict[str, Path]) -> None:
    for path in (script, rendered[script.name]):
        check = subprocess.run(
            [SHELLCHECK, "--shell=bash", "--severity=style", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout
        parse = subprocess.run(
            ["bash", "-n", str(path)], capture_output=True, text=True, check=False
        )
        assert parse.returncode == 0, parse.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shebang_first_and_strict_mode(script: Path) -> None:
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/bin/bash"
    first_command = next(line for line in lines[1:] if line and not line.startswith("#"))
    assert first_command == "set -euo pipefail"
    assert "yum " not in script.read_text()  # Amazon Linux 2023: dnf, if anything


def test_base64_content_fits_sagemakers_limit_even_with_the_largest_values() -> None:
    sizes = {
        "on-create": len(
            lifecycle_content(ON_CREATE_SCRIPT, {"CODE_SERVER_VERSION": "999.999.999"})
        ),
        "on-start": len(
            lifecycle_content(ON_START_SCRIPT, {"IDLE_TIMEOUT_MINUTES": str(MAX_IDLE_MINUTES)})
        ),
    }
    assert all(size <= MAX_LIFECYCLE_CONTENT for size in sizes.values()), sizes
    content = lifecycle_content(ON_START_SCRIPT, {"IDLE_TIMEOUT_MINUTES": "15"})
    assert ': "${IDLE_TIMEOUT_MINUTES:=15}"' in base64.b64decode(content).decode()


def test_render_refuses_unsafe_or_unknown_values() -> None:
    with pytest.raises(ValueError, match="not a safe"):
        render_script(ON_CREATE_SCRIPT, {"CODE_SERVER_VERSION": "1; rm -rf /"})
    with pytest.raises(ValueError, match="0 default lines for NOPE"):
        render_script(ON_CREATE_SCRIPT, {"NOPE": "1"})


def test_on_start_restarts_jupyter_the_al2023_way() -> None:
    text = ON_START_SCRIPT.read_text()
    assert "systemctl --no-block restart jupyter-server" in text
    assert '"codeserver": {' in text  # jupyter-server-proxy serves it at /codeserver/


# --- the on-start script, run twice ------------------------------------------------------


def test_on_start_sets_everything_up_and_a_second_run_changes_nothing(
    scratch: Scratch, rendered: dict[str, Path]
) -> None:
    script = rendered["setup_codeserver.sh"]
    scratch.run(script)
    first_calls = scratch.calls()
    bin_dir = scratch.root / "usr/local/bin"
    assert (bin_dir / "uv").readlink() == scratch.tools / "bin/uv"
    assert (bin_dir / "uvx").readlink() == scratch.tools / "bin/uvx"
    assert [c for c in first_calls if c.startswith("curl")] == [
        "curl -fsSL --retry 3 --connect-timeout 20 https://astral.sh/uv/install.sh"
    ]
    config = (scratch.home / ".jupyter/jupyter_server_config.py").read_text()
    assert config.startswith("c.ServerApp.port = 8443\n")  # SageMaker's own settings stay
    notebook_config = (scratch.home / ".jupyter/jupyter_notebook_config.py").read_text()
    for text in (config, notebook_config):
        servers = _proxy_servers(text)
        command = servers["codeserver"]["command"]
        assert command[0] == str(scratch.tools / "bin/code-server")
        assert "127.0.0.1:{port}" in command and "none" in command
        environment = servers["codeserver"]["environment"]
        assert environment["XDG_DATA_HOME"] == str(scratch.tools / "xdg/data")
    unit = (scratch.root / "etc/systemd/system/sagemaker-idle-autostop.service").read_text()
    assert "--idle-minutes 60" in unit and "User=ec2-user" in unit
    assert (scratch.root / "etc/systemd/system/sagemaker-idle-autostop.timer").exists()
    systemctl = [c for c in first_calls if c.startswith("systemctl")]
    assert systemctl == [
        "systemctl daemon-reload",
        "systemctl --no-block restart sagemaker-idle-autostop.timer",
        "systemctl --no-block restart jupyter-server",
    ]
    assert any(c.startswith("sudo -u ec2-user") for c in first_calls)  # user work as ec2-user

    before = scratch.snapshot()
    scratch.log.unlink()
    scratch.run(script)
    assert scratch.snapshot() == before
    second_calls = scratch.calls()
    assert not [c for c in second_calls if c.startswith(("curl", "uv "))]
    assert [c for c in second_calls if c.startswith("systemctl")] == [
        "systemctl --no-block start sagemaker-idle-autostop.timer",
        "systemctl --no-block restart jupyter-server",
    ]
    assert scratch.seconds < 30


def test_on_start_with_auto_stop_off_removes_the_timer_and_stays_idempotent(
    scratch: Scratch, rendered: dict[str, Path]
) -> None:
    script = rendered["setup_codeserver.sh"]
    scratch.run(script)
    scratch.run(script, IDLE_TIMEOUT_MINUTES="0")
    assert not list((scratch.root / "etc/systemd/system").iterdir())
    assert "systemctl --no-block stop sagemaker-idle-autostop.timer" in scratch.calls()
    before = scratch.snapshot()
    scratch.run(script, IDLE_TIMEOUT_MINUTES="0")
    assert scratch.snapshot() == before


def test_on_start_installs_the_proxy_package_when_missing(
    scratch: Scratch, rendered: dict[str, Path]
) -> None:
    scratch.run(rendered["setup_codeserver.sh"], NO_PROXY_PACKAGE="1")
    assert "python -m pip install --quiet jupyter-server-proxy" in scratch.calls()


def test_on_start_survives_no_network_and_no_jupyter_environment(
    scratch: Scratch, rendered: dict[str, Path]
) -> None:
    """A failed download or an unexpected image must not keep the notebook from starting."""
    shutil.rmtree(scratch.home / "anaconda3")
    done = scratch.run(rendered["setup_codeserver.sh"], OFFLINE="1")
    assert "warning: uv could not be installed" in done.stdout
    assert "warning: no Jupyter environment" in done.stdout
    assert not (scratch.root / "usr/local/bin/uv").exists()
    assert "systemctl --no-block restart jupyter-server" in scratch.calls()
    scratch.run(rendered["setup_codeserver.sh"])  # back online: uv arrives on the next start
    assert (scratch.root / "usr/local/bin/uv").is_symlink()


def test_proxy_block_loads_with_traitlets(scratch: Scratch, rendered: dict[str, Path]) -> None:
    """The same check with Jupyter's own config loader, where traitlets is installed."""
    loader = pytest.importorskip("traitlets.config.loader")
    configurable = pytest.importorskip("traitlets.config")
    traitlets = pytest.importorskip("traitlets")
    scratch.run(rendered["setup_codeserver.sh"])
    config = loader.PyFileConfigLoader(
        "jupyter_server_config.py", path=str(scratch.home / ".jupyter")
    ).load_config()

    class ServerProxy(configurable.Configurable):
        servers = traitlets.Dict({}, config=True)

    assert config.ServerApp.port == 8443
    servers = ServerProxy(config=config).servers
    assert servers["codeserver"]["launcher_entry"] == {"enabled": True, "title": "Code Server"}


def _proxy_servers(config: str) -> dict:
    """Execute the Jupyter config as Jupyter would, with a stand-in for traitlets' `c`."""
    servers: dict = {}
    c = SimpleNamespace(ServerApp=SimpleNamespace(), ServerProxy=SimpleNamespace(servers=servers))
    exec(compile(config, "jupyter_server_config.py", "exec"), {"c": c})  # noqa: S102
    return servers


# --- the on-create script and its background install -------------------------------------


def _wait_for_ready(scratch: Scratch, count: int) -> str:
    log = scratch.tools / "logs/install-codeserver.log"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if text.count("is ready") >= count or "uv did not appear" in text:
            return text
        time.sleep(0.1)
    raise AssertionError(f"background install did not finish:\n{text}")


def test_on_create_returns_at_once_and_installs_in_the_background(
    scratch: Scratch, rendered: dict[str, Path]
) -> None:
    script = rendered["install_codeserver.sh"]
    scratch.run(rendered["setup_codeserver.sh"])  # on the first boot OnStart brings uv
    scratch.run(script)
    assert scratch.seconds < 10
    log = _wait_for_ready(scratch, 1)
    assert f"code-server {VERSION} is ready" in log
    tools = scratch.tools
    assert str((tools / "bin/code-server").readlink()) == str(
        tools / f"code-server/{VERSION}/bin/code-server"
    )
    assert (tools / "xdg/data/code-server/extensions.txt").read_text() == "ms-python.python\n"
    assert (tools / "venv/bin/python").exists()
    settings = json.loads((tools / "xdg/data/code-server/Machine/settings.json").read_text())
    assert settings == {"python.defaultInterpreterPath": str(tools / "venv/bin/python")}
    calls = scratch.calls()
    assert any(f"v{VERSION}/code-server-{VERSION}-linux-amd64.tar.gz" in c for c in calls)
    assert any(c.startswith("uv venv --seed --python 3.11") for c in calls)

    before = scratch.snapshot(skip=("home/ec2-user/SageMaker/.tools/logs",))
    scratch.log.unlink()
    scratch.run(script)
    _wait_for_ready(scratch, 2)
    assert scratch.snapshot(skip=("home/ec2-user/SageMaker/.tools/logs",)) == before
    assert [c for c in scratch.calls() if c.startswith(("curl", "uv "))] == []
    assert not [c for c in scratch.calls() if "--install-extension" in c]


UPGRADE = "4.106.3"
README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_upgrade_command(version: str) -> str:
    """The upgrade command exactly as the README gives it, with a real version filled in."""
    found = re.findall(
        r"`(CODE_SERVER_VERSION=<version> bash [^`]*install-codeserver\.sh)`", README.read_text()
    )
    assert found, "README no longer shows the code-server upgrade command"
    return found[0].replace("<version>", version)


def test_upgrade_command_from_the_readme_runs_as_written(
    scratch: Scratch, rendered: dict[str, Path], tmp_path: Path
) -> None:
    """In a notebook terminal nothing but HOME and PATH is set: the installed job script
    must find its directories itself (it used to stop at `TOOLS_DIR: parameter null`)."""
    scratch.run(rendered["setup_codeserver.sh"])
    scratch.run(rendered["install_codeserver.sh"])
    _wait_for_ready(scratch, 1)
    terminal = {
        "PATH": scratch.env["PATH"],
        "HOME": str(scratch.home),
        "LANG": "C.UTF-8",
        "STUB_LOG": scratch.env["STUB_LOG"],
        "FAKE_TARBALL": str(_tarball(tmp_path / "upgrade.tar.gz", UPGRADE)),
        "UV_WAIT_SECONDS": "10",
    }
    done = subprocess.run(
        ["bash", "-c", _readme_upgrade_command(UPGRADE)],
        env=terminal,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert f"code-server {UPGRADE} is ready" in done.stdout
    tools = scratch.tools
    assert str((tools / "bin/code-server").readlink()) == str(
        tools / f"code-server/{UPGRADE}/bin/code-server"
    )
    assert any(f"v{UPGRADE}/code-server-{UPGRADE}-linux-amd64.tar.gz" in c for c in scratch.calls())
    # Without a version it repairs the linked one instead of failing on an unset variable.
    again = subprocess.run(
        ["bash", str(tools / "install-codeserver.sh")],
        env=terminal,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again.stderr + again.stdout
    assert f"code-server {UPGRADE} is ready" in again.stdout


def test_job_script_without_any_install_says_what_to_run(tmp_path: Path) -> None:
    script = tmp_path / "SageMaker/.tools/install-codeserver.sh"
    script.parent.mkdir(parents=True)
    body = render_script(ON_CREATE_SCRIPT, {"CODE_SERVER_VERSION": VERSION})
    script.write_text(body.split("<<'JOB'\n", 1)[1].split("\nJOB\n", 1)[0] + "\n")
    done = subprocess.run(
        ["bash", str(script)],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "run CODE_SERVER_VERSION=<version> bash" in done.stdout
    assert "parameter null" not in done.stderr


# --- the idle auto-stop check ------------------------------------------------------------


class _Jupyter(BaseHTTPRequestHandler):
    kernels: ClassVar[list] = []
    terminals: ClassVar[list] = []

    def do_GET(self) -> None:
        body = json.dumps(self.kernels if self.path == "/api/kernels" else self.terminals)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def jupyter() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Jupyter)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _iso(seconds_ago: float) -> str:
    stamp = time.gmtime(time.time() - seconds_ago)
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", stamp)


@pytest.mark.parametrize(
    ("kernels", "heartbeat_age", "expected"),
    [
        ([{"execution_state": "busy", "last_activity": _iso(9000)}], None, "active"),
        ([{"execution_state": "idle", "last_activity": _iso(600)}], None, "active"),
        ([{"execution_state": "idle", "last_activity": _iso(7200)}], 60, "active"),
        (
            [{"execution_state": "idle", "last_activity": _iso(7200)}],
            None,
            "stopping notebook instance nb in eu-west-1",
        ),
        ([], None, "stopping notebook instance nb in eu-west-1"),
    ],
    ids=["busy-kernel", "recent-kernel", "code-server-in-use", "idle", "nothing-ran"],
)
def test_idle_check_stops_only_an_idle_notebook(
    scratch: Scratch,
    rendered: dict[str, Path],
    jupyter: str,
    kernels: list,
    heartbeat_age: int | None,
    expected: str,
) -> None:
    scratch.run(rendered["setup_codeserver.sh"])
    _Jupyter.kernels, _Jupyter.terminals = kernels, []
    heartbeat = scratch.tools / "xdg/data/code-server/heartbeat"
    if heartbeat_age is not None:
        heartbeat.parent.mkdir(parents=True, exist_ok=True)
        heartbeat.touch()
        os.utime(heartbeat, (time.time() - heartbeat_age,) * 2)
    uptime = scratch.root / "uptime"
    uptime.write_text("10800.0 1000.0\n")  # booted 3 hours ago
    result = subprocess.run(
        [
            sys.executable,
            str(scratch.tools / "idle_autostop.py"),
            "--idle-minutes=60",
            f"--jupyter-url={jupyter}",
            f"--metadata={scratch.env['METADATA_FILE']}",
            f"--heartbeat={heartbeat}",
            f"--uptime-file={uptime}",
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
