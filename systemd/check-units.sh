#!/bin/sh
# Check the unit files in this directory without installing anything:
#   1. "systemd-analyze verify" must print nothing for every system and user
#      unit;
#   2. "systemd-analyze security --offline=yes" must rate every system service
#      at an overall exposure of MAX_EXPOSURE (default 1.0) or lower.
# It prints one "exposure UNIT SCORE" line per system service and exits with
# status 1 when a check fails, or 2 when systemd-analyze is missing.
#
# verify checks that the programs named in Exec*= lines exist. System units
# are verified inside a scratch root (--root=) holding a copy of the
# distribution's units, ours, and empty stand-ins for those programs. User
# units cannot use --root=, so they are verified with HOME pointing into the
# scratch root, where %h/.local/bin/reelwatch gets its stand-in; the other
# programs they name (/bin/kill, /bin/mkdir) must exist on the host.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
max_exposure=${MAX_EXPOSURE:-1.0}

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "check-units: systemd-analyze not found; install the systemd package" >&2
    exit 2
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/reelwatch-units.XXXXXX")
trap 'rm -rf "$root"' EXIT INT TERM
user_home=$root/home
mkdir -p "$root/usr/lib/systemd/system" "$root/etc/systemd/system" \
    "$user_home/.config/systemd/user" "$root/run-user"
if [ -d /usr/lib/systemd/system ]; then
    # The targets the system units refer to (multi-user.target, ...).
    cp -R /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
fi

system_units="reelwatch.service reelwatch.socket"
user_units="reelwatch.service reelwatch.socket"
for unit in $system_units; do cp "$here/$unit" "$root/etc/systemd/system/"; done
for unit in $user_units; do
    cp "$here/user/$unit" "$user_home/.config/systemd/user/"
done

# Print the program of each Exec*= line in the given files, without prefix
# characters such as "-" and "+".
exec_programs() {
    sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\([^ ]*\).*/\1/p' "$@" | sort -u
}

# Create an empty executable at each path read from stdin, unless one exists.
make_stand_ins() {
    while read -r program; do
        case $program in
        /*) ;;
        *)
            echo "check-units: Exec program $program is not an absolute path" >&2
            return 1
            ;;
        esac
        if [ ! -e "$program" ]; then
            mkdir -p "$(dirname "$program")"
            printf '#!/bin/sh\nexit 0\n' >"$program"
            chmod 755 "$program"
        fi
    done
}

exec_programs "$root"/etc/systemd/system/*.service | sed "s|^|$root|" |
    make_stand_ins
exec_programs "$user_home"/.config/systemd/user/*.service | grep '^%h/' |
    sed "s|^%h|$user_home|" | make_stand_ins

# A unit name that matches a file in the working directory is read from that
# file, so run where no such file exists.
cd "$root"

status=0

# verify exits 0 on some warnings, so any output counts as a failure.
# shellcheck disable=SC2086 # the unit lists are plain file names
output=$(systemd-analyze verify --root="$root" $system_units 2>&1) || status=1
if [ -n "$output" ]; then
    printf 'check-units: verify (system) reported:\n%s\n' "$output" >&2
    status=1
fi
# shellcheck disable=SC2086
output=$(env -u XDG_CONFIG_HOME HOME="$user_home" XDG_RUNTIME_DIR="$root/run-user" \
    systemd-analyze --user verify $user_units 2>&1) || status=1
if [ -n "$output" ]; then
    printf 'check-units: verify (user) reported:\n%s\n' "$output" >&2
    status=1
fi

for unit in $system_units; do
    case $unit in *.service) ;; *) continue ;; esac
    report=$(systemd-analyze security --offline=yes "$here/$unit" 2>&1) || true
    score=$(printf '%s\n' "$report" |
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    if [ -z "$score" ]; then
        printf 'check-units: no exposure level for %s:\n%s\n' "$unit" "$report" >&2
        status=1
        continue
    fi
    echo "exposure $unit $score"
    if awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s > m) }'; then
        echo "check-units: $unit has exposure $score, above $max_exposure" >&2
        printf '%s\n' "$report" | grep '✗' >&2 || true
        status=1
    fi
done

exit "$status"
