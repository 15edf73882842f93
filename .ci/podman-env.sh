# shellcheck shell=bash
# Sourced by .ci/images.sh and .ci/container.sh: points podman, buildah and
# podman-compose at a containers.conf that works inside this sandbox.
#
# - Resource limits: by default podman asks for limits (nofile 1048576) above
#   what this machine lets a process raise its hard limits to, and runc or
#   crun then fail with "setrlimit ... Operation not permitted". Containers
#   get the hard limits this shell holds instead; nproc also at most
#   kernel.pid_max, which the kernel here will not exceed.
# - Runtime: crun 1.8 refuses the hybrid cgroup v1/v2 layout of these
#   machines ("cgroups in hybrid mode not supported"); runc accepts it.
#
# CONTAINERS_CONF, if already set, is left alone.
if [[ -z ${CONTAINERS_CONF:-} ]]; then
    _nofile=$(ulimit -Hn)
    _nproc=$(ulimit -Hu)
    _pid_max=$(cat /proc/sys/kernel/pid_max)
    [[ $_nproc == unlimited || $_nproc -gt $_pid_max ]] && _nproc=$_pid_max
    [[ $_nofile == unlimited ]] && _nofile=1048576
    CONTAINERS_CONF=${TMPDIR:-/tmp}/auth-server-ci-containers.conf
    {
        echo '[containers]'
        echo "default_ulimits = [\"nofile=$_nofile:$_nofile\", \"nproc=$_nproc:$_nproc\"]"
        if [[ ! -e /sys/fs/cgroup/cgroup.controllers ]] && command -v runc >/dev/null; then
            echo '[engine]'
            echo 'runtime = "runc"'
        fi
    } >"$CONTAINERS_CONF"
    export CONTAINERS_CONF
    unset _nofile _nproc _pid_max
fi
