#!/usr/bin/env bash
# Local stand-ins for the images the Dockerfile and docker-compose.yml name,
# for machines that reach no container registry (the CI and development
# machines). Each is built from Debian packages and the machine's own files,
# tagged with the real image's name, and labelled a stand-in:
#
#   docker.io/library/rust:1.95.0-slim-bookworm
#       Debian 12 (debootstrap, minbase) with gcc and libc6-dev, plus this
#       machine's Rust toolchain (rustc and cargo under /usr/local/rustup and
#       /usr/local/cargo, as in the real image) and this machine's CA bundle,
#       so that cargo reaches crates.io through the same egress as the host.
#   gcr.io/distroless/cc-debian12:nonroot
#       a file system with only Debian 12's glibc, libgcc, libgomp,
#       libstdc++, libssl, CA certificates, time zones, /etc/passwd with
#       root, nobody and nonroot (65532), and no shell.
#   docker.io/library/mysql:8.4
#       MariaDB 10.11 from Debian with an entry point that honours the
#       official image's variables that docker-compose.yml uses
#       (standins/mysql-entrypoint.sh). NOT MySQL.
#   docker.io/axllent/mailpit:latest
#       an SMTP sink on 1025 and the part of Mailpit's HTTP API a test uses,
#       on 8025 (standins/mailpit.py). NOT Mailpit.
#
# Caching: each image carries a label with a hash of its recipe (the shell
# function that builds it, the files it copies, the image it starts from).
# An image whose label matches is reused; a changed recipe rebuilds it and
# everything built on it. An image under one of these names WITHOUT the
# stand-in label is taken to be the real one and is used as it is.
#
# Needs root, podman and buildah, debootstrap, and network access to a
# Debian mirror (DEBIAN_MIRROR, default http://deb.debian.org/debian).
# Reads ~/.rustup and ~/.cargo/bin; never writes there.
#
# Usage: .ci/images.sh            build what is missing or stale
#        .ci/images.sh --list     print the images this script makes
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=.ci/podman-env.sh
source ./podman-env.sh

DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Downloaded Debian packages and package lists, kept between runs so that a
# rebuild of the stand-ins fetches only what changed. Not part of any image.
CACHE=${STANDIN_CACHE:-/var/cache/auth-server-ci}
LABEL=org.auth-server.standin
BASE=localhost/auth-server-ci/bookworm:minbase
RUST=docker.io/library/rust:1.95.0-slim-bookworm
DISTROLESS=gcr.io/distroless/cc-debian12:nonroot
MYSQL=docker.io/library/mysql:8.4
MAILPIT=docker.io/axllent/mailpit:latest

if [[ ${1:-} == --list ]]; then
    printf '%s\n' "$BASE" "$RUST" "$DISTROLESS" "$MYSQL" "$MAILPIT"
    exit 0
fi

note() { printf '   %s\n' "$*"; }

# Working containers have fixed names, so that one left by a build that
# failed half-way is removed on exit or, at the latest, by the next run.
# (`buildah commit --rm` removes those that made it.)
WORKING=(rust distroless-files distroless mysql mailpit)
new_ctr() {
    local name=auth-server-ci-standin-$1
    buildah rm "$name" >/dev/null 2>&1 || true
    buildah from --quiet --pull=never --name "$name" "$2" >/dev/null
    printf '%s\n' "$name"
}
cleanup() {
    local name
    for name in "${WORKING[@]}"; do
        buildah rm "auth-server-ci-standin-$name" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

# The recipe hash of an image: its build function's text, the files and
# facts named in the arguments, and the base image's id.
recipe() {
    local fn=$1
    shift
    {
        declare -f "$fn"
        for item in "$@"; do
            if [[ -f $item ]]; then sha256sum <"$item"; else printf '%s\n' "$item"; fi
        done
    } | sha256sum | cut -c1-16
}

image_id() { podman image inspect --format '{{.Id}}' "$1"; }

# Succeeds if $1 needs no build: a real image, or a stand-in with recipe $2.
fresh() {
    local image=$1 want=$2 have
    podman image exists "$image" || return 1
    have=$(podman image inspect --format "{{index .Labels \"$LABEL.recipe\"}}" "$image")
    if [[ -z $have || $have == "<no value>" ]]; then
        note "$image: present without the stand-in label, so taken as the real image"
        return 0
    fi
    [[ $have == "$want" ]] && note "$image: stand-in up to date ($want)"
}

# Removes the stand-in that a rebuild replaced, now untagged, unless images
# built on it still need it (podman then refuses, which is fine).
drop_previous() {
    if [[ -n $1 ]]; then podman rmi "$1" >/dev/null 2>&1 || true; fi
}

# Labels and commits working container $1 as image $2 with recipe $3.
commit() {
    local ctr=$1 image=$2 key=$3 what=$4
    buildah config \
        --label "$LABEL=$what" \
        --label "$LABEL.recipe=$key" \
        --label "org.opencontainers.image.description=LOCAL STAND-IN for $image, not the real image: $what" \
        "$ctr"
    local previous
    previous=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    buildah commit --quiet --rm "$ctr" "$image" >/dev/null
    drop_previous "$previous"
    note "$image: built stand-in ($key) in $((SECONDS - started)) s"
}

# Runs a shell command in working container $1 with apt quiet and
# non-interactive.
in_ctr() {
    local ctr=$1
    shift
    buildah run --env DEBIAN_FRONTEND=noninteractive \
        --volume "$CACHE/apt-archives:/var/cache/apt/archives" \
        --volume "$CACHE/apt-lists:/var/lib/apt/lists" \
        "$ctr" -- sh -ec "$*"
}

apt_install() {
    local ctr=$1
    shift
    # Quiet unless it fails: apt's notes (no apt-utils) would be noise. The
    # package cache and lists are mounted from $CACHE, so none of it stays
    # in the image.
    in_ctr "$ctr" "exec >/tmp/apt.log 2>&1 || exit 1; apt-get update -qq && apt-get install -y -qq --no-install-recommends $* || { cat /tmp/apt.log >&2; exit 1; }; rm -f /tmp/apt.log"
}

build_base() {
    local key=$1 root
    root=$(mktemp -d)
    debootstrap --variant=minbase --cache-dir="$CACHE/debootstrap" \
        bookworm "$root" "$DEBIAN_MIRROR" >"$root.log" 2>&1 ||
        {
            cat "$root.log" >&2
            return 1
        }
    rm -f "$root.log"
    cat >"$root/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb ${DEBIAN_MIRROR%/debian}/debian-security bookworm-security main
EOF
    # Packages are installed in containers that never start services.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    local previous
    previous=$(podman image inspect --format '{{.Id}}' "$BASE" 2>/dev/null || true)
    tar -C "$root" -c . | podman import --quiet \
        --change 'CMD ["bash"]' \
        --change "LABEL $LABEL=debian-bookworm-minbase" \
        --change "LABEL $LABEL.recipe=$key" \
        - "$BASE" >/dev/null
    drop_previous "$previous"
    rm -rf "$root"
    note "$BASE: imported debootstrap --variant=minbase bookworm ($key) in $((SECONDS - started)) s"
}

build_rust() {
    local key=$1 sysroot=$2 version=$3 host=$4 ctr mnt toolchain tool
    ctr=$(new_ctr rust "$BASE")
    apt_install "$ctr" ca-certificates gcc libc6-dev
    mnt=$(buildah mount "$ctr")
    toolchain=$version-$host
    mkdir -p "$mnt/usr/local/rustup/toolchains/$toolchain" "$mnt/usr/local/cargo/bin"
    # The documentation is most of the toolchain's size and no build reads it.
    tar -C "$sysroot" --exclude=./share/doc -cf - . |
        tar -C "$mnt/usr/local/rustup/toolchains/$toolchain" -xf -
    cp "$(command -v rustup)" "$mnt/usr/local/cargo/bin/rustup"
    for tool in cargo rustc rustdoc cargo-clippy clippy-driver cargo-fmt rustfmt; do
        ln -s rustup "$mnt/usr/local/cargo/bin/$tool"
    done
    cat >"$mnt/usr/local/rustup/settings.toml" <<EOF
version = "12"
default_toolchain = "$toolchain"
profile = "minimal"
auto_self_update = "disable"
EOF
    cp /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/ca-certificates.crt"
    buildah umount "$ctr" >/dev/null
    buildah config \
        --env RUSTUP_HOME=/usr/local/rustup \
        --env CARGO_HOME=/usr/local/cargo \
        --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env RUST_VERSION="$version" \
        --cmd bash "$ctr"
    commit "$ctr" "$RUST" "$key" "Debian 12 minbase + gcc + this machine's Rust $version and CA bundle"
}

build_distroless() {
    local key=$1 helper hmnt ctr mnt
    helper=$(new_ctr distroless-files "$BASE")
    apt_install "$helper" ca-certificates tzdata netbase libgomp1 libssl3
    hmnt=$(buildah mount "$helper")
    ctr=$(new_ctr distroless scratch)
    mnt=$(buildah mount "$ctr")
    # Debian 12 has a merged /usr: keep its top-level links.
    mkdir -p "$mnt"/usr/{bin,sbin,lib,lib64} "$mnt"/etc "$mnt"/home/nonroot "$mnt"/tmp "$mnt"/root
    for link in bin sbin lib lib64; do ln -s "usr/$link" "$mnt/$link"; done
    chroot "$hmnt" dpkg-query -L libc6 libgcc-s1 libgomp1 libstdc++6 libssl3 tzdata netbase |
        grep -Ev '^/usr/share/(doc|man|lintian|locale|bug)(/|$)' | sed 's|^/||' | sort -u |
        tar -C "$hmnt" --no-recursion -T - -cf - |
        tar -C "$mnt" --keep-directory-symlink -xf -
    mkdir -p "$mnt/etc/ssl/certs"
    cp "$hmnt/etc/ssl/certs/ca-certificates.crt" "$mnt/etc/ssl/certs/"
    cp "$hmnt/etc/os-release" "$mnt/etc/os-release" 2>/dev/null ||
        cp "$hmnt/usr/lib/os-release" "$mnt/etc/os-release"
    cat >"$mnt/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
    cat >"$mnt/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
    chown 65532:65532 "$mnt/home/nonroot"
    chmod 1777 "$mnt/tmp"
    chmod 700 "$mnt/root"
    buildah umount "$helper" >/dev/null
    buildah rm "$helper" >/dev/null
    buildah umount "$ctr" >/dev/null
    buildah config --user 65532:65532 --workingdir /home/nonroot \
        --env PATH=/usr/local/bin:/usr/bin:/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
        "$ctr"
    commit "$ctr" "$DISTROLESS" "$key" "Debian 12 glibc, libgcc, libstdc++, libssl, CA certificates, user 65532; no shell"
}

build_mysql() {
    local key=$1 ctr mnt
    ctr=$(new_ctr mysql "$BASE")
    # The official image's mysql user is 999:999; volumes and secret files
    # prepared for it must work here too.
    in_ctr "$ctr" 'groupadd --system --gid 999 mysql && useradd --system --uid 999 --gid 999 --home-dir /var/lib/mysql --shell /usr/sbin/nologin mysql'
    apt_install "$ctr" mariadb-server mariadb-client
    # Like the official image: an empty data directory (the entry point
    # initialises it), listening on every address, no host-name lookups.
    in_ctr "$ctr" 'rm -rf /var/lib/mysql && mkdir -p /var/lib/mysql /run/mysqld && chown mysql:mysql /var/lib/mysql /run/mysqld'
    mnt=$(buildah mount "$ctr")
    printf '[mysqld]\nbind-address = 0.0.0.0\nskip-name-resolve\n' >"$mnt/etc/mysql/mariadb.conf.d/90-standin.cnf"
    buildah copy --quiet --chmod 755 "$ctr" standins/mysql-entrypoint.sh /usr/local/bin/docker-entrypoint.sh >/dev/null
    buildah umount "$ctr" >/dev/null
    buildah --log-level=error config --entrypoint '["docker-entrypoint.sh"]' --cmd mysqld \
        --port 3306 --volume /var/lib/mysql "$ctr"
    commit "$ctr" "$MYSQL" "$key" "MariaDB 10.11 from Debian 12 behind an entry point like mysql:8.4's; not MySQL"
}

build_mailpit() {
    local key=$1 ctr
    ctr=$(new_ctr mailpit "$BASE")
    apt_install "$ctr" python3
    buildah copy --quiet --chmod 755 "$ctr" standins/mailpit.py /usr/local/bin/mailpit >/dev/null
    buildah --log-level=error config --entrypoint '["/usr/local/bin/mailpit"]' --cmd '[]' \
        --port 1025 --port 8025 --user 65534:65534 "$ctr"
    commit "$ctr" "$MAILPIT" "$key" "an SMTP sink and a subset of Mailpit's HTTP API in Python 3.11; not Mailpit"
}

mkdir -p "$CACHE/debootstrap" "$CACHE/apt-archives" "$CACHE/apt-lists"
for tool in podman buildah debootstrap; do
    command -v "$tool" >/dev/null || {
        echo "images.sh: $tool is required (apt-get install $tool)" >&2
        exit 2
    }
done

started=$SECONDS
key=$(recipe build_base "$DEBIAN_MIRROR")
fresh "$BASE" "$key" || build_base "$key"
base_id=$(image_id "$BASE")

# The toolchain the tag promises: refuse to label another version 1.95.0.
sysroot=$(rustc --print sysroot)
version=$(rustc -vV | sed -n 's/^release: //p')
host=$(rustc -vV | sed -n 's/^host: //p')
if [[ $RUST != *:"$version"-* ]]; then
    echo "images.sh: this machine's rustc is $version, but the Dockerfile wants ${RUST#*:}" >&2
    exit 1
fi
started=$SECONDS
key=$(recipe build_rust "$base_id" "$(rustc -vV)" "$(cargo -V)" /etc/ssl/certs/ca-certificates.crt)
fresh "$RUST" "$key" || build_rust "$key" "$sysroot" "$version" "$host"

started=$SECONDS
key=$(recipe build_distroless "$base_id")
fresh "$DISTROLESS" "$key" || build_distroless "$key"

started=$SECONDS
key=$(recipe build_mysql "$base_id" standins/mysql-entrypoint.sh)
fresh "$MYSQL" "$key" || build_mysql "$key"

started=$SECONDS
key=$(recipe build_mailpit "$base_id" standins/mailpit.py)
fresh "$MAILPIT" "$key" || build_mailpit "$key"
