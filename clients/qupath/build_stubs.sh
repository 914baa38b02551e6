#!/usr/bin/env bash
# Build fosgate-v1-stubs.jar (the fosgate.v1 gRPC Java classes) for QuPath / plain Groovy.
# Needs protoc, the grpc-java protoc plugin and a JDK; on Debian:
#   apt-get install protobuf-compiler protobuf-compiler-grpc-java-plugin libgrpc-java libprotobuf-java default-jdk-headless
# Usage: clients/qupath/build_stubs.sh [OUT_DIR] (default: clients/qupath/build)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$here/build}"
jars="${FOSGATE_JAVA_JARS:-/usr/share/java}"
plugin="${GRPC_JAVA_PLUGIN:-$(command -v grpc_java_plugin || command -v protoc-gen-grpc-java)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/java" "$work/classes" "$out"
protoc --java_out="$work/java" --grpc-java_out="$work/java" --plugin=protoc-gen-grpc-java="$plugin" \
  -I "$root/protos" "$root/protos/fosgate/v1/fosgate.proto"
cp=""
for j in grpc-api grpc-stub grpc-protobuf grpc-protobuf-lite grpc-core grpc-context protobuf guava \
         geronimo-annotation-1.3-spec; do
  cp="$cp:$jars/$j.jar"
done
javac -nowarn --release 11 -cp "${cp#:}" -d "$work/classes" $(find "$work/java" -name '*.java')
jar cf "$out/fosgate-v1-stubs.jar" -C "$work/classes" .
echo "$out/fosgate-v1-stubs.jar"
