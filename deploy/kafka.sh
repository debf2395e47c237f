#!/usr/bin/env bash
# Local single-node Apache Kafka broker (KRaft) for development, the demo and CI.
#
#   deploy/kafka.sh start    resolve the jars (Maven Central, once), format storage (once), start, wait
#   deploy/kafka.sh stop     stop the broker started from this folder
#   deploy/kafka.sh status   exit 0 when the broker answers
#
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), OPSINTEL_HOME (the repo's var/ folder
# holds jars, data and logs: var/kafka/). Idempotent: starting a running broker is a no-op.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
state="${OPSINTEL_KAFKA_HOME:-$root/var/kafka}"
port="${KAFKA_PORT:-9092}"
cport="${KAFKA_CONTROLLER_PORT:-9093}"
libs="$state/libs"
data="$state/data"
conf="$state/server.properties"
pidfile="$state/broker.pid"
log="$state/broker.log"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")"

say() { printf 'kafka: %s\n' "$*" >&2; }

answers() {
  # a TCP connect is not enough (the socket opens before the broker is ready): ask for metadata
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || return 1
  java -cp "$libs/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --list \
    >/dev/null 2>&1
}

resolve() {
  if [ -f "$libs/.version" ] && [ "$(cat "$libs/.version")" = "$version" ]; then return; fi
  command -v mvn >/dev/null || { say "Maven (mvn) is required to resolve the broker jars"; exit 1; }
  say "resolving org.apache.kafka:kafka_2.13:$version from Maven Central"
  rm -rf "$libs"; mkdir -p "$libs"
  mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs"
  # kafka-tools gives TopicCommand for the readiness probe
  mvn -q -B dependency:copy -Dartifact="org.apache.kafka:kafka-tools:$version" -DoutputDirectory="$libs"
  mvn -q -B dependency:copy -Dartifact="org.apache.kafka:kafka-tools-api:$version" -DoutputDirectory="$libs"
  mvn -q -B dependency:copy -Dartifact="net.sourceforge.argparse4j:argparse4j:0.7.0" -DoutputDirectory="$libs"
  echo "$version" > "$libs/.version"
}

configure() {
  mkdir -p "$state" "$data"
  cat > "$conf" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=168
EOF
  cat > "$state/log4j.properties" <<EOF
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
EOF
  if [ ! -f "$data/meta.properties" ]; then
    say "formatting KRaft storage in $data"
    local quiet=(-Dlog4j.configuration="file:$state/log4j.properties")
    java "${quiet[@]}" -cp "$libs/*" kafka.tools.StorageTool format \
      -t "$(java "${quiet[@]}" -cp "$libs/*" kafka.tools.StorageTool random-uuid)" -c "$conf" >/dev/null
  fi
}

running_pid() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && cat "$pidfile"
}

start() {
  if answers; then say "already running on 127.0.0.1:$port"; return 0; fi
  resolve
  configure
  if ! running_pid >/dev/null; then
    say "starting broker $version on 127.0.0.1:$port (log: $log)"
    nohup java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
      -Dlog4j.configuration="file:$state/log4j.properties" \
      -cp "$libs/*" kafka.Kafka "$conf" >"$state/stdout.log" 2>&1 &
    echo $! > "$pidfile"
  fi
  for _ in $(seq 1 120); do
    if answers; then say "ready on 127.0.0.1:$port"; return 0; fi
    if ! running_pid >/dev/null; then say "broker exited; last lines:"; tail -20 "$state/stdout.log" "$log" >&2 || true; exit 1; fi
    sleep 1
  done
  say "broker did not answer within 120 s"; exit 1
}

stop() {
  local pid
  pid="$(running_pid || true)"
  if [ -z "$pid" ]; then say "not running"; return 0; fi
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; say "stopped"; return 0; }; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true; rm -f "$pidfile"; say "killed"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  resolve) resolve ;;
  *) echo "usage: $0 {start|stop|status|resolve}" >&2; exit 2 ;;
esac
