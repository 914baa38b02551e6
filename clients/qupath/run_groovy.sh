#!/usr/bin/env bash
# Run a Groovy script with the fosgate stubs and Debian's grpc-java jars on the classpath, e.g.
#   clients/qupath/run_groovy.sh clients/qupath/fosgate_cli.groovy 127.0.0.1:50051 md_... image.tif out/
# Builds clients/qupath/build/fosgate-v1-stubs.jar first when it is missing (or set FOSGATE_STUBS_JAR).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
jars="${FOSGATE_JAVA_JARS:-/usr/share/java}"
stubs="${FOSGATE_STUBS_JAR:-$here/build/fosgate-v1-stubs.jar}"
[ -f "$stubs" ] || "$here/build_stubs.sh" "$(dirname "$stubs")" >/dev/null
if [ -z "${JAVA_HOME:-}" ]; then
  JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
  export JAVA_HOME
fi
cp="$stubs"
for j in grpc-api grpc-stub grpc-protobuf grpc-protobuf-lite grpc-core grpc-context grpc-netty protobuf guava \
         failureaccess perfmark-api netty-buffer netty-codec netty-codec-http netty-codec-http2 netty-common \
         netty-handler netty-handler-proxy netty-codec-socks netty-resolver netty-transport \
         netty-transport-native-unix-common geronimo-annotation-1.3-spec; do
  [ -f "$jars/$j.jar" ] && cp="$cp:$jars/$j.jar"
done
exec groovy -cp "$cp" "$@"
