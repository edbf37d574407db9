#!/usr/bin/env bash
# Install the vodedge appliance (or, with --origin, the origin) as systemd services on a Debian
# box (or into a directory tree).
#
#   sudo systemd/install.sh --bin /opt/vodedge/bin/vodedge-appliance --disk /srv/vodedge/disk0
#   sudo systemd/install.sh --origin --bin /opt/vodedge/bin/vodedge-origin
#
# Safe to run again: the units, sysusers.d, tmpfiles.d and sysctl files are rewritten, but an
# existing /etc/vodedge/appliance.toml or origin.toml is never touched. Run with --help for the
# options.
set -euo pipefail
# Command substitutions fail the script too (bash clears -e inside them otherwise).
shopt -s inherit_errexit

usage() {
    cat <<'EOF'
Usage: install.sh [--root DIR] [--bin PATH] [--disk PATH]... [--no-enable]
       install.sh --origin [--root DIR] [--bin PATH] [--workers N] [--no-enable | --no-start]

  --root DIR    install into the tree DIR instead of / (image building, tests): files are
                written under DIR and nothing is run against this host (no user creation,
                sysctl, systemctl); what would run is printed instead
  --bin PATH    the vodedge-appliance (--origin: vodedge-origin) executable for ExecStart=
                (default: the one on PATH; under --root, its path inside DIR)
  --disk PATH   a cache disk mount point (repeatable): created owned by vodedge and made
                writable for the service; a new config gets one [[storage.disks]] per --disk
                (75% of its file system, require_mount = true)
  --no-enable   do not enable the service(s)
  --help        this text

  --origin      install the origin instead: the user vodedge-origin, vodedge-origin.service,
                vodedge-origin-worker@.service, /etc/vodedge/origin.toml (only when absent,
                with a random API token), its directories; enables and starts vodedge-origin
                and one worker per CPU (vodedge-origin-worker@0 ... @N-1)
  --workers N   origin worker instances (default: the CPUs of this machine, nproc)
  --no-start    enable the origin's units but do not start them
EOF
}

die() {
    echo "install.sh: error: $*" >&2
    exit 1
}
say() { echo "vodedge install: $*"; }
warn() { echo "vodedge install: warning: $*" >&2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(dirname "$HERE")
UNIT_NAME=vodedge-appliance.service
DEFAULT_BIN=/opt/vodedge/bin/vodedge-appliance
DEFAULT_ORIGIN_BIN=/opt/vodedge/bin/vodedge-origin
USER_NAME=vodedge

ROOT=/
BIN=""
ENABLE=1
DISKS=()
ORIGIN=0
WORKERS=""
START=1
while (($#)); do
    case $1 in
    --root)
        ROOT=${2:?--root needs a directory}
        shift 2
        ;;
    --bin)
        BIN=${2:?--bin needs a path}
        shift 2
        ;;
    --disk)
        DISKS+=("${2:?--disk needs a path}")
        shift 2
        ;;
    --no-enable)
        ENABLE=0
        shift
        ;;
    --origin)
        ORIGIN=1
        shift
        ;;
    --workers)
        WORKERS=${2:?--workers needs a number}
        shift 2
        ;;
    --no-start)
        START=0
        shift
        ;;
    --help | -h)
        usage
        exit 0
        ;;
    *)
        usage >&2
        die "unknown argument: $1"
        ;;
    esac
done

# A disk path goes into TOML strings and ReadWritePaths=: keep it to plain characters.
check_disk_path() {
    [[ $1 =~ ^/[A-Za-z0-9._/@+-]+$ ]] ||
        die "cache disk $1: an absolute path of [A-Za-z0-9._/@+-] is needed"
}
for d in "${DISKS[@]}"; do check_disk_path "$d"; done

if ((ORIGIN)); then
    EXE_NAME=vodedge-origin
    ((${#DISKS[@]} == 0)) || die "--disk is for the appliance, not with --origin"
    if [[ -n $WORKERS ]]; then
        [[ $WORKERS =~ ^[1-9][0-9]{0,3}$ ]] || die "--workers $WORKERS: a number from 1 is needed"
    fi
else
    EXE_NAME=vodedge-appliance
    [[ -z $WORKERS ]] || die "--workers is for the origin: add --origin"
    ((START)) || die "--no-start is for the origin (the appliance is never started): add --origin"
fi

umask 022
[[ -d $ROOT ]] || die "--root $ROOT: not a directory"
ROOT=$(cd "$ROOT" && pwd)
# P prefixes every path written: "" on the host, DIR under --root.
if [[ $ROOT == / ]]; then
    P=""
    ON_HOST=1
    ((EUID == 0)) || die "installing into / needs root (or use --root DIR)"
else
    P=$ROOT
    ON_HOST=0
fi

# Runs a command on the host, or (under --root) only prints it.
host_run() {
    if ((ON_HOST)); then
        say "running: $*"
        "$@"
    else
        say "would run on the target: $*"
    fi
}

# Writes stdin to FILE with MODE, atomically; says whether it changed.
put_file() {
    local file=$1 mode=$2 tmp
    mkdir -p "$(dirname "$file")"
    tmp=$(mktemp "$file.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if [[ -f $file ]] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        chmod "$mode" "$file"
        say "unchanged ${file#"$P"}"
    else
        mv -f "$tmp" "$file"
        say "wrote ${file#"$P"}"
    fi
}

# --- the executable ------------------------------------------------------------------------
if [[ -z $BIN ]]; then
    BIN=$(command -v "$EXE_NAME") || die "$EXE_NAME is not on PATH: pass --bin"
fi
[[ $BIN == /* ]] || BIN=$(realpath -s -- "$BIN")
[[ $BIN != *[[:space:]]* ]] || die "--bin $BIN: a path with white space cannot go in ExecStart="
case $BIN in
/home/* | /root/* | /run/user/*)
    warn "$BIN is hidden from the service by ProtectHome=yes; install it elsewhere (e.g. /opt)"
    ;;
*) ;;
esac
# The executable to run check-config with: the path itself, or its copy inside --root.
CHECK_BIN=""
for candidate in "$BIN" "$P$BIN"; do
    if [[ -f $candidate && -x $candidate ]]; then
        CHECK_BIN=$candidate
        break
    fi
done
if [[ -z $CHECK_BIN ]]; then
    ((ON_HOST)) && die "--bin $BIN: not an executable file"
    warn "$BIN does not exist here: the config will not be checked"
fi

random_token() {
    # 32 random bytes as unpadded base64url: 43 characters, safe in TOML and HTTP headers.
    head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '='
}

# --- the origin (--origin) ---------------------------------------------------------------------
# The user, /etc/vodedge/origin.toml (only when absent), the directories of that config, the two
# units with a drop-in for directories outside the state directory, enabling (and starting)
# vodedge-origin and one worker per CPU, and check-config.
origin_install() {
    local user=vodedge-origin state=/var/lib/vodedge-origin
    local conf=$P/etc/vodedge/origin.toml unit_dir=$P/etc/systemd/system
    local units=(vodedge-origin.service vodedge-origin-worker@.service)
    local token tmp unit line d n workers out
    local dirs=() extra=() instances=() stale=()

    # The worker's ExecStart= holds the path in a shell string: plain characters only.
    [[ $BIN =~ ^/[A-Za-z0-9._/@+-]+$ ]] ||
        die "--bin $BIN: an absolute path of [A-Za-z0-9._/@+-] is needed"

    # the user (systemd-sysusers creates it on the host now, or on the target at boot)
    put_file "$P/usr/lib/sysusers.d/vodedge-origin.conf" 0644 <<EOF
# vodedge origin: serve and encode workers (written by vodedge systemd/install.sh --origin)
u $user - "vodedge origin" $state
EOF
    host_run systemd-sysusers /usr/lib/sysusers.d/vodedge-origin.conf

    # the config: written only when absent, with a random API token in place of "tokens = []"
    if [[ ! -d $P/etc/vodedge ]]; then
        mkdir -p "$P/etc/vodedge"
        chmod 0755 "$P/etc/vodedge"
    fi
    if [[ -e $conf ]]; then
        say "kept existing /etc/vodedge/origin.toml (never overwritten)"
    else
        token=$(random_token)
        ((${#token} >= 40)) || die "could not read random bytes for the API token"
        tmp=$(mktemp "$conf.XXXXXX")
        trap 'rm -f "$tmp"' EXIT
        awk -v token="$token" '
            /^[ \t]*\[/ { sect = $0; gsub(/[][ \t]/, "", sect) }
            sect == "api" && /^[ \t]*tokens[ \t]*=[ \t]*\[[ \t]*\][ \t]*(#.*)?$/ && !done {
                print "tokens = [\"" token "\"]"
                done = 1
                next
            }
            { print }
            END { if (!done) exit 3 }
        ' "$SRC/firmware-config/origin.toml" >"$tmp" ||
            die "firmware-config/origin.toml has no [api] line tokens = [] to put the token in"
        chmod 0640 "$tmp"
        mv "$tmp" "$conf"
        trap - EXIT
        say "wrote /etc/vodedge/origin.toml with a new random API token (api.tokens)"
    fi
    # Reaching the config: an appliance on the same box makes /etc/vodedge 0750 root:vodedge.
    [[ $(stat -c %A "$P/etc/vodedge") == *x ]] ||
        warn "/etc/vodedge is closed to other users: $user cannot read origin.toml there"

    # the directories the config names: created owned by the user (here by tmpfiles; the units'
    # StateDirectory= covers those under /var/lib/vodedge-origin again at every start)
    mapfile -t dirs < <(
        awk '
            /^[ \t]*\[/ { sect = $0; gsub(/[][ \t]/, "", sect); next }
            /^[ \t]*[a-z_]+[ \t]*=/ {
                key = $0
                sub(/^[ \t]*/, "", key)
                sub(/[ \t]*=.*$/, "", key)
                want = (sect == "media" && (key == "root" || key == "sources")) ||
                    (sect == "api" && key == "upload_dir") ||
                    (sect == "pipeline" && key == "work_dir") || (sect == "catalog" && key == "path")
                if (!want) next
                v = $0
                sub(/^[^=]*=[ \t]*/, "", v)
                q = substr(v, 1, 1)
                v = substr(v, 2)
                v = substr(v, 1, index(v, q) - 1)
                if (sect == "catalog") sub(/\/[^\/]*$/, "", v)
                print v
            }
        ' "$conf" | awk 'NF && !seen[$0]++'
    )
    for d in "${dirs[@]}"; do
        [[ $d =~ ^/[A-Za-z0-9._/@+-]+$ ]] ||
            die "origin.toml names the directory $d: an absolute path of [A-Za-z0-9._/@+-] is needed"
        [[ $d == "$state" || $d == "$state"/* ]] || extra+=("$d")
    done
    for d in "$state" "${dirs[@]}"; do
        if [[ ! -d $P$d ]]; then
            mkdir -p "$P$d"
            say "created $d"
        fi
        chmod 0750 "$P$d"
    done
    {
        echo "# vodedge origin (written by vodedge systemd/install.sh --origin): its config and"
        echo "# the directories of /etc/vodedge/origin.toml; rerun it after changing them."
        echo "# Type Path Mode User Group Age"
        echo "z /etc/vodedge/origin.toml 0640 root $user -"
        for d in "$state" "${dirs[@]}"; do
            echo "d $d 0750 $user $user -"
        done
    } | put_file "$P/usr/lib/tmpfiles.d/vodedge-origin.conf" 0644
    host_run systemd-tmpfiles --create /usr/lib/tmpfiles.d/vodedge-origin.conf

    # the units, ExecStart= running --bin, and a drop-in opening the config's other directories
    for unit in "${units[@]}"; do
        while IFS= read -r line || [[ -n $line ]]; do
            [[ $line == ExecStart=* ]] && line=${line/"$DEFAULT_ORIGIN_BIN"/"$BIN"}
            printf '%s\n' "$line"
        done <"$HERE/$unit" | put_file "$unit_dir/$unit" 0644
        grep -qF -e "$BIN serve -c /etc/vodedge/origin.toml" \
            -e "exec $BIN worker -c /etc/vodedge/origin.toml" "$unit_dir/$unit" ||
            die "ExecStart= in $unit was not rewritten to $BIN"
        {
            echo "# Directories of /etc/vodedge/origin.toml outside $state (written by"
            echo "# vodedge systemd/install.sh --origin; rerun it after changing them)."
            echo "[Service]"
            for d in "${extra[@]}"; do
                echo "ReadWritePaths=-$d"
            done
        } | put_file "$unit_dir/$unit.d/10-paths.conf" 0644
    done

    if ((ON_HOST)) && [[ -d /run/systemd/system ]]; then
        host_run systemctl daemon-reload
    fi

    # check the config before anything starts
    if [[ -n $CHECK_BIN ]]; then
        if out=$("$CHECK_BIN" check-config -c "$conf" 2>&1); then
            say "config check passed: $out"
        else
            echo "$out" >&2
            die "$CHECK_BIN check-config -c $conf failed: fix the config before starting the units"
        fi
    fi

    # one worker per CPU; instances from an earlier run with more workers are disabled
    workers=${WORKERS:-$(nproc)}
    if ((ON_HOST && workers > $(nproc))); then
        warn "--workers $workers: this machine has $(nproc) CPUs; a worker on a CPU that does" \
            "not exist fails to start (CPUAffinity=)"
    fi
    for ((n = 0; n < workers; n++)); do instances+=("vodedge-origin-worker@$n.service"); done
    for line in "$unit_dir"/multi-user.target.wants/vodedge-origin-worker@*.service; do
        [[ -e $line || -L $line ]] || continue
        n=${line##*@}
        n=${n%.service}
        if [[ $n =~ ^[0-9]+$ ]] && ((n >= workers)); then stale+=("vodedge-origin-worker@$n.service"); fi
    done
    # Starting and stopping need a running systemd (on the host; a --root target boots with one).
    local systemd_up=1
    if ((ON_HOST)) && [[ ! -d /run/systemd/system ]]; then systemd_up=0; fi
    if ((${#stale[@]} && systemd_up)); then
        host_run systemctl disable --now "${stale[@]}"
    elif ((${#stale[@]})); then
        host_run systemctl disable "${stale[@]}"
    fi
    if ! ((ENABLE)); then
        say "not enabling vodedge-origin.service and $workers workers (--no-enable)"
    elif ((START && systemd_up)); then
        host_run systemctl enable --now vodedge-origin.service "${instances[@]}"
    else
        host_run systemctl enable vodedge-origin.service "${instances[@]}"
        if ((START)); then
            warn "systemd is not running here: the units start at the next boot"
        else
            say "not starting them (--no-start)"
        fi
    fi

    say "done: vodedge-origin and $workers workers. Next: in /etc/vodedge/origin.toml set"
    say "[server] listen and webhook.url; api.tokens holds the creators' token (add more there)."
    say "Then: systemctl restart vodedge-origin 'vodedge-origin-worker@*' && journalctl -fu vodedge-origin"
}

if ((ORIGIN)); then
    origin_install
    exit 0
fi

# --- the user (systemd-sysusers creates it on the host now, or on the target at boot) -------
put_file "$P/usr/lib/sysusers.d/vodedge.conf" 0644 <<EOF
# vodedge appliance daemon (written by vodedge systemd/install.sh)
u $USER_NAME - "vodedge edge cache appliance" /var/lib/vodedge
EOF
host_run systemd-sysusers /usr/lib/sysusers.d/vodedge.conf

# --- the config: written only when absent --------------------------------------------------
CONF=$P/etc/vodedge/appliance.toml
# Group ownership (root:vodedge) is set by systemd-tmpfiles below, on the host and at boot.
mkdir -p "$P/etc/vodedge"
chmod 0750 "$P/etc/vodedge"

# "MOUNTPOINT SIZE" of the file system that holds (or will hold) PATH.
disk_fs() {
    local dir=$1
    while [[ ! -e $dir ]]; do dir=$(dirname "$dir"); done
    df -B1 --output=target,size "$dir" | tail -n 1
}

# A cache disk's byte budget: 75% of its file system (the LMDB map may grow to 1.25x the budget,
# see appliance/store.py), shared equally by the disks on the same file system; whole GB (or MB
# when small).
disk_size() {
    local bytes=$1 share=$2
    bytes=$((bytes * 3 / 4 / share))
    if ((bytes >= 10 ** 9)); then
        echo "$((bytes / 10 ** 9))GB"
    else
        echo "$((bytes / 10 ** 6))MB"
    fi
}

# The firmware config with: the admin token $1, systemd's run/state folders and, when disks
# were given, one [[storage.disks]] per disk (replacing the example disk), each with
# require_mount = true.
render_config() {
    local blocks="" fs=() i j share
    for i in "${!DISKS[@]}"; do fs[i]=$(disk_fs "$P${DISKS[i]}"); done
    for i in "${!DISKS[@]}"; do
        share=0
        for j in "${!fs[@]}"; do
            if [[ ${fs[j]} == "${fs[i]}" ]]; then share=$((share + 1)); fi
        done
        blocks+=$'[[storage.disks]]\n'"path = \"${DISKS[i]}\""$'\n'
        blocks+="size = \"$(disk_size "${fs[i]##* }" "$share")\""$'\n'
        # --disk names a mount point: never fill the root file system when it is not mounted
        blocks+=$'require_mount = true\n\n'
    done
    VODEDGE_DISK_BLOCKS=$blocks awk -v token="$1" '
        BEGIN { disks = ENVIRON["VODEDGE_DISK_BLOCKS"] }
        function header(line) {
            sub(/^[ \t]*\[+[ \t]*/, "", line)
            sub(/[ \t]*\].*$/, "", line)
            return line
        }
        function finish_runtime() {
            if (sect != "runtime" || runtime_done) return
            if (!run_dir) print "run_dir = \"/run/vodedge\""
            if (!state_dir) print "state_dir = \"/var/lib/vodedge\""
            runtime_done = 1
        }
        /^[ \t]*\[/ {
            finish_runtime()
            sect = header($0)
            in_disks = (sect == "storage.disks" && disks != "")
            if (in_disks) {
                if (!disks_done) printf "%s", disks
                disks_done = 1
                next
            }
            print
            next
        }
        # The example disk blocks go; their comments stay.
        in_disks && !/^[ \t]*#/ { next }
        sect == "admin" && /^[ \t]*token[ \t]*=/ {
            print "token = \"" token "\""
            token_done = 1
            next
        }
        sect == "runtime" && /^[ \t]*run_dir[ \t]*=/ {
            print "run_dir = \"/run/vodedge\""
            run_dir = 1
            next
        }
        sect == "runtime" && /^[ \t]*state_dir[ \t]*=/ {
            print "state_dir = \"/var/lib/vodedge\""
            state_dir = 1
            next
        }
        { print }
        END {
            if (!runtime_done && sect != "runtime") {
                print ""
                print "[runtime]"
                sect = "runtime"
            }
            finish_runtime()
            if (!token_done) exit 3
        }
    ' "$SRC/firmware-config/appliance.toml"
}

if [[ -e $CONF ]]; then
    say "kept existing /etc/vodedge/appliance.toml (never overwritten)"
    ((${#DISKS[@]} == 0)) ||
        warn "--disk does not change an existing config: edit [[storage.disks]] there"
else
    token=$(random_token)
    ((${#token} >= 40)) || die "could not read random bytes for the admin token"
    tmp=$(mktemp "$CONF.XXXXXX")
    trap 'rm -f "$tmp"' EXIT
    render_config "$token" >"$tmp"
    chmod 0640 "$tmp"
    mv "$tmp" "$CONF"
    trap - EXIT
    say "wrote /etc/vodedge/appliance.toml with a new random admin token; set fill.origins there"
fi

# --- cache disks: the config's plus any --disk -----------------------------------------------
config_disks() {
    awk '
        /^[ \t]*\[/ { in_disks = ($0 ~ /^[ \t]*\[\[[ \t]*storage\.disks[ \t]*\]\]/); next }
        # path = "..." or path = '...' (the quoted text, whatever follows it)
        in_disks && /^[ \t]*path[ \t]*=/ {
            v = $0
            sub(/^[^=]*=[ \t]*/, "", v)
            q = substr(v, 1, 1)
            v = substr(v, 2)
            v = substr(v, 1, index(v, q) - 1)
            if (v !~ /^\//) v = "/etc/vodedge/" v
            print v
        }
    ' "$CONF"
}
CONFIG_DISKS=$(config_disks)
mapfile -t ALL_DISKS < <(printf '%s\n' "$CONFIG_DISKS" "${DISKS[@]}" | awk 'NF && !seen[$0]++')

for d in "${ALL_DISKS[@]}"; do
    check_disk_path "$d"
    if [[ ! -d $P$d ]]; then
        mkdir -p "$P$d"
        say "created cache disk folder $d"
    fi
    # Owner vodedge: set by systemd-tmpfiles below, on the host and at boot.
    chmod 0750 "$P$d"
    if ((ON_HOST)) && ! mountpoint -q "$d"; then
        warn "$d is not a mount point: with require_mount = true the daemon reports it" \
            "failed until a disk is mounted there; without it the cache fills the root file system"
    fi
done

# --- ownership kept by systemd-tmpfiles at every boot (and now, on the host) ----------------
{
    echo "# vodedge appliance (written by vodedge systemd/install.sh): config and cache disks."
    echo "# Type Path Mode User Group Age"
    echo "d /etc/vodedge 0750 root $USER_NAME -"
    echo "z /etc/vodedge/appliance.toml 0640 root $USER_NAME -"
    for d in "${ALL_DISKS[@]}"; do
        echo "d $d 0750 $USER_NAME $USER_NAME -"
    done
} | put_file "$P/usr/lib/tmpfiles.d/vodedge.conf" 0644
host_run systemd-tmpfiles --create /usr/lib/tmpfiles.d/vodedge.conf

# --- the unit and its disks drop-in ----------------------------------------------------------
UNIT_DIR=$P/etc/systemd/system
while IFS= read -r line || [[ -n $line ]]; do
    [[ $line == ExecStart=* ]] && line=${line/"$DEFAULT_BIN"/"$BIN"}
    printf '%s\n' "$line"
done <"$HERE/$UNIT_NAME" | put_file "$UNIT_DIR/$UNIT_NAME" 0644
grep -qxF "ExecStart=$BIN serve -c /etc/vodedge/appliance.toml" "$UNIT_DIR/$UNIT_NAME" ||
    die "ExecStart= in $UNIT_NAME was not rewritten to $BIN"

{
    echo "# Cache disks the daemon may write (written by vodedge systemd/install.sh from the"
    echo "# config's [[storage.disks]] and --disk; rerun it after adding a disk)."
    echo "[Service]"
    for d in "${ALL_DISKS[@]}"; do
        echo "ReadWritePaths=-$d"
    done
} | put_file "$UNIT_DIR/$UNIT_NAME.d/10-disks.conf" 0644

# --- kernel settings -------------------------------------------------------------------------
put_file "$P/etc/sysctl.d/90-vodedge-appliance.conf" 0644 \
    <"$SRC/firmware-config/sysctl.d/90-vodedge-appliance.conf"
if ((ON_HOST)); then
    say "running: sysctl --system"
    sysctl --system >/dev/null ||
        warn "sysctl --system reported errors (a container?): run it to see which"
else
    say "would run on the target: sysctl --system (systemd-sysctl does it at boot)"
fi

# --- systemd -----------------------------------------------------------------------------------
if ((ON_HOST)) && [[ -d /run/systemd/system ]]; then
    host_run systemctl daemon-reload
fi
if ((ENABLE)); then
    host_run systemctl enable "$UNIT_NAME"
else
    say "not enabling $UNIT_NAME (--no-enable)"
fi

# --- check the config ------------------------------------------------------------------------
if [[ -n $CHECK_BIN ]]; then
    if out=$("$CHECK_BIN" check-config -c "$CONF" 2>&1); then
        say "config check passed: $out"
    else
        echo "$out" >&2
        die "$CHECK_BIN check-config -c ${CONF} failed: fix the config before starting the service"
    fi
fi

say "done. Next: edit /etc/vodedge/appliance.toml (fill.origins, [server] listen, disk sizes),"
say "then: systemctl start vodedge-appliance && journalctl -fu vodedge-appliance"
