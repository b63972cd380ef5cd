#!/bin/sh
# tcpwatch-vm stage 2 (PID 1 in the Debian root): mount the kernel file
# systems and the shares, run the command with stdout on ttyS1 and stderr on
# ttyS2, write its exit status on ttyS3 and power off.
V=/.tcpwatch-vm
fail() {
  echo "tcpwatch-vm (guest): $*" > /dev/ttyS2
  echo 125 > /dev/ttyS3
  sync
  echo o > /proc/sysrq-trigger
  sleep 10
}
mount -t proc proc /proc || fail "mounting /proc"
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tracefs tracefs /sys/kernel/tracing || fail "mounting tracefs"
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
. $V/mounts || fail "mounting the shares"
hostname tcpwatch-vm
ip link set lo up
for t in /dev/ttyS1 /dev/ttyS2 /dev/ttyS3; do stty -F $t raw -echo; done
export HOME=/root TERM=dumb LANG=C.UTF-8
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
/bin/sh $V/command < /dev/null > /dev/ttyS1 2> /dev/ttyS2
echo "$?" > /dev/ttyS3
sync
echo o > /proc/sysrq-trigger
sleep 10
