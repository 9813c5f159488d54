#!/bin/bash
# The LVM volume group `minio-nvme` on every instance-store NVMe disk of a storage node
# (OpenEBS LVM LocalPV carves MinIO's drives from it). Disks are chosen by NVMe model:
# instance store reports "Amazon EC2 NVMe Instance Storage", EBS volumes (the root disk on
# Nitro types such as i3en) report "Amazon Elastic Block Store". Idempotent.
set -euo pipefail
dnf install -y lvm2
if vgs minio-nvme >/dev/null 2>&1; then
  exit 0
fi
disks=()
for block in /sys/block/nvme*n1; do
  [ -e "$block/device/model" ] || continue
  if grep -q "Instance Storage" "$block/device/model"; then
    disks+=("/dev/$(basename "$block")")
  fi
done
if [ "${#disks[@]}" -eq 0 ]; then
  echo "minio-nvme: no instance-store NVMe disk on this node; not a storage instance type?" >&2
  exit 0
fi
pvcreate "${disks[@]}"
vgcreate minio-nvme "${disks[@]}"
