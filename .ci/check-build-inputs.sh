#!/usr/bin/env bash
# Checks that the image build cannot silently miss a file the build depends
# on, in seconds and before any image is built:
#
# 1. Every file of this package that compiling the server read (its modules
#    and every file include_str!/include_bytes! embeds, as listed in cargo's
#    dep-info of the release binary and library), plus Cargo.toml,
#    Cargo.lock and any build.rs, is let into the build context by
#    .dockerignore and copied into the Dockerfile's build stage.
# 2. Everything the build stage copies is let into the context.
# 3. docker/stub-targets.sh, given only Cargo.toml and Cargo.lock, leaves a
#    manifest that cargo accepts (every declared target has its file): the
#    Dockerfile's dependency layer builds from exactly that.
#
# The dep-info lists what rustc really read, so a new module, a new
# embedded file or a renamed directory is caught without this script
# knowing about it. Runs `cargo build --release` first (a no-op when the
# release build is current) so that the dep-info is this checkout's.
# Usage: .ci/check-build-inputs.sh   (exit 1 with one line per problem)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
problems=0
problem() {
    echo "check-build-inputs: $*" >&2
    problems=$((problems + 1))
}

target_dir=$(cargo metadata --no-deps --format-version 1 --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
depinfo=("$target_dir/release/auth-server.d" "$target_dir/release/libauth_server.d")
# Up to date dep-info: a no-op after .ci/run's release build.
cargo build --release --locked --quiet

# The package's own files among the dependencies (registry crates live
# elsewhere), relative to the checkout.
inputs=$(
    for file in "${depinfo[@]}"; do
        grep -q '\\ ' "$file" && problem "$file has a path with a space; this script cannot read it"
        cut -d: -f2- "$file" | tr ' ' '\n'
    done | { grep "^$root/" || true; } | sed "s|^$root/||" | sort -u
)
if ! grep -qx 'src/main.rs' <<<"$inputs"; then
    problem "cargo's dep-info (${depinfo[0]}) does not list $root/src/main.rs; cannot tell the build inputs"
fi
inputs+=$'\nCargo.toml\nCargo.lock'
[[ -e build.rs ]] && inputs+=$'\nbuild.rs'

# .dockerignore must have the allow-list form this script understands: `*`,
# then one `!path` per line (comments and blank lines aside).
allowed=()
first=1
while IFS= read -r line; do
    [[ -z $line || $line == \#* ]] && continue
    if ((first)); then
        [[ $line == '*' ]] || problem ".dockerignore: expected '*' as its first rule, found '$line'"
        first=0
    elif [[ $line == '!'* && $line != *[*?[]* ]]; then
        line=${line#!}
        allowed+=("${line%/}")
    else
        problem ".dockerignore: expected only '!path' rules after '*', found '$line'"
    fi
done <.dockerignore

# The build stage's COPY sources (COPY --from=... copies between stages).
copied=()
stages=0
while read -r instruction args; do
    case ${instruction^^} in
    FROM)
        stages=$((stages + 1))
        ((stages == 1)) || break
        ;;
    COPY | ADD)
        read -ra words <<<"$args"
        [[ ${words[0]} == --from=* ]] && continue
        sources=()
        for word in "${words[@]}"; do [[ $word == --* ]] || sources+=("$word"); done
        for source in "${sources[@]:0:${#sources[@]}-1}"; do
            source=${source#./}
            copied+=("${source%/}")
        done
        ;;
    esac
done < <(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' Dockerfile | grep -Ev '^[[:space:]]*(#|$)')

# Succeeds if $1 is one of the remaining arguments or lies under one.
covered() {
    local path=$1 entry
    shift
    for entry in "$@"; do
        [[ $path == "$entry" || $path == "$entry"/* ]] && return 0
    done
    return 1
}

count=0
while IFS= read -r input; do
    [[ -z $input ]] && continue
    count=$((count + 1))
    covered "$input" "${allowed[@]}" || problem "$input is a build input, but .dockerignore keeps it out of the build context"
    covered "$input" "${copied[@]}" || problem "$input is a build input, but the Dockerfile's build stage does not copy it"
done <<<"$inputs"
for source in "${copied[@]}"; do
    covered "$source" "${allowed[@]}" || problem "the Dockerfile copies $source, but .dockerignore keeps it out of the build context"
done

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp Cargo.toml Cargo.lock "$scratch/"
(cd "$scratch" && sh "$root/docker/stub-targets.sh" Cargo.toml >/dev/null &&
    cargo fetch --locked --quiet --target "$(rustc -vV | sed -n 's/^host: //p')") ||
    problem "with docker/stub-targets.sh's placeholders, cargo rejects Cargo.toml (see above)"

if ((problems)); then
    echo "check-build-inputs: $problems problem(s)" >&2
    exit 1
fi
echo "check-build-inputs: all $count build inputs are in the context and copied; the dependency layer's manifest loads"
