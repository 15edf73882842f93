#!/bin/sh
# Creates a placeholder source file for every target Cargo.toml declares, so
# that the Dockerfile can build the dependencies from Cargo.toml and
# Cargo.lock alone, in a layer that source edits do not invalidate.
#
# Cargo refuses a manifest whose declared targets have no file (a
# `[[bench]] name = "crypto"` needs benches/crypto.rs), so the list is read
# from the manifest itself rather than written down here a second time: a
# target added to Cargo.toml gets its placeholder without anyone editing the
# Dockerfile. Auto-discovered targets need no placeholder (cargo only looks
# for them), except src/main.rs and src/lib.rs, which define the package.
#
# Usage: stub-targets.sh [MANIFEST]   (default Cargo.toml; run in its directory)
# Prints each file it creates. Existing files are left alone.
set -eu
manifest=${1:-Cargo.toml}

# One line per declared target: its `path`, or cargo's default location for
# its kind and name. Handles the forms Cargo.toml uses here: one key per
# line, `name = "..."` and `path = "..."` with double quotes.
targets=$(awk '
    function flush() {
        if (kind == "") return
        if (path != "") print path
        else if (kind == "bin") print "src/bin/" name ".rs"
        else if (kind == "bench") print "benches/" name ".rs"
        else if (kind == "example") print "examples/" name ".rs"
        else if (kind == "test") print "tests/" name ".rs"
        else if (kind == "lib") print "src/lib.rs"
        kind = ""; name = ""; path = ""
    }
    function value(line) {
        sub(/^[^=]*=[ \t]*"/, "", line)
        sub(/".*$/, "", line)
        return line
    }
    /^[ \t]*\[\[[ \t]*(bin|bench|example|test)[ \t]*\]\][ \t]*(#.*)?$/ {
        flush(); kind = $0
        sub(/^[ \t]*\[\[[ \t]*/, "", kind); sub(/[ \t]*\]\].*$/, "", kind)
        next
    }
    /^[ \t]*\[[ \t]*lib[ \t]*\][ \t]*(#.*)?$/ { flush(); kind = "lib"; next }
    /^[ \t]*\[/ { flush(); next }
    kind != "" && /^[ \t]*name[ \t]*=/ { name = value($0) }
    kind != "" && /^[ \t]*path[ \t]*=/ { path = value($0) }
    END { flush() }
' "$manifest")

stub() {
    [ -e "$1" ] && return 0
    mkdir -p "$(dirname "$1")"
    echo 'fn main() {}' >"$1"
    echo "$1"
}

stub src/main.rs
if [ ! -e src/lib.rs ]; then
    : >src/lib.rs
    echo src/lib.rs
fi
for target in $targets; do
    stub "$target"
done
