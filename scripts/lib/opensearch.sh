#!/usr/bin/env bash
# shellcheck shell=bash
# shellcheck disable=SC2034  # opensearch_PORTS / opensearch_TIMEOUT are read indirectly by scripts/stack
# OpenSearch 2.19 for the local stack, assembled from Maven Central (tools/opensearch-node): no
# OpenSearch distribution is installable here (not in Debian, not on npm; Maven Central has the server
# library and its Netty plugin, not the distribution tarball).
#
# Two ways to use it:
#   1. sourced by scripts/stack (after stack-common.sh), as a service NAME=opensearch with the usual
#      opensearch_start / opensearch_ready / opensearch_PORTS / opensearch_TIMEOUT;
#   2. run directly, for tests or by hand, with no scripts/stack around:
#        scripts/lib/opensearch.sh start DIR [PORT]   fetch jars (first run ~60 MB), start, wait ready;
#                                                     prints the URL; pid in DIR/opensearch.pid
#        scripts/lib/opensearch.sh stop DIR           stop the node started in DIR (by its pid file)
#
# Listens on 127.0.0.1 only. Needs Java 17+ and Maven.

OPENSEARCH_REPO=${OPENSEARCH_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
opensearch_PORTS=(9200)
opensearch_TIMEOUT=120

# opensearch_jars LIBDIR BUILDDIR: the launcher and its dependencies in LIBDIR, fetched when missing or
# when tools/opensearch-node changed.
opensearch_jars() {
	local lib=$1 build=$2 want
	want=$(cd "$OPENSEARCH_REPO" && find tools/opensearch-node -type f \( -name pom.xml -o -name '*.java' \) \
		-not -path '*/target/*' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
	[[ -f $lib/.inputs && "$(cat "$lib/.inputs")" == "$want" ]] && return 0
	rm -rf "$lib.new"
	mkdir -p "$build"
	if ! mvn -B -q -f "$OPENSEARCH_REPO/tools/opensearch-node/pom.xml" package -Dstack.lib="$lib.new" \
		-Dstack.build="$build" >"$build/maven.log" 2>&1; then
		tail -n 30 "$build/maven.log" >&2
		echo "opensearch: Maven build failed (full log: $build/maven.log)" >&2
		return 1
	fi
	rm -rf "$lib"
	mv "$lib.new" "$lib"
	printf '%s\n' "$want" >"$lib/.inputs"
}

# opensearch_cmd HOME PORT LIBDIR: the java command line of the node.
opensearch_cmd() {
	OPENSEARCH_CMD=("${JAVA:-java}" -Xms512m -Xmx512m -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError
		-Djava.awt.headless=true -Dlog4j2.disable.jmx=true -cp "$3/*"
		cdclogs.stack.OpenSearchNodeMain "$1" "$2" 127.0.0.1)
}

opensearch_http_ok() {
	curl -fsS -m 3 "http://127.0.0.1:$1/_cluster/health" 2>/dev/null | grep -q '"status":"\(green\|yellow\)"'
}

# --- as a scripts/stack service ---------------------------------------------------------------------
opensearch_start() {
	local dir=$STACK/opensearch
	mkdir -p "$dir/home"
	opensearch_jars "$STACK/lib-opensearch" "$STACK/build/opensearch" || fail_service opensearch "jar fetch failed"
	opensearch_cmd "$dir/home" "${opensearch_PORTS[0]}" "$STACK/lib-opensearch"
	launch opensearch "${OPENSEARCH_CMD[@]}"
}

opensearch_ready() { opensearch_http_ok "${opensearch_PORTS[0]}"; }

# --- standalone ---------------------------------------------------------------------------------------
opensearch_main() {
	local cmd=${1:-} dir=${2:-} port=${3:-9200} pid i
	[[ -n $cmd && -n $dir ]] || {
		echo "usage: $0 start|stop DIR [PORT]" >&2
		return 2
	}
	case $cmd in
	start)
		mkdir -p "$dir/home"
		dir=$(cd "$dir" && pwd)
		if [[ -f $dir/opensearch.pid ]] && kill -0 "$(cat "$dir/opensearch.pid")" 2>/dev/null; then
			echo "http://127.0.0.1:$(cat "$dir/opensearch.port")"
			return 0
		fi
		opensearch_jars "${OPENSEARCH_LIB:-$OPENSEARCH_REPO/.stack/lib-opensearch}" "$dir/build" || return 1
		opensearch_cmd "$dir/home" "$port" "${OPENSEARCH_LIB:-$OPENSEARCH_REPO/.stack/lib-opensearch}"
		setsid "${OPENSEARCH_CMD[@]}" </dev/null >"$dir/opensearch.log" 2>&1 &
		pid=$!
		printf '%s\n' "$pid" >"$dir/opensearch.pid"
		printf '%s\n' "$port" >"$dir/opensearch.port"
		for ((i = 0; i < opensearch_TIMEOUT * 2; i++)); do
			if opensearch_http_ok "$port"; then
				echo "http://127.0.0.1:$port"
				return 0
			fi
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		tail -n 30 "$dir/opensearch.log" >&2
		echo "opensearch: not ready on 127.0.0.1:$port (log: $dir/opensearch.log)" >&2
		return 1
		;;
	stop)
		[[ -f $dir/opensearch.pid ]] || return 0
		pid=$(cat "$dir/opensearch.pid")
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 60; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
		rm -f "$dir/opensearch.pid"
		;;
	*)
		echo "usage: $0 start|stop DIR [PORT]" >&2
		return 2
		;;
	esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -euo pipefail
	opensearch_main "$@"
fi
