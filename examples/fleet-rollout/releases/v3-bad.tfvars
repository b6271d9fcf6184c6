# v3 (bad): the scratch pool down to one copy. It plans, and real PVE refuses it: Ceph wants
# --yes-i-really-mean-it for size 1, which PVE never sends (acceptance/lab/FIDELITY.md,
# PVE-POOL-SIZE1). It must fail on the canary, be reverted there, and reach no other store.
gc_schedule = "sun 05:00"
pools = {
  "vm-disks"  = {}
  "ct-disks"  = {}
  "images"    = { pg_num = 16 }
  "scratch"   = { size = 1, min_size = 1, pg_num = 16 }
  "cephfs-md" = { pg_num = 16, application = "cephfs" }
}
