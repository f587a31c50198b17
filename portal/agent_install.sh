#!/bin/sh
# Install the OmniTensor node agent and enroll this machine with the portal that served this
# script (GET /agent/install.sh; portal/agent_views.py writes the portal's URL below):
#
#   curl -fsSL <portal>/agent/install.sh | sh -s -- --code ABCD-1234
#
# It checks for Python 3.11+ with venv, downloads the agent's wheel from the portal, verifies it
# against the portal's SHA256SUMS, installs it in a virtualenv of its own (or with pipx),
# enrolls the machine with the code, and installs and starts a systemd unit where systemd runs.
# Run it again to upgrade in place: the enrollment is kept and the service restarted.
#
# As root the agent goes to /opt/omnitensor-agent, its config to /etc/omnitensor-agent and the
# service runs as the unprivileged user "omnitensor"; otherwise everything stays in your home
# directory and the service is a user unit. Pip reads its usual configuration (pip.conf,
# PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, ...) for the wheel's dependencies.
#
# Everything happens in main(), called on the last line: a download cut short runs nothing.

set -eu

PORTAL_URL=__PORTAL_URL__

usage() {
    cat <<EOF
Install the OmniTensor node agent from $PORTAL_URL and enroll this machine.

Usage: curl -fsSL $PORTAL_URL/agent/install.sh | sh -s -- --code CODE [options]

  --code CODE      the enrollment code from $PORTAL_URL/nodes/ ("Add a machine");
                   not needed to upgrade a machine that is enrolled
  --simulate N     report N simulated GPUs (machines without NVIDIA GPUs, tests)
  --pipx           install with pipx instead of a virtualenv of the script's own
  --no-service     never install a systemd unit; print how to run the agent instead
  --user           install for this user even when run as root
  --python PATH    the Python 3.11+ to use (default: python3)
  --force          enroll again with --code even if this machine is enrolled
  -h, --help       this help
EOF
}

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() {
    printf 'omnitensor-agent install: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# Plain http only to this machine: over a network the enrollment code and the node token
# would travel in clear, and anyone on the path could swap the wheel and its checksum.
CURL_PROTO=
check_transport() {
    case $PORTAL_URL in
        https://*) CURL_PROTO="--proto =https --proto-redir =https" ;;
        http://127.0.0.1 | http://127.0.0.1:* | http://localhost | http://localhost:* | \
            http://\[::1\] | http://\[::1\]:*) ;;
        *)
            [ "${OMNITENSOR_ALLOW_HTTP:-}" = 1 ] ||
                die "refusing plain http from $PORTAL_URL: serve the portal over https (or set OMNITENSOR_ALLOW_HTTP=1 on a network you trust)"
            ;;
    esac
}

# fetch URL FILE: curl (https only when the portal is https, redirects included), else wget,
# else Python's urllib.
fetch() {
    if have curl; then
        # shellcheck disable=SC2086 # CURL_PROTO is two options or none
        curl -fsSL $CURL_PROTO --retry 2 -o "$2" "$1"
    elif have wget; then
        wget -q -O "$2" "$1"
    else
        "$PYTHON" -c '
import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=120) as r, open(sys.argv[2], "wb") as f:
    shutil.copyfileobj(r, f)
' "$1" "$2"
    fi
}

sha256() {
    "$PYTHON" -c '
import hashlib, sys
with open(sys.argv[1], "rb") as f:
    print(hashlib.sha256(f.read()).hexdigest())
' "$1"
}

# checksum_of NAME: the checksum SHA256SUMS lists for exactly that name (empty if none).
checksum_of() {
    awk -v name="$1" 'NF == 2 && $2 == name { print $1; exit }' "$WORK/SHA256SUMS"
}

# download NAME: the file from /agent/, verified against SHA256SUMS; refuses on a mismatch.
download() {
    expected=$(checksum_of "$1")
    [ -n "$expected" ] || die "$PORTAL_URL/agent/SHA256SUMS does not list $1"
    fetch "$PORTAL_URL/agent/$1" "$WORK/$1" || die "cannot download $PORTAL_URL/agent/$1"
    actual=$(sha256 "$WORK/$1")
    if [ "$actual" != "$expected" ]; then
        die "checksum mismatch for $1: SHA256SUMS says $expected, the download is $actual." \
            "Nothing was installed."
    fi
    note "$1: sha256 $actual verified"
}

parse_args() {
    CODE=
    SIMULATE=
    USE_PIPX=0
    NO_SERVICE=0
    USER_INSTALL=0
    FORCE=0
    PYTHON=${PYTHON:-python3}
    while [ $# -gt 0 ]; do
        case $1 in
            --code | --simulate | --python)
                [ $# -ge 2 ] || die "$1 needs a value (see --help)"
                case $1 in
                    --code) CODE=$2 ;;
                    --simulate) SIMULATE=$2 ;;
                    --python) PYTHON=$2 ;;
                esac
                shift 2
                continue
                ;;
            --code=*) CODE=${1#*=} ;;
            --simulate=*) SIMULATE=${1#*=} ;;
            --python=*) PYTHON=${1#*=} ;;
            --pipx) USE_PIPX=1 ;;
            --no-service) NO_SERVICE=1 ;;
            --user) USER_INSTALL=1 ;;
            --force) FORCE=1 ;;
            -h | --help)
                usage
                exit 0
                ;;
            *) die "unknown option: $1 (see --help)" ;;
        esac
        shift
    done
    case $SIMULATE in
        '') ;;
        *[!0-9]* | 0*) die "--simulate needs a number of GPUs (1 or more), not '$SIMULATE'" ;;
    esac
    case $CODE in
        *[!A-Za-z0-9_-]*) die "'$CODE' is not an enrollment code (copy it from $PORTAL_URL/nodes/)" ;;
    esac
}

choose_paths() {
    if [ "$(id -u)" = 0 ] && [ "$USER_INSTALL" = 0 ]; then
        SCOPE=system
        HOME_DIR=/opt/omnitensor-agent
        CONFIG=/etc/omnitensor-agent/config.json
        SPOOL=/var/lib/omnitensor-agent/spool.sqlite3
    else
        SCOPE=user
        : "${HOME:?HOME is not set}"
        HOME_DIR=$HOME/.local/share/omnitensor-agent
        # Where the agent looks by default (XDG_CONFIG_HOME when absolute, as it reads it).
        case ${XDG_CONFIG_HOME:-} in
            /*) CONFIG=$XDG_CONFIG_HOME/omnitensor-agent/config.json ;;
            *) CONFIG=$HOME/.config/omnitensor-agent/config.json ;;
        esac
        SPOOL=
    fi
    VENV=$HOME_DIR/venv
}

check_python() {
    have "$PYTHON" || die "$PYTHON not found: the agent needs Python 3.11 or newer" \
        "(Debian/Ubuntu: apt install python3 python3-venv; or pass --python PATH)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "the agent needs Python 3.11 or newer; $PYTHON is" \
            "$("$PYTHON" -c 'import platform; print(platform.python_version())')" \
            "(pass --python PATH to use another)"
    if [ "$USE_PIPX" = 1 ]; then
        have pipx || die "--pipx was asked for but pipx is not installed"
    else
        "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null ||
            die "$PYTHON cannot create virtualenvs (Debian/Ubuntu: apt install python3-venv)"
    fi
}

install_agent() {
    say "Downloading the agent from $PORTAL_URL/agent/"
    fetch "$PORTAL_URL/agent/SHA256SUMS" "$WORK/SHA256SUMS" ||
        die "cannot download $PORTAL_URL/agent/SHA256SUMS: is the portal up, and has its" \
            "operator built the agent (python manage.py build_agent)?"
    WHEEL=$(awk 'NF == 2 && $2 ~ /^omnitensor_agent-.*-py3-none-any[.]whl$/ { print $2; exit }' \
        "$WORK/SHA256SUMS")
    case $WHEEL in
        '' | *[!A-Za-z0-9._+-]*) die "$PORTAL_URL/agent/SHA256SUMS lists no agent wheel" ;;
    esac
    download "$WHEEL"

    if [ "$USE_PIPX" = 1 ]; then
        if [ "$SCOPE" = system ]; then
            # Out of /root, where the service's user could not read it.
            PIPX_HOME=$HOME_DIR/pipx
            PIPX_BIN_DIR=$HOME_DIR/bin
            export PIPX_HOME PIPX_BIN_DIR
        fi
        say "Installing with pipx"
        pipx install --force --python "$PYTHON" "$WORK/$WHEEL" >/dev/null ||
            die "pipx could not install $WHEEL"
        AGENT=$(pipx environment --value PIPX_BIN_DIR 2>/dev/null || echo "$HOME/.local/bin")
        AGENT=$AGENT/omnitensor-agent
    else
        if ! "$VENV/bin/python" -c '' 2>/dev/null; then
            say "Creating a virtualenv in $VENV"
            mkdir -p "$HOME_DIR"
            "$PYTHON" -m venv --clear "$VENV" || die "could not create a virtualenv in $VENV"
        fi
        say "Installing $WHEEL and its dependencies in $VENV"
        "$VENV/bin/python" -m pip install --quiet --upgrade "$WORK/$WHEEL" ||
            die "pip could not install $WHEEL (see above; pip reads pip.conf and PIP_INDEX_URL)"
        # The same version rebuilt is installed too, not taken for already there.
        "$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps "$WORK/$WHEEL" ||
            die "pip could not install $WHEEL"
        AGENT=$VENV/bin/omnitensor-agent
    fi
    note "$("$AGENT" --version) at $AGENT"
}

enroll() {
    if [ -f "$CONFIG" ] && [ "$FORCE" = 0 ]; then
        say "This machine is enrolled already ($CONFIG): keeping its enrollment"
        [ -z "$CODE" ] || note "The code $CODE was not used (--force enrolls again with it)."
        return
    fi
    [ -n "$CODE" ] || die "--code CODE is needed to enroll: press \"Add a machine\" on" \
        "$PORTAL_URL/nodes/ to get one"
    say "Enrolling this machine with $PORTAL_URL"
    set -- enroll --portal "$PORTAL_URL" --code "$CODE" --config "$CONFIG"
    [ -z "$SIMULATE" ] || set -- "$@" --simulate "$SIMULATE"
    [ -z "$SPOOL" ] || set -- "$@" --spool "$SPOOL"
    [ "$FORCE" = 0 ] || set -- "$@" --force
    "$AGENT" "$@" || die "enrollment failed (see above). Codes work once and for an hour:" \
        "get a new one on $PORTAL_URL/nodes/ and run this again."
}

run_command() {
    if [ "$SCOPE" = system ]; then
        printf '%s run --config %s --spool %s' "$AGENT" "$CONFIG" "$SPOOL"
    else
        printf '%s run' "$AGENT"
    fi
}

systemd_runs() {
    have systemctl && [ -d /run/systemd/system ] || return 1
    [ "$SCOPE" = system ] || systemctl --user show-environment >/dev/null 2>&1
}

install_system_unit() {
    download omnitensor-agent.service
    # The unit expects the agent at /opt/omnitensor-agent/venv (pipx puts it elsewhere).
    sed "s|/opt/omnitensor-agent/venv/bin/omnitensor-agent|$AGENT|" \
        "$WORK/omnitensor-agent.service" >"$WORK/unit"
    if ! id omnitensor >/dev/null 2>&1; then
        say "Creating the system user omnitensor that the service runs as"
        useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin omnitensor ||
            die "could not create the user omnitensor"
    fi
    # The service reads its config as that user (systemd does not chown the config directory).
    chown -R omnitensor:omnitensor /etc/omnitensor-agent
    chmod 0700 /etc/omnitensor-agent
    install -m 0644 "$WORK/unit" /etc/systemd/system/omnitensor-agent.service
    systemctl daemon-reload
    systemctl enable --quiet omnitensor-agent
    systemctl restart omnitensor-agent
    say "The service omnitensor-agent is running (system unit)"
    note "Logs: journalctl -u omnitensor-agent -f"
}

install_user_unit() {
    dir=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
    case $dir in /*) ;; *) dir=$HOME/.config/systemd/user ;; esac
    mkdir -p "$dir"
    # The system unit's sandboxing needs privileges a user manager lacks, and its network
    # targets are not a user manager's (the agent retries until the network is up).
    cat >"$dir/omnitensor-agent.service" <<EOF
# OmniTensor node agent, installed by $PORTAL_URL/agent/install.sh
[Unit]
Description=OmniTensor node agent (GPU telemetry for the contributor portal)
Documentation=$PORTAL_URL/agent/

[Service]
Type=simple
ExecStart="$AGENT" run --config "$CONFIG"
Restart=always
RestartSec=10
# The agent flushes its queue on SIGTERM; give it time for one last request.
TimeoutStopSec=45
UMask=0077
NoNewPrivileges=yes

[Install]
WantedBy=default.target
EOF
    systemctl --user daemon-reload
    systemctl --user enable --quiet omnitensor-agent
    systemctl --user restart omnitensor-agent
    say "The service omnitensor-agent is running (user unit)"
    note "Logs: journalctl --user -u omnitensor-agent -f"
    note "To keep it running while you are logged out: loginctl enable-linger $(id -un)"
}

start_agent() {
    if [ "$NO_SERVICE" = 0 ] && systemd_runs; then
        if [ "$SCOPE" = system ]; then
            install_system_unit
        else
            install_user_unit
        fi
        return
    fi
    if [ "$NO_SERVICE" = 1 ]; then
        say "Not installing a service (--no-service). Start the agent with:"
    else
        say "systemd is not running here, so no service was installed. Start the agent with:"
    fi
    note "$(run_command)"
    note "and keep it running (tmux, screen, your init system, ...)."
}

main() {
    parse_args "$@"
    check_transport
    choose_paths
    if [ -z "$CODE" ] && [ ! -f "$CONFIG" ]; then
        die "--code CODE is needed: press \"Add a machine\" on $PORTAL_URL/nodes/ to get one"
    fi
    check_python
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
    trap 'exit 130' INT TERM
    install_agent
    enroll
    start_agent
    say "Done. The machine shows on $PORTAL_URL/nodes/ once its first report arrives."
}

main "$@"
