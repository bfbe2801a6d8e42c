#!/bin/sh
# Install or remove reelwatch as a systemd service.
#
#   systemd/install.sh [--user] [--prefix DIR] [--destdir DIR]
#   systemd/install.sh [--user] --uninstall [--purge]
#
# System mode (the default, run as root):
#   - creates the "reelwatch" user and group (sysusers.d),
#   - installs the package into a virtual environment in PREFIX
#     (/opt/reelwatch) and links /usr/local/bin/reelwatch to it,
#   - installs reelwatch.service and reelwatch.socket in /etc/systemd/system,
#   - installs /etc/reelwatch/reelwatch.toml unless it exists,
#   - installs the inotify sysctl file unless the running limit is higher.
# User mode (--user, as the user who runs the service):
#   - installs the package into PREFIX (~/.local/share/reelwatch/venv) and
#     links ~/.local/bin/reelwatch to it,
#   - installs the user units in ~/.config/systemd/user,
#   - installs ~/.config/reelwatch/reelwatch.toml unless it exists.
# Neither mode enables or starts anything; the script prints the commands.
#
# --destdir DIR copies only the files (units, configuration, sysctl and
# sysusers files) below DIR, for packaging or inspection: no virtual
# environment, account, systemctl or sysctl call.
# --uninstall stops and disables the units and removes what the script
# installed, except the configuration, the catalog and the account;
# --purge also removes the configuration and the catalog.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
mode=system
action=install
purge=no
prefix=
destdir=

usage() {
    sed -n '4,5p' "$0" | sed 's/^# *//' >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
    --user) mode=user ;;
    --uninstall) action=uninstall ;;
    --purge) purge=yes ;;
    --prefix) [ $# -ge 2 ] || usage; prefix=$2; shift ;;
    --destdir) [ $# -ge 2 ] || usage; destdir=$2; shift ;;
    -h | --help) usage ;;
    *)
        echo "install.sh: unknown option '$1'" >&2
        usage
        ;;
    esac
    shift
done

if [ "$mode" = system ]; then
    prefix=${prefix:-/opt/reelwatch}
    bin_link=/usr/local/bin/reelwatch
    unit_dir=/etc/systemd/system
    config_dir=/etc/reelwatch
    state_dir=/var/lib/reelwatch
    systemctl="systemctl"
    units_from=$here
else
    data_home=${XDG_DATA_HOME:-$HOME/.local/share}
    config_home=${XDG_CONFIG_HOME:-$HOME/.config}
    prefix=${prefix:-$data_home/reelwatch/venv}
    # The user unit runs %h/.local/bin/reelwatch, so the link goes there.
    bin_link=$HOME/.local/bin/reelwatch
    unit_dir=$config_home/systemd/user
    config_dir=$config_home/reelwatch
    state_dir=$HOME/.local/state/reelwatch
    systemctl="systemctl --user"
    units_from=$here/user
fi
sysctl_file=/etc/sysctl.d/60-reelwatch-inotify.conf
sysusers_file=/etc/sysusers.d/reelwatch.conf

# Run a command, or only print it when staging into --destdir.
run() {
    if [ -n "$destdir" ]; then
        echo "skipped (--destdir): $*"
    else
        "$@"
    fi
}

require_root() {
    if [ "$mode" = system ] && [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
        echo "install.sh: system mode needs root; run it with sudo, or use --user" >&2
        exit 1
    fi
}

create_account() {
    install -D -m 0644 "$here/sysusers.d/reelwatch.conf" "$destdir$sysusers_file"
    if [ -n "$destdir" ]; then
        return
    fi
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers "$sysusers_file"
    elif ! id reelwatch >/dev/null 2>&1; then
        useradd --system --user-group --home-dir "$state_dir" --no-create-home \
            --shell /usr/sbin/nologin reelwatch
    fi
}

install_package() {
    if [ -n "$destdir" ]; then
        echo "skipped (--destdir): virtual environment in $prefix"
        return
    fi
    # Building the wheel compiles the Rust core, which needs cargo on PATH.
    python3 -m venv "$prefix"
    "$prefix/bin/pip" install --quiet --upgrade pip
    "$prefix/bin/pip" install --quiet "$repo"
    mkdir -p "$(dirname "$bin_link")"
    ln -sf "$prefix/bin/reelwatch" "$bin_link"
}

install_config() {
    target=$destdir$config_dir/reelwatch.toml
    if [ -e "$target" ]; then
        echo "kept existing $config_dir/reelwatch.toml"
        return
    fi
    if [ "$mode" = system ]; then
        install -D -m 0640 "$here/reelwatch.toml" "$target"
        run chgrp reelwatch "$target"
    else
        mkdir -p "$(dirname "$target")"
        # The system template names /srv/media; a user starts with ~/Videos.
        sed -e '1,3c\
# reelwatch configuration for the user service, installed by\
# "systemd/install.sh --user". config/reelwatch.toml in the source tree\
# lists every key.' \
            -e "s|^allowed_scan_roots = .*|allowed_scan_roots = [\"$HOME/Videos\"]|" \
            -e '/^# The unit sets state_dir/,/^$/d' \
            -e '/^# The folders to catalog/,/operations.md\.$/c\
# The folders to catalog.' \
            -e '/^\[socket\]/,$d' \
            "$here/reelwatch.toml" >"$target"
        chmod 0600 "$target"
    fi
    echo "installed $config_dir/reelwatch.toml: set allowed_scan_roots there"
}

install_sysctl() {
    wanted=$(sed -n 's/^fs.inotify.max_user_watches = //p' "$here/sysctl.d/60-reelwatch-inotify.conf")
    current=$(cat /proc/sys/fs/inotify/max_user_watches 2>/dev/null || echo 0)
    if [ "$current" -ge "$wanted" ]; then
        echo "kept fs.inotify.max_user_watches=$current (not lower than $wanted)"
        return
    fi
    install -D -m 0644 "$here/sysctl.d/60-reelwatch-inotify.conf" "$destdir$sysctl_file"
    run sysctl -q -p "$sysctl_file"
}

do_install() {
    require_root
    if [ "$mode" = system ]; then
        create_account
    fi
    install_package
    mkdir -p "$destdir$unit_dir"
    install -m 0644 "$units_from/reelwatch.service" "$units_from/reelwatch.socket" \
        "$destdir$unit_dir/"
    install_config
    if [ "$mode" = system ]; then
        install_sysctl
    fi
    run $systemctl daemon-reload

    cat <<EOF

Next steps:
  1. edit $config_dir/reelwatch.toml (allowed_scan_roots)
  2. $systemctl enable --now reelwatch.socket reelwatch.service
  3. $systemctl status reelwatch
EOF
    if [ "$mode" = user ]; then
        echo "  4. loginctl enable-linger $(id -un)   # keep it running after logout"
    else
        echo "Members of the reelwatch group may use the CLI: usermod -aG reelwatch NAME"
    fi
}

do_uninstall() {
    require_root
    run $systemctl disable --now reelwatch.service reelwatch.socket || true
    rm -f "$destdir$unit_dir/reelwatch.service" "$destdir$unit_dir/reelwatch.socket"
    run $systemctl daemon-reload
    rm -f "$destdir$bin_link"
    rm -rf "$destdir$prefix"
    if [ "$mode" = system ]; then
        rm -f "$destdir$sysctl_file"
    fi
    if [ "$purge" = yes ]; then
        rm -rf "$destdir$config_dir" "$destdir$state_dir"
        echo "removed $config_dir and $state_dir"
    else
        echo "kept $config_dir (configuration) and $state_dir (catalog); --purge removes them"
    fi
    if [ "$mode" = system ]; then
        echo "kept the reelwatch account; remove it with: userdel reelwatch" \
            "&& rm $sysusers_file"
    fi
}

if [ "$action" = install ]; then
    do_install
else
    do_uninstall
fi
