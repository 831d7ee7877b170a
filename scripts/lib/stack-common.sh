# shellcheck shell=bash
# shellcheck disable=SC2016  # single quotes on purpose: `bash -c` bodies and backticks in messages
# Helpers shared by scripts/stack: logging, pid files, port probes, readiness waits, package install.
#
# Sourced (never executed) by scripts/stack after it has set:
#   REPO   the repository root            STACK  $REPO/.stack (data, logs, pid files)
#   RUN    $STACK/run (pid files)         LOGS   $STACK/logs (one log per service)
#
# Pid files hold "<pid> <start time>" where the start time is field 22 of /proc/<pid>/stat. A pid is
# treated as ours only while both match, so a recycled pid is never signalled by `down`.

# --- output -----------------------------------------------------------------------------------------

log() { printf '[stack] %s\n' "$*" >&2; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die() {
	printf '[stack] ERROR: %s\n' "$*" >&2
	exit 1
}

# fail_service NAME MESSAGE: report a service that did not come up, with the tail of its log, and exit 1.
fail_service() {
	local name=$1 msg=$2 logfile="$LOGS/$1.log"
	printf '[stack] ERROR: service %s failed: %s\n' "$name" "$msg" >&2
	if [[ -s $logfile ]]; then
		printf '[stack] last lines of %s:\n' "$logfile" >&2
		tail -n "${STACK_LOG_TAIL:-40}" "$logfile" | sed 's/^/    /' >&2
	else
		printf '[stack] (no log output in %s)\n' "$logfile" >&2
	fi
	exit 1
}

# --- processes and pid files --------------------------------------------------------------------------

# proc_starttime PID: the kernel's start time of a process (clock ticks since boot), empty if gone.
proc_starttime() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	# Field 2 (comm) may contain spaces; everything after the last ')' starts at field 3.
	stat=${stat##*) }
	# shellcheck disable=SC2086
	set -- $stat
	printf '%s' "${20}"
}

# record_pid NAME PID: remember that we started PID for service NAME.
record_pid() {
	local st
	st=$(proc_starttime "$2")
	[[ -n $st ]] || return 1
	printf '%s %s\n' "$2" "$st" >"$RUN/$1.pid"
}

# our_pid NAME: print the pid of service NAME if the process we started is still alive; else fail.
our_pid() {
	local file="$RUN/$1.pid" pid st
	[[ -f $file ]] || return 1
	read -r pid st <"$file" || return 1
	[[ -n $pid && -n $st ]] || return 1
	[[ "$(proc_starttime "$pid")" == "$st" ]] || return 1
	# A zombie (exited, not yet reaped) is not alive.
	[[ "$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" != Z ]] || return 1
	printf '%s' "$pid"
}

# launch NAME CMD...: start CMD in its own session, detached from our terminal and stdin, output to the
# service log (the previous log is kept as NAME.log.prev), and record its pid.
launch() {
	local name=$1 logfile="$LOGS/$1.log"
	shift
	[[ -f $logfile ]] && mv -f "$logfile" "$logfile.prev"
	printf '=== %s: %s\n' "$(date -Is)" "$*" >"$logfile"
	# setsid: a new session, so a terminal hang-up or a kill of the caller's process group spares the
	# service. A background child of a non-interactive shell is not a group leader, so setsid does not
	# fork and $! is the service's own pid (env and setpriv exec too).
	setsid "$@" </dev/null >>"$logfile" 2>&1 &
	local pid=$!
	record_pid "$name" "$pid" || fail_service "$name" "exited immediately"
}

# stop_service NAME [SIGNAL] [TIMEOUT]: stop the process we started for NAME (by pid file), waiting up to
# TIMEOUT seconds before SIGKILL. Processes we did not start are never touched.
stop_service() {
	local name=$1 sig=${2:-TERM} timeout=${3:-30} pid i
	if ! pid=$(our_pid "$name"); then
		rm -f "$RUN/$name.pid"
		return 0
	fi
	log "stopping $name (pid $pid, SIG$sig)"
	kill "-$sig" "$pid" 2>/dev/null || true
	for ((i = 0; i < timeout * 10; i++)); do
		our_pid "$name" >/dev/null || break
		sleep 0.1
	done
	if our_pid "$name" >/dev/null; then
		warn "$name (pid $pid) still running after ${timeout}s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.5
	fi
	rm -f "$RUN/$name.pid"
}

# --- ports ---------------------------------------------------------------------------------------------

# port_open HOST PORT: true when something accepts TCP connections there (2 s timeout).
port_open() {
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# port_holder PORT: describe the process listening on PORT ("pid 123: /usr/bin/foo ..."), if any.
port_holder() {
	local line pid
	command -v ss >/dev/null || return 0
	line=$(ss -Hltnp "sport = :$1" 2>/dev/null | head -n 1)
	[[ -n $line ]] || return 0
	pid=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$line")
	if [[ -n $pid ]]; then
		printf 'pid %s: %s' "$pid" "$(tr '\0\n' '  ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-160)"
	else
		printf '%s' "$line"
	fi
}

# port_bound PORT: true when any process listens on PORT (any address).
port_bound() {
	if command -v ss >/dev/null; then
		[[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]
	else
		port_open 127.0.0.1 "$1"
	fi
}

# ensure_ports_free NAME PORT...: fail clearly when a process we did not start holds one of the ports.
ensure_ports_free() {
	local name=$1 port holder
	shift
	for port in "$@"; do
		if port_bound "$port"; then
			holder=$(port_holder "$port")
			printf '[stack] ERROR: service %s cannot start: port %s is already in use by a process scripts/stack did not start (%s).\n' \
				"$name" "$port" "${holder:-unknown process}" >&2
			printf '[stack] A distribution-started server (e.g. Debian'"'"'s own %s service) or another copy of the stack may hold it;\n' "$name" >&2
			printf '[stack] stop it first (for Debian services: `service <name> stop`, `pg_ctlcluster 15 main stop`, or kill that pid).\n' >&2
			exit 1
		fi
	done
}

# --- readiness -----------------------------------------------------------------------------------------

# wait_ready NAME TIMEOUT CHECK...: poll CHECK (a command) until it succeeds. Fails the service when its
# process dies or TIMEOUT seconds pass.
wait_ready() {
	local name=$1 timeout=$2 start=$SECONDS
	shift 2
	while ! "$@" >/dev/null 2>&1; do
		if ! our_pid "$name" >/dev/null; then
			fail_service "$name" "the process exited during start-up"
		fi
		if ((SECONDS - start >= timeout)); then
			fail_service "$name" "not ready after ${timeout}s (check: $*)"
		fi
		sleep 0.5
	done
}

# --- packages ------------------------------------------------------------------------------------------

# ensure_apt_packages PKG...: install the Debian packages that are missing, with one `apt-get update`.
# Package installation must not start the distribution's own daemons (they would take our ports), so
# when no policy-rc.d exists we add a temporary one that forbids service starts during the install.
ensure_apt_packages() {
	local missing=() pkg status sudo=()
	for pkg in "$@"; do
		status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
		[[ $status == "install ok installed" ]] || missing+=("$pkg")
	done
	((${#missing[@]})) || return 0
	if ((EUID != 0)); then
		command -v sudo >/dev/null || die "missing Debian packages (${missing[*]}) and not root: install them or run as root"
		sudo=(sudo)
	fi
	log "installing Debian packages: ${missing[*]}"
	local policy=/usr/sbin/policy-rc.d added_policy=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\n# temporary, added by scripts/stack during apt-get install\nexit 101\n' |
			"${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 755 "$policy"
		added_policy=1
	fi
	local rc=0
	{
		"${sudo[@]}" apt-get update -qq &&
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
	} >"$LOGS/apt.log" 2>&1 || rc=$?
	((added_policy)) && "${sudo[@]}" rm -f "$policy"
	if ((rc != 0)); then
		tail -n 30 "$LOGS/apt.log" | sed 's/^/    /' >&2
		die "apt-get install failed (full log: $LOGS/apt.log)"
	fi
}
