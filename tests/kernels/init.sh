#!/bin/sh
# The guest's PID 1: make the guest a host as a distribution would, run the
# run's command, hand back its exit status, power off.
#
# Stage 1 runs from the initramfs with busybox alone: it loads virtio and 9p,
# mounts a tmpfs as the new root and the host's directories into it over 9p
# (read-only; the run's own directory read-write), then switches root.
# Stage 2 runs in the new root, with the host's programs: /dev as udev and
# systemd leave it, the cgroup layout the kernel command line asks for,
# modules loaded with kmod's modprobe, loopback up. The host runner passes
# its settings on the kernel command line (podvisor.layout, podvisor.shares)
# and the command in its run directory; it reads back status and output.log.
#
# Whatever goes wrong, the script ends by powering off (or, should that fail,
# by exiting, which panics a kernel booted with panic=-1 into qemu's exit).

OUT=/run/kernel-out
GUEST=/run/guest

say() { echo "guest: $*"; }

param() {
    for word in $(cat /proc/cmdline); do
        case $word in "podvisor.$1="*) echo "${word#*=}" ;; esac
    done
}

stage1() {
    export PATH=/bin
    /bin/busybox --install -s /bin
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev
    for module in $(cat /modules/order); do
        insmod "/modules/$module" || say "insmod $module failed"
    done
    mount -t tmpfs -o mode=0755 root /newroot
    for share in $(param shares | tr , ' '); do
        tag=${share%%:*} path=${share#*:}
        options=trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro
        [ "$tag" = out ] && options=trans=virtio,version=9p2000.L,msize=512000
        mkdir -p "/newroot$path"
        mount -t 9p -o "$options" "$tag" "/newroot$path" || say "cannot mount share $tag at $path"
    done
    # Debian's merged /usr: the top-level program and library folders are links.
    for name in bin sbin lib lib32 lib64 libx32; do
        [ -e "/newroot/usr/$name" ] && ln -s "usr/$name" "/newroot/$name"
    done
    mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/root \
        /newroot/var/tmp /newroot/var/lib "/newroot$GUEST"
    chmod 1777 /newroot/tmp /newroot/var/tmp
    cp /init /bin/busybox "/newroot$GUEST/"
    mount --move /proc /newroot/proc
    mount --move /sys /newroot/sys
    mount --move /dev /newroot/dev
    exec switch_root /newroot "$GUEST/busybox" sh "$GUEST/init" stage2
}

make_dev() {
    mkdir -p /dev/pts /dev/shm
    mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
    mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm
    ln -sf /proc/self/fd /dev/fd
    ln -sf /proc/self/fd/0 /dev/stdin
    ln -sf /proc/self/fd/1 /dev/stdout
    ln -sf /proc/self/fd/2 /dev/stderr
    ln -sf /proc/kcore /dev/core
}

# v2: one cgroup2 hierarchy at /sys/fs/cgroup (the kernel has cgroup_no_v1=all),
# its controllers handed to the children, as systemd does.
# v1: one hierarchy per controller, co-mounted as systemd mounted them
# (cpu,cpuacct and net_cls,net_prio), plus its named hierarchy, and no cgroup2.
# Either way the command runs in a cgroup of its own, "tests", as a service
# with Delegate=yes would.
make_cgroups() {
    case $1 in
        v2)
            mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
            for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
                echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control
            done
            mkdir /sys/fs/cgroup/tests
            ;;
        v1)
            mount -t tmpfs -o mode=0755 cgroup /sys/fs/cgroup
            for set in cpuset cpu,cpuacct blkio memory devices freezer net_cls,net_prio \
                perf_event hugetlb pids rdma misc; do
                mkdir "/sys/fs/cgroup/$set"
                mount -t cgroup -o "$set" cgroup "/sys/fs/cgroup/$set" || say "no v1 $set"
                mkdir "/sys/fs/cgroup/$set/tests"
            done
            for link in cpu cpuacct; do ln -s cpu,cpuacct "/sys/fs/cgroup/$link"; done
            for link in net_cls net_prio; do ln -s net_cls,net_prio "/sys/fs/cgroup/$link"; done
            cat /sys/fs/cgroup/cpuset/cpuset.cpus >/sys/fs/cgroup/cpuset/tests/cpuset.cpus
            cat /sys/fs/cgroup/cpuset/cpuset.mems >/sys/fs/cgroup/cpuset/tests/cpuset.mems
            mkdir /sys/fs/cgroup/systemd
            mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
            ;;
        *) say "unknown cgroup layout '$1'" ;;
    esac
}

join_tests_cgroup() {
    for procs in /sys/fs/cgroup/tests/cgroup.procs /sys/fs/cgroup/*/tests/cgroup.procs; do
        if [ -e "$procs" ]; then echo 0 >"$procs" || return; fi
    done
}

stage2() {
    export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    export HOME=/root LANG=C.UTF-8 TERM=dumb PYTHONDONTWRITEBYTECODE=1
    make_dev
    layout=$(param layout)
    make_cgroups "$layout"
    # nf_tables needs crc32c before libcrc32c, which modprobe cannot know (a
    # crypto driver is looked up by name at run time, not a symbol dependency).
    for module in crc32c_generic libcrc32c nfnetlink nf_tables nft_chain_nat nft_masq \
        veth bridge overlay; do
        modprobe "$module" || say "modprobe $module failed"
    done
    ip link set lo up
    hostname "guest-$layout"
    say "$(uname -r), cgroup layout $layout, ready"
    {
        (join_tests_cgroup && exec sh "$OUT/command")
        echo $? >"$OUT/status"
    } 2>&1 | "$GUEST/busybox" tee "$OUT/output.log"
    sync
    "$GUEST/busybox" poweroff -f
}

case ${1:-stage1} in
    stage1) stage1 ;;
    stage2) stage2 ;;
esac
