#!/bin/bash
# SageMaker notebook instance lifecycle script, OnStart: runs on every start (the first one
# too, right after OnCreate), as root, from /. Amazon Linux 2023 / notebook-al2023-v1.
#
# Registers code-server (installed by install_codeserver.sh on the persistent volume) with
# Jupyter's server proxy at /codeserver/, installs uv, arms the optional idle auto-stop and
# restarts the Jupyter server. The root volume is rebuilt on every start, so this runs
# every time; it is idempotent: a second run changes no file.
set -euo pipefail

# Rendered from the stack's config by infra/notebook.py; the environment wins when set.
: "${IDLE_TIMEOUT_MINUTES:=60}"

# Who and where; overridable for manual runs and tests.
: "${NB_USER:=ec2-user}"
: "${NB_HOME:=/home/$NB_USER}"
: "${SM_HOME:=$NB_HOME/SageMaker}"
: "${TOOLS_DIR:=$SM_HOME/.tools}"
: "${JUPYTER_CONFIG_DIR:=$NB_HOME/.jupyter}"
: "${JUPYTER_ENV:=$NB_HOME/anaconda3/envs/JupyterSystemEnv}"
: "${JUPYTER_URL:=https://127.0.0.1:8443}"
: "${SYSTEMD_DIR:=/etc/systemd/system}"
: "${BIN_DIR:=/usr/local/bin}"
: "${METADATA_FILE:=/opt/ml/metadata/resource-metadata.json}"

UNIT=sagemaker-idle-autostop
MARK_BEGIN="# BEGIN code-server proxy (managed by the OnStart lifecycle script)"
MARK_END="# END code-server proxy"

log() { printf '%s on-start: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
as_user() { sudo -u "$NB_USER" -H -- "$@"; }

# write_if_changed PATH MODE OWNER < content: replace PATH only when the content differs.
# Sets CHANGED=1 when it wrote.
CHANGED=0
write_if_changed() {
    local path=$1 mode=$2 owner=$3 tmp
    tmp=$(mktemp "$path.XXXXXX")
    cat >"$tmp"
    if [ -f "$path" ] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"
        return 0
    fi
    chmod "$mode" "$tmp"
    chown "$owner:" "$tmp"
    mv -f "$tmp" "$path"
    CHANGED=1
}

link() { # link TARGET NAME: a symlink, recreated only when it points elsewhere
    if [ "$(readlink "$2" || true)" != "$1" ]; then ln -sfn "$1" "$2"; fi
}

# --- uv, on the persistent volume, linked onto the PATH ---------------------------------
# A failed download must not keep the notebook from starting: warn and carry on.
if [ ! -x "$TOOLS_DIR/bin/uv" ]; then
    log "installing uv into $TOOLS_DIR/bin"
    as_user mkdir -p "$TOOLS_DIR/bin"
    if ! curl -fsSL --retry 3 --connect-timeout 20 https://astral.sh/uv/install.sh |
        as_user env UV_INSTALL_DIR="$TOOLS_DIR/bin" UV_NO_MODIFY_PATH=1 sh; then
        log "warning: uv could not be installed; it is retried on the next start"
    fi
fi
if [ -x "$TOOLS_DIR/bin/uv" ]; then
    mkdir -p "$BIN_DIR"
    link "$TOOLS_DIR/bin/uv" "$BIN_DIR/uv"
    link "$TOOLS_DIR/bin/uvx" "$BIN_DIR/uvx"
fi

# --- code-server behind jupyter-server-proxy at /codeserver/ ----------------------------
python="$JUPYTER_ENV/bin/python"
if [ ! -x "$python" ]; then
    log "warning: no Jupyter environment at $JUPYTER_ENV; not checking jupyter-server-proxy"
elif ! "$python" -c 'import jupyter_server_proxy' 2>/dev/null; then
    log "installing jupyter-server-proxy into $JUPYTER_ENV"
    as_user "$python" -m pip install --quiet jupyter-server-proxy ||
        log "warning: jupyter-server-proxy could not be installed; /codeserver/ will not work"
fi
if [ ! -d "$JUPYTER_CONFIG_DIR" ]; then
    as_user mkdir -p "$JUPYTER_CONFIG_DIR"
fi
# JupyterLab 4 (notebook-al2023-v1) runs on jupyter_server, which reads
# jupyter_server_config.py; the block also goes into jupyter_notebook_config.py for servers
# that still read that one. In both, only the marked block is ever replaced.
for config in "$JUPYTER_CONFIG_DIR/jupyter_server_config.py" \
    "$JUPYTER_CONFIG_DIR/jupyter_notebook_config.py"; do
    existing=""
    if [ -f "$config" ]; then
        existing=$(sed "/^$MARK_BEGIN\$/,/^$MARK_END\$/d" "$config")
    fi
    {
        if [ -n "$existing" ]; then printf '%s\n' "$existing"; fi
        cat <<EOF
$MARK_BEGIN
c.ServerProxy.servers.update({
    "codeserver": {
        "command": [
            "$TOOLS_DIR/bin/code-server", "--auth", "none", "--disable-telemetry",
            "--disable-update-check", "--bind-addr", "127.0.0.1:{port}", "$SM_HOME",
        ],
        "environment": {
            "XDG_DATA_HOME": "$TOOLS_DIR/xdg/data",
            "XDG_CONFIG_HOME": "$TOOLS_DIR/xdg/config",
            "SHELL": "/bin/bash",
        },
        "absolute_url": False,
        "timeout": 60,
        "launcher_entry": {"enabled": True, "title": "Code Server"},
    },
})
$MARK_END
EOF
    } | write_if_changed "$config" 0644 "$NB_USER"
done

# --- idle auto-stop: a systemd timer checking every 5 minutes ---------------------------
CHANGED=0
if [ "$IDLE_TIMEOUT_MINUTES" -gt 0 ]; then
    write_if_changed "$TOOLS_DIR/idle_autostop.py" 0644 "$NB_USER" <<'PY'
# /// script
# requires-python = ">=3.9"
# dependencies = ["boto3"]
# ///
"""Stop this notebook instance once kernels, terminals and code-server have been idle."""

import argparse
import json
import ssl
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path


def api(base, path):
    # Jupyter serves a self-signed certificate on the instance's loopback only.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(base + path, context=context, timeout=10) as response:
        return json.load(response)


def stamp(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def last_activity(base, heartbeat, booted):
    """Latest sign of use, or None while a kernel is busy."""
    kernels = api(base, "/api/kernels")
    if any(kernel.get("execution_state") == "busy" for kernel in kernels):
        return None
    times = [booted] + [stamp(kernel["last_activity"]) for kernel in kernels]
    times += [stamp(t["last_activity"]) for t in api(base, "/api/terminals") if "last_activity" in t]
    if heartbeat.exists():  # code-server touches it while a browser is connected
        times.append(heartbeat.stat().st_mtime)
    return max(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle-minutes", type=int, required=True)
    parser.add_argument("--jupyter-url", required=True)
    parser.add_argument("--metadata", type=Path, required=True)
    parser.add_argument("--heartbeat", type=Path, required=True)
    parser.add_argument("--uptime-file", type=Path, default=Path("/proc/uptime"))
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    now = time.time()
    booted = now - float(args.uptime_file.read_text().split()[0])
    last = last_activity(args.jupyter_url, args.heartbeat, booted)
    idle = 0.0 if last is None else (now - last) / 60
    if idle < args.idle_minutes:
        print(f"active: idle for {idle:.0f} of {args.idle_minutes} minutes")
        return 0
    metadata = json.loads(args.metadata.read_text())
    name, region = metadata["ResourceName"], metadata["ResourceArn"].split(":")[3]
    print(f"idle for {idle:.0f} minutes: stopping notebook instance {name} in {region}")
    if not args.dry_run:
        import boto3

        client = boto3.client("sagemaker", region_name=region)
        client.stop_notebook_instance(NotebookInstanceName=name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
PY
    write_if_changed "$SYSTEMD_DIR/$UNIT.service" 0644 root <<EOF
[Unit]
Description=Stop this notebook instance after $IDLE_TIMEOUT_MINUTES idle minutes

[Service]
Type=oneshot
User=$NB_USER
Environment=UV_CACHE_DIR=$TOOLS_DIR/uv-cache UV_PYTHON_INSTALL_DIR=$TOOLS_DIR/python
ExecStart=$TOOLS_DIR/bin/uv run --quiet --script $TOOLS_DIR/idle_autostop.py --idle-minutes $IDLE_TIMEOUT_MINUTES --jupyter-url $JUPYTER_URL --metadata $METADATA_FILE --heartbeat $TOOLS_DIR/xdg/data/code-server/heartbeat
EOF
    write_if_changed "$SYSTEMD_DIR/$UNIT.timer" 0644 root <<EOF
[Unit]
Description=Check every 5 minutes whether this notebook instance is idle

[Timer]
OnBootSec=5min
OnUnitActiveSec=5min

[Install]
WantedBy=timers.target
EOF
    if [ "$CHANGED" = 1 ]; then
        systemctl daemon-reload
        systemctl --no-block restart "$UNIT.timer"
    else
        systemctl --no-block start "$UNIT.timer"
    fi
    log "idle auto-stop armed: $IDLE_TIMEOUT_MINUTES minutes"
elif [ -e "$SYSTEMD_DIR/$UNIT.timer" ]; then
    systemctl --no-block stop "$UNIT.timer" || true
    rm -f "$SYSTEMD_DIR/$UNIT.timer" "$SYSTEMD_DIR/$UNIT.service"
    systemctl daemon-reload
    log "idle auto-stop removed"
fi

# --- pick up the proxy configuration ----------------------------------------------------
systemctl --no-block restart jupyter-server
log "done; code-server is at /codeserver/ once the OnCreate install has finished"
