#!/bin/bash
# SageMaker notebook instance lifecycle script, OnCreate: runs once, as root, from /.
#
# Installs code-server into the persistent ~/SageMaker volume, with a Python environment
# for it and the Python extension (the behaviour of AWS's amazon-sagemaker-codeserver
# sample, rewritten for Amazon Linux 2023 / notebook-al2023-v1). The downloads run in the
# background under nohup, so this script returns in seconds, far from the 5-minute limit.
# Progress: ~/SageMaker/.tools/logs/install-codeserver.log. Safe to run again: finished
# steps are skipped. The OnStart script (setup_codeserver.sh) installs uv and registers
# code-server with Jupyter at /codeserver/.
set -euo pipefail

# Rendered from the stack's config by infra/notebook.py; the environment wins when set.
: "${CODE_SERVER_VERSION:=4.105.1}"
: "${CODE_SERVER_PYTHON:=3.11}"

# Who and where; overridable for manual runs and tests.
: "${NB_USER:=ec2-user}"
: "${NB_HOME:=/home/$NB_USER}"
: "${SM_HOME:=$NB_HOME/SageMaker}"
: "${TOOLS_DIR:=$SM_HOME/.tools}"
: "${UV_WAIT_SECONDS:=600}"

JOB="$TOOLS_DIR/install-codeserver.sh"
LOG="$TOOLS_DIR/logs/install-codeserver.log"

log() { printf '%s on-create: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
as_user() { sudo -u "$NB_USER" -H -- "$@"; }

as_user mkdir -p "$TOOLS_DIR/bin" "$TOOLS_DIR/code-server" "$TOOLS_DIR/logs"
as_user touch "$LOG"

# The background job lives on the persistent volume, so it can also be rerun by hand,
# e.g. to upgrade: CODE_SERVER_VERSION=<version> bash ~/SageMaker/.tools/install-codeserver.sh
job_file=$(as_user mktemp "$JOB.XXXXXX")
as_user tee "$job_file" >/dev/null <<'JOB'
#!/bin/bash
# Installs code-server, its Python environment and the Python extension into TOOLS_DIR.
# Run by hand to upgrade: CODE_SERVER_VERSION=<version> bash ~/SageMaker/.tools/install-codeserver.sh
set -euo pipefail
log() { printf '%s install-codeserver: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
# This file lives in TOOLS_DIR, on the SageMaker volume: defaults for a manual run.
: "${TOOLS_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
: "${SM_HOME:=$(dirname "$TOOLS_DIR")}"
: "${CODE_SERVER_PYTHON:=3.11}" "${UV_WAIT_SECONDS:=600}"
if [ -z "${CODE_SERVER_VERSION:-}" ]; then
    # No version asked for: reinstall (repair) the one that is linked now.
    current=$(readlink "$TOOLS_DIR/bin/code-server" 2>/dev/null || true)
    CODE_SERVER_VERSION=$(basename "$(dirname "$(dirname "$current")")")
    if [ -z "$current" ] || [ "$CODE_SERVER_VERSION" = . ]; then
        log "no code-server installed yet: run CODE_SERVER_VERSION=<version> bash $0"
        exit 2
    fi
fi

export XDG_DATA_HOME="$TOOLS_DIR/xdg/data" XDG_CONFIG_HOME="$TOOLS_DIR/xdg/config"
export UV_CACHE_DIR="$TOOLS_DIR/uv-cache" UV_PYTHON_INSTALL_DIR="$TOOLS_DIR/python"
release="code-server-$CODE_SERVER_VERSION-linux-amd64"
target="$TOOLS_DIR/code-server/$CODE_SERVER_VERSION"
code_server="$TOOLS_DIR/bin/code-server"
uv="$TOOLS_DIR/bin/uv"
venv="$TOOLS_DIR/venv"

if [ ! -x "$target/bin/code-server" ]; then
    log "downloading code-server $CODE_SERVER_VERSION"
    staging=$(mktemp -d "$TOOLS_DIR/code-server/.download.XXXXXX")
    trap 'rm -rf "$staging"' EXIT
    curl -fsSL --retry 3 --connect-timeout 20 \
        "https://github.com/coder/code-server/releases/download/v$CODE_SERVER_VERSION/$release.tar.gz" |
        tar -xz -C "$staging"
    mv "$staging/$release" "$target"
fi
if [ "$(readlink "$code_server" || true)" != "$target/bin/code-server" ]; then
    ln -sfn "$target/bin/code-server" "$code_server"
fi

if ! "$code_server" --list-extensions | grep -qx 'ms-python.python'; then
    log "installing the Python extension"
    "$code_server" --install-extension ms-python.python
fi

# uv comes from the OnStart script, which runs right after this one on the first boot.
waited=0
while [ ! -x "$uv" ] && [ "$waited" -lt "$UV_WAIT_SECONDS" ]; do
    sleep 5
    waited=$((waited + 5))
done
if [ ! -x "$uv" ]; then
    log "uv did not appear in $uv; see the OnStart log, then rerun this script"
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    log "creating the Python $CODE_SERVER_PYTHON environment $venv"
    "$uv" venv --seed --python "$CODE_SERVER_PYTHON" "$venv"
fi
if ! "$venv/bin/python" -c 'import ipykernel' 2>/dev/null; then
    "$uv" pip install --python "$venv/bin/python" ipykernel
fi

settings="$XDG_DATA_HOME/code-server/Machine/settings.json"
if [ ! -f "$settings" ]; then
    mkdir -p "$(dirname "$settings")"
    printf '{\n  "python.defaultInterpreterPath": "%s"\n}\n' "$venv/bin/python" >"$settings"
fi
log "code-server $CODE_SERVER_VERSION is ready"
JOB
if cmp -s "$job_file" "$JOB"; then
    rm -f "$job_file"
else
    mv -f "$job_file" "$JOB"
fi

log "starting the code-server $CODE_SERVER_VERSION install in the background (log: $LOG)"
as_user env \
    CODE_SERVER_VERSION="$CODE_SERVER_VERSION" CODE_SERVER_PYTHON="$CODE_SERVER_PYTHON" \
    SM_HOME="$SM_HOME" TOOLS_DIR="$TOOLS_DIR" UV_WAIT_SECONDS="$UV_WAIT_SECONDS" \
    nohup setsid bash "$JOB" </dev/null >>"$LOG" 2>&1 &
log "done"
