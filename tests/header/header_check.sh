#!/bin/sh
# Compiles tests/header/use.* against include/cogent.h as C11 (-pedantic)
# and as C++11, C++17 and C++20 with g++ and clang++, links each with the
# static library and runs it.  Usage: header_check.sh SRC_DIR BUILD_DIR
set -e
src=$1
build=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
lib="$build/libcogent.a"
warn="-Wall -Wextra -Werror -pedantic"
n=0
check() { # compiler std file
  "$1" -std="$2" $warn -I"$src/include" "$src/tests/header/$3" "$lib" -lpthread -o "$out/a.out"
  "$out/a.out"
  n=$((n + 1))
}
for cc in gcc clang; do check $cc c11 use.c; done
for cxx in g++ clang++; do
  for std in c++11 c++17 c++20; do check $cxx $std use.cc; done
done
echo "header check: $n builds compiled, linked and ran"
