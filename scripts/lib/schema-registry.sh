#!/usr/bin/env bash
# shellcheck shell=bash
# shellcheck disable=SC2034  # registry_PORTS / registry_TIMEOUT are read indirectly by scripts/stack
# A schema registry with the Confluent REST API for the local stack: Apicurio Registry 2.4.2 with
# in-memory storage, assembled from Maven Central (tools/schema-registry/pom.xml says how and why).
# Its Confluent-compatible API: http://127.0.0.1:PORT/apis/ccompat/v7 (what the Kafka sink's
# schema_registry_url takes). Nothing is persisted: a restart forgets every schema.
#
# Two ways to use it:
#   1. sourced by scripts/stack (after stack-common.sh), as the optional service NAME=registry with the
#      usual registry_start / registry_ready / registry_PORTS / registry_TIMEOUT
#      (`scripts/stack up registry`; a plain `scripts/stack up` leaves it out);
#   2. run directly, for tests or by hand, with no scripts/stack around:
#        scripts/lib/schema-registry.sh start DIR [PORT]   build (first run ~150 MB, ~1 min), start,
#                                                          wait ready; prints the ccompat URL;
#                                                          pid in DIR/registry.pid
#        scripts/lib/schema-registry.sh stop DIR           stop the registry started in DIR
#
# Listens on 127.0.0.1 only. Needs Java 17+ and Maven.

REGISTRY_REPO=${REGISTRY_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
registry_PORTS=(8081)
registry_TIMEOUT=120

# registry_jars LIBDIR BUILDDIR: the runner jar and its lib/ in LIBDIR, built when missing or when
# tools/schema-registry changed.
registry_jars() {
	local lib=$1 build=$2 want
	want=$(cd "$REGISTRY_REPO" && find tools/schema-registry -type f -not -path '*/target/*' | LC_ALL=C sort |
		xargs sha256sum | sha256sum | cut -c1-16)
	[[ -f $lib/.inputs && "$(cat "$lib/.inputs")" == "$want" ]] && return 0
	rm -rf "$lib.new" "$build"
	mkdir -p "$build"
	if ! mvn -B -q -f "$REGISTRY_REPO/tools/schema-registry/pom.xml" package -Dstack.build="$build/target" \
		>"$build/maven.log" 2>&1; then
		tail -n 30 "$build/maven.log" >&2
		echo "schema registry: Maven build failed (full log: $build/maven.log)" >&2
		return 1
	fi
	mkdir -p "$lib.new"
	mv "$build/target/schema-registry-0.1.0-runner.jar" "$build/target/lib" "$lib.new/"
	rm -rf "$lib"
	mv "$lib.new" "$lib"
	printf '%s\n' "$want" >"$lib/.inputs"
}

# registry_cmd PORT LIBDIR: the command line (run with HTTP_PORT and the storage settings in its env).
registry_cmd() {
	REGISTRY_CMD=(env "HTTP_PORT=$1" "QUARKUS_HTTP_HOST=127.0.0.1" "${JAVA:-java}" -Xms64m -Xmx512m
		-XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -jar "$2/schema-registry-0.1.0-runner.jar")
}

registry_http_ok() {
	curl -fsS -m 3 "http://127.0.0.1:$1/apis/ccompat/v7/subjects" >/dev/null 2>&1
}

# --- as a scripts/stack service ---------------------------------------------------------------------
registry_start() {
	registry_jars "$STACK/lib-registry" "$STACK/build/registry" || fail_service registry "build failed"
	registry_cmd "${registry_PORTS[0]}" "$STACK/lib-registry"
	launch registry "${REGISTRY_CMD[@]}"
}

registry_ready() { registry_http_ok "${registry_PORTS[0]}"; }

# --- standalone ---------------------------------------------------------------------------------------
registry_main() {
	local cmd=${1:-} dir=${2:-} port=${3:-8081} pid i
	[[ -n $cmd && -n $dir ]] || {
		echo "usage: $0 start|stop DIR [PORT]" >&2
		return 2
	}
	case $cmd in
	start)
		mkdir -p "$dir"
		dir=$(cd "$dir" && pwd)
		if [[ -f $dir/registry.pid ]] && kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; then
			echo "http://127.0.0.1:$(cat "$dir/registry.port")/apis/ccompat/v7"
			return 0
		fi
		local lib=${REGISTRY_LIB:-$REGISTRY_REPO/.stack/lib-registry}
		registry_jars "$lib" "$dir/build" || return 1
		registry_cmd "$port" "$lib"
		setsid "${REGISTRY_CMD[@]}" </dev/null >"$dir/registry.log" 2>&1 &
		pid=$!
		printf '%s\n' "$pid" >"$dir/registry.pid"
		printf '%s\n' "$port" >"$dir/registry.port"
		for ((i = 0; i < registry_TIMEOUT * 2; i++)); do
			if registry_http_ok "$port"; then
				echo "http://127.0.0.1:$port/apis/ccompat/v7"
				return 0
			fi
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		tail -n 30 "$dir/registry.log" >&2
		echo "schema registry: not ready on 127.0.0.1:$port (log: $dir/registry.log)" >&2
		return 1
		;;
	stop)
		[[ -f $dir/registry.pid ]] || return 0
		pid=$(cat "$dir/registry.pid")
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 60; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
		rm -f "$dir/registry.pid"
		;;
	*)
		echo "usage: $0 start|stop DIR [PORT]" >&2
		return 2
		;;
	esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -euo pipefail
	registry_main "$@"
fi
