# shellcheck shell=bash
# shellcheck disable=SC2034  # NAME_PORTS / NAME_TIMEOUT are read indirectly by scripts/stack
# shellcheck disable=SC2016  # single-quoted `bash -c` bodies expand in the child shell
# Service definitions for scripts/stack: for each service NAME, functions
#   NAME_start   prepare config/data under $STACK/NAME and launch the server (does not wait)
#   NAME_ready   succeed once the server answers a real request (used by `up` and `status`)
#   NAME_setup   optional: one-off work once it is ready (users, databases); must be idempotent
#   NAME_stop    optional: stop it (default: SIGTERM to the recorded pid)
# plus the NAME_PORTS array (first entry = the port shown by `status`) and NAME_TIMEOUT (seconds).
#
# Everything listens on 127.0.0.1 only. Sourced by scripts/stack after stack-common.sh.

HOST=127.0.0.1
PG_BIN=/usr/lib/postgresql/15/bin

# as_user USER: set the array AS_USER to the command prefix that runs a program as OS user USER when
# we are root (for servers that refuse root), and to nothing otherwise. setpriv execs the program (no
# extra process), so the pid recorded by `launch` is the server's own.
as_user() {
	AS_USER=()
	if ((EUID == 0)); then AS_USER=(setpriv --reuid="$1" --regid="$1" --init-groups --); fi
}

# own_dir USER DIR...: create DIRs and give them to USER when we are root.
own_dir() {
	local user=$1
	shift
	mkdir -p "$@"
	if ((EUID == 0)); then chown "$user:$user" "$@"; fi
}

# server_dir NAME USER: the folder of service NAME, whose server runs as OS user USER. Normally
# $STACK/NAME; but when we are root and USER cannot reach $STACK (the clone lies under a private folder
# such as /root), a folder under /var/tmp keyed by $STACK, with $STACK/NAME as a symlink to it.
server_dir() {
	if ((EUID == 0)) && ! setpriv --reuid="$2" --regid="$2" --init-groups -- test -x "$STACK"; then
		printf '/var/tmp/cdc-stack-%s/%s' "$(printf '%s' "$STACK" | sha256sum | cut -c1-12)" "$1"
	else
		printf '%s/%s' "$STACK" "$1"
	fi
}

# prepare_server_dir NAME USER: create the folder server_dir names (and the symlink), owned by USER.
prepare_server_dir() {
	local dir
	dir=$(server_dir "$1" "$2")
	if [[ $dir != "$STACK/$1" ]]; then
		mkdir -p "$(dirname "$dir")"
		chmod 755 "$(dirname "$dir")"
		[[ -L $STACK/$1 || ! -e $STACK/$1 ]] || die "$STACK/$1 exists but OS user $2 cannot reach it; remove it"
		ln -sfn "$dir" "$STACK/$1"
		log "$1: OS user $2 cannot reach $STACK; its data lives in $dir"
	fi
	own_dir "$2" "$dir" "$dir/run"
	if ((EUID == 0)) && ! setpriv --reuid="$2" --regid="$2" --init-groups -- test -w "$dir"; then
		die "OS user $2 cannot write $dir"
	fi
}

# Debian OS user for a server that refuses (PostgreSQL) or should not keep (MariaDB) root; ourselves
# when we are not root.
server_user() { if ((EUID == 0)); then printf '%s' "$1"; else id -un; fi; }

# --- PostgreSQL 15 -------------------------------------------------------------------------------------
postgres_PORTS=(5432)
postgres_TIMEOUT=60

postgres_start() {
	local user dir
	user=$(server_user postgres)
	dir=$(server_dir postgres "$user")
	as_user "$user"
	prepare_server_dir postgres "$user"
	chmod 700 "$dir/run"
	if [[ ! -s $dir/data/PG_VERSION ]]; then
		rm -rf "$dir/data"
		own_dir "$user" "$dir/data"
		log "postgres: initdb $dir/data"
		"${AS_USER[@]}" "$PG_BIN/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
			--auth-local=trust --auth-host=scram-sha-256 >"$LOGS/postgres-initdb.log" 2>&1 ||
			fail_service postgres "initdb failed (see $LOGS/postgres-initdb.log)"
		printf "\ninclude_dir = 'conf.d'\t# added by scripts/stack\n" >>"$dir/data/postgresql.conf"
	fi
	own_dir "$user" "$dir/data/conf.d"
	# CDC settings shared with docker/, then the local listener settings. Rewritten on every start.
	{
		cat "$REPO/readers/postgres/postgresql.cdc.conf"
		printf '\n# scripts/stack: loopback only, private socket directory\n'
		printf "listen_addresses = '%s'\nport = %s\nunix_socket_directories = '%s'\n" \
			"$HOST" "${postgres_PORTS[0]}" "$dir/run"
		printf "password_encryption = 'scram-sha-256'\n"
	} >"$dir/data/conf.d/cdc-stack.conf"
	# Local socket (private 0700 directory): trust. TCP on loopback: passwords, incl. replication.
	cat >"$dir/data/pg_hba.conf" <<-EOF
		# written by scripts/stack on every start
		local   all          all                     trust
		local   replication  all                     trust
		host    all          all        127.0.0.1/32 scram-sha-256
		host    replication  all        127.0.0.1/32 scram-sha-256
		host    all          all        ::1/128      scram-sha-256
		host    replication  all        ::1/128      scram-sha-256
	EOF
	if ((EUID == 0)); then chown "$user:$user" "$dir/data/conf.d/cdc-stack.conf" "$dir/data/pg_hba.conf"; fi
	rm -f "$dir/data/postmaster.pid" # stale after a crash; we checked that no postgres of ours runs
	launch postgres "${AS_USER[@]}" "$PG_BIN/postgres" -D "$dir/data"
}

postgres_ready() {
	"$PG_BIN/pg_isready" -q -h "$HOST" -p "${postgres_PORTS[0]}" -d postgres -t 2
}

postgres_setup() {
	local socket_dir
	socket_dir="$(server_dir postgres "$(server_user postgres)")/run"
	"$PG_BIN/psql" -X -q -h "$socket_dir" -p "${postgres_PORTS[0]}" -U postgres -d postgres \
		-v ON_ERROR_STOP=1 -f "$REPO/readers/postgres/setup.sql" >>"$LOGS/postgres.log" 2>&1 ||
		fail_service postgres "readers/postgres/setup.sql failed"
}

postgres_stop() { stop_service postgres INT 60; } # SIGINT = fast shutdown (clients are disconnected)

# --- MariaDB 10.11 ------------------------------------------------------------------------------------
mariadb_PORTS=(3306)
mariadb_TIMEOUT=60

mariadb_start() {
	local user dir
	user=$(server_user mysql)
	dir=$(server_dir mariadb "$user")
	prepare_server_dir mariadb "$user"
	# Our own defaults file only: /etc/mysql is never read. The CDC settings come from readers/mariadb.
	{
		printf '# written by scripts/stack on every start\n[mariadbd]\n'
		printf 'datadir = %s\nsocket = %s\npid-file = %s\n' "$dir/data" "$dir/run/mysqld.sock" "$dir/run/mysqld.pid"
		printf 'bind-address = %s\nport = %s\n' "$HOST" "${mariadb_PORTS[0]}"
		printf 'innodb_buffer_pool_size = 256M\nmax_connections = 300\n\n'
		cat "$REPO/readers/mariadb/cdc.cnf"
		printf '\n[client]\nsocket = %s\n' "$dir/run/mysqld.sock"
	} >"$dir/my.cnf"
	if [[ ! -d $dir/data/mysql ]]; then
		rm -rf "$dir/data"
		own_dir "$user" "$dir/data"
		log "mariadb: mariadb-install-db $dir/data"
		# root@localhost without password (socket and loopback only): the stack is a local test server.
		mariadb-install-db --defaults-file="$dir/my.cnf" --user="$user" --skip-test-db \
			--auth-root-authentication-method=normal >"$LOGS/mariadb-install.log" 2>&1 ||
			fail_service mariadb "mariadb-install-db failed (see $LOGS/mariadb-install.log)"
	fi
	launch mariadb mariadbd --defaults-file="$dir/my.cnf" --user="$user"
}

mariadb_socket() { printf '%s/run/mysqld.sock' "$(server_dir mariadb "$(server_user mysql)")"; }

mariadb_ready() {
	mariadb-admin --no-defaults --protocol=socket --socket="$(mariadb_socket)" -u root \
		--connect-timeout=2 ping && port_open "$HOST" "${mariadb_PORTS[0]}"
}

mariadb_setup() {
	mariadb --no-defaults --protocol=socket --socket="$(mariadb_socket)" -u root \
		<"$REPO/readers/mariadb/setup.sql" >>"$LOGS/mariadb.log" 2>&1 ||
		fail_service mariadb "readers/mariadb/setup.sql failed"
}

# --- Redis ---------------------------------------------------------------------------------------------
redis_PORTS=(6379)
redis_TIMEOUT=20

redis_start() {
	mkdir -p "$STACK/redis"
	# No persistence: a test cache. Foreground (no --daemonize) so the recorded pid is the server's.
	launch redis redis-server --bind "$HOST" --port "${redis_PORTS[0]}" --dir "$STACK/redis" \
		--save '' --appendonly no --daemonize no --protected-mode yes --logfile ''
}

redis_ready() { [[ "$(redis-cli -h "$HOST" -p "${redis_PORTS[0]}" ping 2>/dev/null)" == PONG ]]; }

# --- RabbitMQ (+ epmd, the Erlang port mapper it needs) ---------------------------------------------------
rabbitmq_PORTS=(5672 15672 25672)
rabbitmq_TIMEOUT=120
EPMD_PORT=4369

# The environment that points RabbitMQ (server and CLI tools) at $STACK/rabbitmq instead of /var/lib.
rabbitmq_env() {
	local dir=$STACK/rabbitmq
	printf '%s\n' \
		"HOME=$dir" \
		"RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf" \
		"RABBITMQ_NODENAME=cdcstack@localhost" \
		"RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf" \
		"RABBITMQ_ADVANCED_CONFIG_FILE=$dir/advanced.config" \
		"RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins" \
		"RABBITMQ_MNESIA_BASE=$dir/mnesia" \
		"RABBITMQ_LOG_BASE=$LOGS" \
		"RABBITMQ_LOGS=-" \
		"RABBITMQ_PID_FILE=$dir/beam.pid" \
		"RABBITMQ_DIST_PORT=${rabbitmq_PORTS[2]}" \
		"ERL_EPMD_ADDRESS=$HOST" \
		"ERL_EPMD_PORT=$EPMD_PORT" \
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"
}

rabbitmq_start() {
	local dir=$STACK/rabbitmq
	mkdir -p "$dir/mnesia"
	: >"$dir/rabbitmq-env.conf" # empty: ignore /etc/rabbitmq/rabbitmq-env.conf
	cat >"$dir/rabbitmq.conf" <<-EOF
		# written by scripts/stack on every start
		listeners.tcp.1 = $HOST:${rabbitmq_PORTS[0]}
		management.tcp.ip = $HOST
		management.tcp.port = ${rabbitmq_PORTS[1]}
		# guest/guest may log in, but only over loopback (RabbitMQ's default, stated for clarity)
		loopback_users.guest = true
		disk_free_limit.absolute = 100MB
	EOF
	printf '[rabbitmq_management].\n' >"$dir/enabled_plugins"
	# epmd: start our own on loopback unless one already runs (then RabbitMQ registers with it).
	if ! our_pid epmd >/dev/null; then
		if port_bound "$EPMD_PORT"; then
			log "rabbitmq: using the epmd already listening on $EPMD_PORT ($(port_holder "$EPMD_PORT"))"
		else
			launch epmd epmd -address "$HOST" -port "$EPMD_PORT"
		fi
	fi
	local envs
	mapfile -t envs < <(rabbitmq_env)
	# The packaged script (not the /usr/sbin wrapper, which would su to the rabbitmq user) runs the Erlang
	# VM as a child and stops it on SIGTERM; the VM's own pid goes to $dir/beam.pid.
	launch rabbitmq env "${envs[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server
}

# An AMQP 0-9-1 handshake: send the protocol header, expect a Connection.Start method frame (type 1).
amqp_handshake() {
	local reply
	reply=$(timeout 3 bash -c '
		exec 3<>"/dev/tcp/$1/$2" || exit 1
		printf "AMQP\x00\x00\x09\x01" >&3
		head -c 1 <&3 | od -An -tx1' _ "$HOST" "${rabbitmq_PORTS[0]}" 2>/dev/null) || return 1
	[[ ${reply// /} == 01 ]]
}

rabbitmq_ready() { amqp_handshake; }

rabbitmq_setup() {
	# Remember the Erlang VM's pid too, so `down` can make sure it is gone.
	local beam
	beam=$(cat "$STACK/rabbitmq/beam.pid" 2>/dev/null || true)
	if [[ -n $beam ]]; then record_pid rabbitmq-beam "$beam" || true; fi
}

rabbitmq_stop() {
	stop_service rabbitmq TERM 60
	stop_service rabbitmq-beam TERM 20
	stop_service epmd TERM 10
}

# --- Mosquitto (MQTT) ----------------------------------------------------------------------------------
mosquitto_PORTS=(1883)
mosquitto_TIMEOUT=20

mosquitto_start() {
	mkdir -p "$STACK/mosquitto"
	cat >"$STACK/mosquitto/mosquitto.conf" <<-EOF
		# written by scripts/stack on every start
		listener ${mosquitto_PORTS[0]} $HOST
		allow_anonymous true
		persistence false
		# Mosquitto drops QoS 1 messages for a subscriber with more than 1000 queued by default; the
		# tests' subscribers read every message of a 10,000-row transaction (docs/sinks.md, MQTT).
		max_queued_messages 1000000
		log_dest stderr
		log_type error
		log_type warning
		log_type notice
		log_type information
	EOF
	launch mosquitto mosquitto -c "$STACK/mosquitto/mosquitto.conf"
}

mosquitto_ready() { port_open "$HOST" "${mosquitto_PORTS[0]}"; }

# --- NATS with JetStream -------------------------------------------------------------------------------
nats_PORTS=(4222 8222)
nats_TIMEOUT=20

nats_start() {
	mkdir -p "$STACK/nats"
	launch nats nats-server -a "$HOST" -p "${nats_PORTS[0]}" -m "${nats_PORTS[1]}" -n cdc-stack \
		-js -sd "$STACK/nats"
}

nats_ready() {
	curl -fsS -m 2 "http://$HOST:${nats_PORTS[1]}/healthz?js-enabled-only=true" | grep -q '"ok"'
}

# --- mongo-java-server (MongoDB wire protocol, change streams) -----------------------------------------
mongo_PORTS=(27017)
mongo_TIMEOUT=60

mongo_start() {
	launch mongo "$JAVA" -Xms64m -Xmx1g -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -cp "$LIB/mongo-server/*" \
		cdclogs.stack.MongoServerMain --host "$HOST" --port "${mongo_PORTS[0]}"
}

mongo_ready() { port_open "$HOST" "${mongo_PORTS[0]}"; }

# --- Kafka (single KRaft node: broker + controller) ----------------------------------------------------
kafka_PORTS=(9092 9093)
kafka_TIMEOUT=90

# log4j2 configuration for a JVM service writing to stdout (= its log file), at the given root level.
write_log4j2() {
	cat >"$1" <<-EOF
		status = warn
		appender.out.type = Console
		appender.out.name = OUT
		appender.out.layout.type = PatternLayout
		appender.out.layout.pattern = [%d] %p %m (%c)%n
		rootLogger.level = INFO
		rootLogger.appenderRef.out.ref = OUT
		logger.statechange.name = state.change.logger
		logger.statechange.level = WARN
		logger.request.name = kafka.request.logger
		logger.request.level = WARN
		logger.reflections.name = org.reflections
		logger.reflections.level = ERROR
	EOF
}

kafka_start() {
	local dir=$STACK/kafka
	mkdir -p "$dir/data"
	cat >"$dir/server.properties" <<-EOF
		# written by scripts/stack on every start
		process.roles=broker,controller
		node.id=1
		controller.quorum.voters=1@$HOST:${kafka_PORTS[1]}
		listeners=PLAINTEXT://$HOST:${kafka_PORTS[0]},CONTROLLER://$HOST:${kafka_PORTS[1]}
		advertised.listeners=PLAINTEXT://$HOST:${kafka_PORTS[0]}
		listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
		controller.listener.names=CONTROLLER
		inter.broker.listener.name=PLAINTEXT
		log.dirs=$dir/data
		num.partitions=1
		default.replication.factor=1
		min.insync.replicas=1
		offsets.topic.replication.factor=1
		offsets.topic.num.partitions=10
		transaction.state.log.replication.factor=1
		transaction.state.log.min.isr=1
		share.coordinator.state.topic.replication.factor=1
		share.coordinator.state.topic.min.isr=1
		group.initial.rebalance.delay.ms=0
		auto.create.topics.enable=true
		delete.topic.enable=true
		log.retention.hours=48
		log.segment.bytes=104857600
	EOF
	write_log4j2 "$dir/log4j2.properties"
	local jvm=("$JAVA" -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
		-Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$LIB/kafka/*")
	if [[ ! -f $dir/data/meta.properties ]]; then
		# KRaft storage must be formatted once with a cluster id (22 chars of URL-safe base64).
		# (Regenerated while it starts with '-', which the tool would take for an option.)
		local cluster_id=-
		while [[ $cluster_id == -* ]]; do
			cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
		done
		log "kafka: formatting KRaft storage (cluster id $cluster_id)"
		"${jvm[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" \
			>"$LOGS/kafka-format.log" 2>&1 || fail_service kafka "storage format failed (see $LOGS/kafka-format.log)"
	fi
	launch kafka "${jvm[@]}" kafka.Kafka "$dir/server.properties"
}

# A Kafka Metadata request (API key 3, version 1, all topics) over bash's /dev/tcp: ready when the reply
# lists our broker (node 1 at 127.0.0.1:9092). Proves the broker serves requests, not just that the
# port is open.
kafka_metadata_ok() {
	local hex
	hex=$(timeout 3 bash -c '
		exec 3<>"/dev/tcp/$1/$2" || exit 1
		# size=19 | api_key=3 | api_version=1 | correlation_id=7 | client_id="stack" | topics=null (-1)
		printf "\x00\x00\x00\x13\x00\x03\x00\x01\x00\x00\x00\x07\x00\x05stack\xff\xff\xff\xff" >&3
		size=$(head -c 4 <&3 | od -An -tu4 --endian=big)
		[[ -n $size ]] && head -c "$((size))" <&3 | od -An -v -tx1' _ "$HOST" "${kafka_PORTS[0]}" 2>/dev/null) || return 1
	hex=${hex//[$' \n']/}
	# correlation id 7, then a broker entry: node id 1, host "127.0.0.1" (length 9), port 9092 (0x2384)
	[[ ${hex:0:8} == 00000007 && $hex == *0000000100093132372e302e302e3100002384* ]]
}

kafka_ready() { port_open "$HOST" "${kafka_PORTS[0]}" && kafka_metadata_ok; }

# --- Kafka Connect (distributed worker) with the Debezium connectors ------------------------------------
connect_PORTS=(8083)
connect_TIMEOUT=180

connect_start() {
	local dir=$STACK/connect
	mkdir -p "$dir"
	cat >"$dir/connect-distributed.properties" <<-EOF
		# written by scripts/stack on every start
		bootstrap.servers=$HOST:${kafka_PORTS[0]}
		group.id=cdc-stack-connect
		listeners=http://$HOST:${connect_PORTS[0]}
		rest.advertised.host.name=$HOST
		rest.advertised.port=${connect_PORTS[0]}
		key.converter=org.apache.kafka.connect.json.JsonConverter
		value.converter=org.apache.kafka.connect.json.JsonConverter
		key.converter.schemas.enable=true
		value.converter.schemas.enable=true
		config.storage.topic=connect-configs
		offset.storage.topic=connect-offsets
		status.storage.topic=connect-status
		config.storage.replication.factor=1
		offset.storage.replication.factor=1
		status.storage.replication.factor=1
		offset.storage.partitions=5
		status.storage.partitions=1
		offset.flush.interval.ms=1000
		plugin.path=$LIB/connect-plugins
		plugin.discovery=${CDC_STACK_CONNECT_PLUGIN_DISCOVERY:-service_load}
		connector.client.config.override.policy=All
	EOF
	write_log4j2 "$dir/log4j2.properties"
	launch connect "$JAVA" -Xms256m -Xmx1g -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$LIB/kafka/*" \
		org.apache.kafka.connect.cli.ConnectDistributed "$dir/connect-distributed.properties"
}

# Ready when the REST API answers, the worker has joined its group (GET /connectors works) and both
# Debezium connector plugins are loaded.
connect_ready() {
	local base="http://$HOST:${connect_PORTS[0]}" plugins
	curl -fsS -m 3 "$base/" | grep -q '"version"' || return 1
	curl -fsS -m 3 "$base/connectors" >/dev/null || return 1
	plugins=$(curl -fsS -m 5 "$base/connector-plugins") || return 1
	[[ $plugins == *io.debezium.connector.postgresql.PostgresConnector* &&
		$plugins == *io.debezium.connector.mysql.MySqlConnector* ]]
}
