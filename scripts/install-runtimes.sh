#!/usr/bin/env bash
# Installs what the evaluation sandbox needs to run the 8 HumanEval languages:
# bubblewrap (the sandbox), g++ and libssl-dev (C++; HumanEval_162 links -lcrypto -lssl),
# a JDK and javatuples (Java), php-cli, mono-mcs (C#), node, and TypeScript 5 from npm
# into the project-local .runtimes/ folder.
#
# Idempotent and fast when everything is present: each tool is probed first and
# apt-get/npm run only for what is missing. Needs root (or sudo) for apt-get.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNTIMES="$ROOT/.runtimes"
TS_VERSION="5"   # pinned: the harnesses were written against tsc 5; the npm default moved on

missing=()
need() {  # need <probe command...> -- <debian package>
    local pkg="${*: -1}"
    if ! "${@:1:$#-2}" >/dev/null 2>&1; then missing+=("$pkg"); fi
}
need command -v bwrap -- bubblewrap
need command -v g++ -- g++
need test -e /usr/include/openssl/ssl.h -- libssl-dev
need command -v javac -- default-jdk-headless
need test -e /usr/share/java/javatuples.jar -- libjavatuples-java
need command -v php -- php-cli
need command -v mcs -- mono-mcs
need command -v node -- nodejs
need command -v npm -- npm
need command -v unshare -- util-linux

if ((${#missing[@]})); then
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
    echo "install-runtimes: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh container has no package lists, and old ones point at removed versions:
    # refresh them only when the first attempt fails, so a warm machine stays offline-fast.
    if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        $SUDO apt-get update -q
        $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
fi

if [[ ! -x "$RUNTIMES/node_modules/.bin/tsc" ]] \
    || [[ "$("$RUNTIMES/node_modules/.bin/tsc" --version)" != "Version $TS_VERSION."* ]]; then
    echo "install-runtimes: npm install typescript@$TS_VERSION into $RUNTIMES"
    mkdir -p "$RUNTIMES"
    npm install --prefix "$RUNTIMES" --no-audit --no-fund --silent "typescript@$TS_VERSION"
fi

echo "install-runtimes: ok ($(bwrap --version), $("$RUNTIMES/node_modules/.bin/tsc" --version))"
