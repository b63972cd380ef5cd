#!/bin/busybox sh
# tcpwatch-vm stage 1 (PID 1 in the initramfs): load the modules the root
# needs, mount the shared Debian root read-only under a RAM overlay, and hand
# over to stage 2 (/.tcpwatch-vm/guest-init) in that root.
B=/bin/busybox
fail() {
  echo "tcpwatch-vm (initramfs): $*" > /dev/ttyS2
  echo 125 > /dev/ttyS3
  $B poweroff -f
}
$B mount -t proc proc /proc
$B mount -t devtmpfs devtmpfs /dev
while read -r m; do
  $B insmod "$m" || fail "insmod $m failed"
done < /etc/modules-order
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose root /lower \
  || fail "mounting the shared root (9p) failed"
$B mount -t tmpfs -o mode=0755 tmpfs /upper || fail "tmpfs"
$B mkdir -p /upper/data /upper/work
$B mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work /newroot \
  || fail "mounting the overlay root failed"
$B mkdir -p /newroot/.tcpwatch-vm
$B cp -a /vm/. /newroot/.tcpwatch-vm/ || fail "copying the run's files"
$B umount /proc
$B mount --move /dev /newroot/dev || fail "moving /dev"
exec $B switch_root /newroot /bin/sh /.tcpwatch-vm/guest-init
