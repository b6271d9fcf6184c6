//! Bad input for the resources, table-driven: each case is one resource with one mistake.
//! `terraform validate -json` must report an error (or, where noted, a warning) inside that
//! resource whose source snippet is the line of the offending attribute, i.e. the diagnostic
//! carries the attribute path, and whose text says what to do instead. The matcher is shared
//! with the other bad-input tables (support/bad_input.rs). No lab needed: validation is offline.

#[path = "support/bad_input.rs"]
mod support;

use support::{c, check, Case, Kind};

const POOL: &str = "edge_ceph_pool";
const JOB: &str = "edge_pbs_job";
const NODE: &str = "edge_proxmox_node";
const PEER: &str = "edge_wireguard_peer";
const KEY: &str = "edge_wireguard_key";

/// A node that validates, with `$extra` added.
macro_rules! node {
    ($extra:literal) => {
        concat!(
            "name = \"pve1\"\naddress = \"10.0.0.1\"\nimage {\nurl = \"http://10.9.0.5/node.img\"\nmanifest = \"m.json\"\n}\n",
            "bmc {\nendpoint = \"https://10.9.0.21/redfish/v1/Systems/1\"\n}\n",
            $extra
        )
    };
}

/// A peer that validates, with `$ssh` added to its `ssh` attribute and `$extra` to the body.
macro_rules! peer {
    ($ssh:literal, $extra:literal) => {
        concat!(
            "ssh = {\nhost = \"10.0.0.1\"\nhost_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUPcMQjH32vdI+SLIVWmwW3fzWYcradp8PjJFhWrMBH\"\n",
            $ssh,
            "}\ninterface = \"wg0\"\npublic_key = \"HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\"\n",
            $extra
        )
    };
}

/// How many cases each resource type has: a case that goes missing fails the count.
const COUNTS: &[(&str, usize)] = &[(POOL, 21), (JOB, 27), (NODE, 40), (PEER, 20), (KEY, 3)];

const CASES: &[Case] = &[
    // edge_ceph_pool
    c(POOL, "node = \"pve1\"\nname = \"bad/name\"", "name = \"bad/name\"", "no ':', '/' or whitespace"),
    c(POOL, "node = \"pve1\"\nname = \"has space\"", "name = \"has space\"", "whitespace"),
    c(POOL, "node = \"-pve1\"\nname = \"p\"", "node = \"-pve1\"", "not a PVE node name"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\nsize = 0", "size = 0", "between 1 and 7"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\nsize = 8", "size = 8", "between 1 and 7"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\nmin_size = 9", "min_size = 9", "between 1 and 7"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\nsize = 2\nmin_size = 3", "min_size = 3", "min_size = 3 but size = 2"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\npg_num = 0", "pg_num = 0", "between 1 and 32768"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\npg_num = 40000", "pg_num = 40000", "between 1 and 32768"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\npg_num_min = 40000", "pg_num_min = 40000", "at most 32768"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\npg_num = 32\npg_num_min = 64", "pg_num_min = 64", "larger than pg_num"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\npg_autoscale_mode = \"maybe\"", "pg_autoscale_mode", "on, off, warn"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\napplication = \"nfs\"", "application = \"nfs\"", "rbd, cephfs, rgw"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\ntarget_size = \"10X\"", "target_size = \"10X\"", "K, M, G or T"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\ntarget_size_ratio = -1", "target_size_ratio = -1", "0 or more"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\ncrush_rule = \"a b\"", "crush_rule = \"a b\"", "not a CRUSH rule"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\nerasure_coding {\nk = 1\nm = 1\n}", "k = 1", "at least 2 data chunks"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\nerasure_coding {\nk = 2\nm = 0\n}", "m = 0", "at least 1 coding chunk"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\nerasure_coding {\nk = 2\nm = 1\ndevice_class = \"a b\"\n}", "device_class", "one word"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\nsize = 1", "size = 1", "yes-i-really-mean-it"),
    c(POOL, "node = \"pve1\"\nname = \"p\"\ntimeouts {\ncreate = \"5 minutes\"\n}", "create = \"5 minutes\"", "not a duration"),
    // edge_pbs_job
    c(JOB, "id = \"j\"\nschedule = \"mon..fry 02:00\"\nprune {\nstore = \"s\"\n}", "schedule", "\"fry\" is not a weekday"),
    c(JOB, "id = \"j\"\nschedule = \"*-*-* 25:00\"\nprune {\nstore = \"s\"\n}", "schedule", "hour 25"),
    c(JOB, "id = \"j\"\nschedule = \"daily 02:00\"\nprune {\nstore = \"s\"\n}", "schedule", "stands alone"),
    c(JOB, "id = \"j\"\nschedule = \"sat *-1..7..9 15:00\"\nprune {\nstore = \"s\"\n}", "schedule", "two ends"),
    c(JOB, "id = \"bad id!\"\nschedule = \"daily\"\nsync {\nstore = \"a\"\nremote_store = \"b\"\n}", "id = \"bad id!\"", "Invalid job ID"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nverify {\nstore = \"v\"\n}\nprune {\nstore = \"s\"\n}", "store = \"s\"", "exactly one of"),
    c(JOB, "id = \"nightly\"\nschedule = \"daily\"\nbackup {\nstorage = \"1bad\"\nall = true\n}", "storage = \"1bad\"", "storage ID"),
    c(JOB, "id = \"nightly\"\nschedule = \"daily\"\nbackup {\nstorage = \"pbs\"\nall = true\nmode = \"fast\"\n}", "mode = \"fast\"", "snapshot, suspend, stop"),
    c(JOB, "id = \"nightly\"\nschedule = \"daily\"\nbackup {\nstorage = \"pbs\"\nall = true\ncompress = \"xz\"\n}", "compress = \"xz\"", "gzip"),
    c(JOB, "id = \"nightly\"\nschedule = \"daily\"\nbackup {\nstorage = \"pbs\"\nvmids = [100, 5]\n}", "vmids = [100, 5]", "from 100"),
    c(JOB, "id = \"nightly\"\nschedule = \"daily\"\nbackup {\nstorage = \"pbs\"\n}", "backup {", "exactly one of vmids"),
    c(JOB, "id = \"nightly\"\nschedule = \"daily\"\nbackup {\nstorage = \"pbs\"\nall = true\nprune_backups = { keep_forever = 1 }\n}", "keep_forever", "Unknown retention key"),
    c(JOB, "id = \"nightly\"\nschedule = \"daily\"\nbackup {\nstorage = \"pbs\"\nvmids = [100]\nexclude = [101]\n}", "exclude = [101]", "all = true or pool"),
    c(JOB, "id = \"nightly\"\nschedule = \"daily\"\nbackup {\nstorage = \"pbs\"\nall = true\nnotification_mode = \"email\"\n}", "notification_mode", "notification-system"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nsync {\nstore = \"a\"\nremote_store = \"b\"\nsync_direction = \"both\"\n}", "sync_direction", "pull, push"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nsync {\nstore = \"a\"\nremote_store = \"b\"\ngroup_filter = [\"type:lxc\"]\n}", "group_filter", "type:vm|ct|host"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nsync {\nstore = \"a\"\nremote_store = \"b\"\nrate_in = \"fast\"\n}", "rate_in = \"fast\"", "10MiB"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nsync {\nstore = \"a\"\nremote_store = \"b\"\ntransfer_last = 0\n}", "transfer_last = 0", "between 1"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nsync {\nstore = \"a\"\nremote_store = \"a\"\n}", "remote_store = \"a\"", "different source"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nsync {\nstore = \"a\"\nremote_store = \"b\"\nremote_ns = \"x//y\"\n}", "remote_ns", "at most 8 levels"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\ndisable = true\nsync {\nstore = \"a\"\nremote_store = \"b\"\n}", "disable = true", "no disable switch"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nverify {\nstore = \"bad store\"\n}", "store = \"bad store\"", "Invalid datastore name"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nverify {\nstore = \"s\"\nmax_depth = 9\n}", "max_depth = 9", "between 0 and 7"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nverify {\nstore = \"s\"\noutdated_after = -1\n}", "outdated_after = -1", "between 0"),
    c(JOB, "id = \"j\"\nschedule = \"daily\"\nprune {\nstore = \"s\"\nkeep_last = 0\n}", "keep_last = 0", "between 1"),
    c(JOB, "id = \"s1\"\nschedule = \"daily\"\ngc {\nstore = \"s2\"\n}", "store = \"s2\"", "must equal id"),
    c(JOB, "id = \"s1\"\nschedule = \"daily\"\ncomment = \"x\"\ngc {}", "comment = \"x\"", "no comment"),
    // edge_proxmox_node: identity, image, BMC (boot.rs, mod.rs)
    c(NODE, "name = \"pve_1\"\naddress = \"10.0.0.1\"\nimage {\nurl = \"http://10.9.0.5/node.img\"\nmanifest = \"m.json\"\n}\nbmc {\nendpoint = \"https://10.9.0.21\"\n}", "name = \"pve_1\"", "use letters, digits and inner '-'"),
    c(NODE, "name = \"pve1\"\naddress = \"https://10.0.0.1:8006\"\nimage {\nurl = \"http://10.9.0.5/node.img\"\nmanifest = \"m.json\"\n}\nbmc {\nendpoint = \"https://10.9.0.21\"\n}", "address = \"https://10.0.0.1:8006\"", "no scheme, no port"),
    c(NODE, "name = \"pve1\"\naddress = \"10.0.0.1; reboot\"\nimage {\nurl = \"http://10.9.0.5/node.img\"\nmanifest = \"m.json\"\n}\nbmc {\nendpoint = \"https://10.9.0.21\"\n}", "address = \"10.0.0.1; reboot\"", "IP address or host name only"),
    c(NODE, "name = \"pve1\"\naddress = \"10.0.0.1\"\nimage {\nurl = \"ftp://10.9.0.5/node.img\"\nmanifest = \"m.json\"\n}\nbmc {\nendpoint = \"https://10.9.0.21\"\n}", "url = \"ftp://10.9.0.5/node.img\"", "over http:// or https://"),
    c(NODE, "name = \"pve1\"\naddress = \"10.0.0.1\"\nimage {\nurl = \"\"\nmanifest = \"m.json\"\n}\nbmc {\nendpoint = \"https://10.9.0.21\"\n}", "url = \"\"", "give the http(s) URL the BMC fetches"),
    c(NODE, "name = \"pve1\"\naddress = \"10.0.0.1\"\nimage {\nurl = \"http://10.9.0.5/node.img\"\nmanifest = \"s3://bucket/m.json\"\n}\nbmc {\nendpoint = \"https://10.9.0.21\"\n}", "manifest = \"s3://bucket/m.json\"", "use a local path or an http(s) URL"),
    c(NODE, "name = \"pve1\"\naddress = \"10.0.0.1\"\nimage {\nurl = \"http://10.9.0.5/node.img\"\nmanifest = \"m.json\"\n}\nbmc {\nendpoint = \"10.9.0.21/redfish/v1\"\n}", "endpoint = \"10.9.0.21/redfish/v1\"", "use https:// (http:// for emulators)"),
    c(NODE, "name = \"pve1\"\naddress = \"10.0.0.1\"\nimage {\nurl = \"http://10.9.0.5/node.img\"\nmanifest = \"m.json\"\n}\nbmc {\nendpoint = \"https://10.9.0.21\"\ntls_fingerprint = \"AB:CD\"\n}", "tls_fingerprint = \"AB:CD\"", "32 hex pairs separated by colons"),
    c(NODE, "name = \"pve1\"\naddress = \"10.0.0.1\"\nimage {\nurl = \"http://10.9.0.5/node.img\"\nmanifest = \"m.json\"\n}\nbmc {\nendpoint = \"https://10.9.0.21\"\ntls_fingerprint = \"AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\"\ninsecure = true\n}", "insecure = true", "Set tls_fingerprint or insecure = true, not both"),
    // edge_proxmox_node: power, trust, timeouts (boot.rs, trust.rs)
    c(NODE, node!("power = \"sideways\""), "power = \"sideways\"", "use \"on\" or \"off\""),
    c(NODE, node!("disk_boot_timeout = \"ten minutes\""), "disk_boot_timeout", "e.g. \"30s\", \"10m\""),
    c(NODE, node!("tls_fingerprint = \"AB:CD\""), "tls_fingerprint = \"AB:CD\"", "32 hex pairs separated by colons"),
    c(NODE, node!("root_password = \"short\""), "root_password = \"short\"", "Use at least 16 characters"),
    c(NODE, node!("reimage_on_change = \"sometimes\""), "reimage_on_change = \"sometimes\"", "a bool is required"),
    c(NODE, node!("timeouts {\ncreate = \"forever\"\n}"), "create = \"forever\"", "use a number with a unit"),
    // edge_proxmox_node: DNS, time, network (configure.rs)
    c(NODE, node!("timezone = \"Europe/Berlin; reboot\""), "timezone", "use one from zone.tab such as \"Europe/Berlin\""),
    c(NODE, node!("dns {\nservers = [\"10.0.0.1\", \"10.0.0.2\", \"10.0.0.3\", \"10.0.0.4\"]\n}"), "servers = [", "PVE keeps at most three"),
    c(NODE, node!("dns {\nservers = [\"ns1.example.com\"]\n}"), "servers = [\"ns1.example.com\"]", "is not an IP address"),
    c(NODE, node!("network {\niface = \"vlan7\"\ntype = \"vlan\"\n}"), "network {", "needs vlan_id, or a name like vmbr0.20"),
    c(NODE, node!("network {\niface = \"vmbr0.20\"\ntype = \"vlan\"\nvlan_id = 5000\n}"), "vlan_id = 5000", "outside 1–4094"),
    c(NODE, node!("network {\niface = \"vmbr0.20\"\ntype = \"vlan\"\nvlan_id = 20.5\n}"), "vlan_id = 20.5", "use a whole number"),
    c(NODE, node!("network {\niface = \"vmbr1\"\ntype = \"bridge\"\nmtu = 1000\n}"), "mtu = 1000", "PVE takes 1280–65520"),
    c(NODE, node!("network {\niface = \"vmbr1\"\ntype = \"bridge\"\ncidr = \"10.1.0.11\"\n}"), "cidr = \"10.1.0.11\"", "with a prefix length of 8–32"),
    c(NODE, node!("network {\niface = \"vmbr1\"\ntype = \"bridge\"\ngateway = \"10.1.0.256\"\n}"), "gateway = \"10.1.0.256\"", "is not an IPv4 address"),
    c(NODE, node!("network {\niface = \"wlan0\"\ntype = \"wifi\"\n}"), "type = \"wifi\"", "use one of bridge, bond, eth"),
    c(NODE, node!("network {\niface = \"bond0\"\ntype = \"bond\"\nbond_mode = \"fast\"\n}"), "bond_mode = \"fast\"", "use one of balance-rr"),
    c(NODE, node!("network {\niface = \"vmbr 1\"\ntype = \"bridge\"\n}"), "iface = \"vmbr 1\"", "a letter, then 1–20 letters"),
    // edge_proxmox_node: cluster (cluster.rs, trust.rs)
    c(NODE, node!("cluster {\nname = \"store\"\ncreate = true\njoin = \"10.0.0.2\"\n}"), "join = \"10.0.0.2\"", "either creates the cluster (create = true) or joins"),
    c(NODE, node!("cluster {\ncreate = true\n}"), "cluster {", "create = true needs the cluster's name"),
    c(NODE, node!("cluster {\nname = \"store_001!\"\ncreate = true\n}"), "name = \"store_001!\"", "1–15 letters, digits and '-'"),
    c(NODE, node!("cluster {\njoin = \"https://10.0.0.2:8006\"\n}"), "join = \"https://10.0.0.2:8006\"", "no scheme, no port"),
    c(NODE, node!("cluster {\njoin = \"10.0.0.2\"\nfingerprint = \"zz\"\n}"), "fingerprint = \"zz\"", "32 hex pairs separated by colons"),
    c(NODE, node!("cluster {\njoin = \"10.0.0.2\"\nca_pem = \"AB:CD\"\n}"), "ca_pem = \"AB:CD\"", "wire in the creating node's cluster_ca_pem"),
    // edge_proxmox_node: Ceph (ceph.rs)
    c(NODE, node!("ceph {\nosd_devices = [\"/dev/sdb\", \"sdc; wipefs -a /dev/sda\"]\n}"), "osd_devices", "e.g. \"/dev/sdb\""),
    c(NODE, node!("ceph {\nnetwork = \"10.1.0.0\"\n}"), "network = \"10.1.0.0\"", "use a CIDR network"),
    c(NODE, node!("ceph {\nmon_address = \"pve1\"\n}"), "mon_address = \"pve1\"", "is not an IP address"),
    c(NODE, node!("cluster {\nname = \"store\"\ncreate = true\n}\nceph {\nmon = true\nmgr = false\n}"), "mgr = false", "leave mgr out or set it true"),
    // edge_proxmox_node: ACME (acme.rs)
    c(NODE, node!("acme {\ndomains = [{ domain = \"localhost\" }]\n}"), "domains = [{ domain = \"localhost\" }]", "such as \"pve1.example.com\""),
    c(NODE, node!("acme {\ndomains = []\n}"), "domains = []", "Give 1 to 6 domains"),
    c(NODE, node!("tls_fingerprint = \"AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\"\nacme {\ndomains = [{ domain = \"pve1.example.com\" }]\n}"), "tls_fingerprint", "leave tls_fingerprint out"),
    // edge_wireguard_peer (wireguard_peer.rs)
    c(PEER, "ssh = {\nhost = \"10.0.0.1; reboot\"\nhost_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUPcMQjH32vdI+SLIVWmwW3fzWYcradp8PjJFhWrMBH\"\n}\ninterface = \"wg0\"\npublic_key = \"HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\"\nallowed_ips = [\"10.99.1.0/24\"]", "host = \"10.0.0.1; reboot\"", "neither an IP address nor a host name"),
    c(PEER, "ssh = {\nhost = \"10.0.0.1\"\nhost_key = \"AAAAC3NzaC1lZDI1NTE5\"\n}\ninterface = \"wg0\"\npublic_key = \"HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\"\nallowed_ips = [\"10.99.1.0/24\"]", "host_key = \"AAAAC3NzaC1lZDI1NTE5\"", "such as `ssh-ed25519 AAAAC3Nza…`"),
    c(PEER, peer!("port = 0\n", "allowed_ips = [\"10.99.1.0/24\"]"), "port = 0", "outside 1–65535"),
    c(PEER, peer!("port = 22.5\n", "allowed_ips = [\"10.99.1.0/24\"]"), "port = 22.5", "use a whole number"),
    c(PEER, peer!("user = \"root; id\"\n", "allowed_ips = [\"10.99.1.0/24\"]"), "user = \"root; id\"", "letters, digits, '_', '-', '.'"),
    c(PEER, peer!("private_key = \"id_ed25519\"\n", "allowed_ips = [\"10.99.1.0/24\"]"), "private_key", "an unencrypted OpenSSH ed25519 or ECDSA key is expected"),
    c(PEER, "ssh = {\nhost = \"10.0.0.1\"\nhost_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUPcMQjH32vdI+SLIVWmwW3fzWYcradp8PjJFhWrMBH\"\n}\ninterface = \"wg0; reboot\"\npublic_key = \"HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\"\nallowed_ips = [\"10.99.1.0/24\"]", "interface = \"wg0; reboot\"", "1–15 letters, digits"),
    c(PEER, "ssh = {\nhost = \"10.0.0.1\"\nhost_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUPcMQjH32vdI+SLIVWmwW3fzWYcradp8PjJFhWrMBH\"\n}\ninterface = \"wg0\"\npublic_key = \"AAAA\"\nallowed_ips = [\"10.99.1.0/24\"]", "public_key = \"AAAA\"", "32 bytes in base64 (44 characters)"),
    c(PEER, "ssh = {\nhost = \"10.0.0.1\"\nhost_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUPcMQjH32vdI+SLIVWmwW3fzWYcradp8PjJFhWrMBH\"\n}\ninterface = \"wg0\"\npublic_key = \"hub's key\"\nallowed_ips = [\"10.99.1.0/24\"]", "public_key = \"hub's key\"", "as `wg genkey`, `wg pubkey`"),
    c(PEER, peer!("", "allowed_ips = [\"10.99.1.1/24\"]"), "allowed_ips = [\"10.99.1.1/24\"]", "WireGuard stores it as \"10.99.1.0/24\""),
    c(PEER, peer!("", "allowed_ips = [\"10.99.1.0/24\", \"store-1\"]"), "allowed_ips", "is not a CIDR such as 10.99.1.0/24"),
    c(PEER, peer!("", ""), "resource \"edge_wireguard_peer\"", "\"allowed_ips\" is required"),
    c(PEER, peer!("", "allowed_ips = [\"10.99.1.0/24\"]\nendpoint = \"hub.example.net\""), "endpoint = \"hub.example.net\"", "is not host:port (e.g. 198.51.100.7:51820"),
    c(PEER, peer!("", "allowed_ips = [\"10.99.1.0/24\"]\nendpoint = \"198.51.100.7:0\""), "endpoint = \"198.51.100.7:0\"", "is not host:port"),
    c(PEER, peer!("", "allowed_ips = [\"10.99.1.0/24\"]\npersistent_keepalive = 70000"), "persistent_keepalive = 70000", "outside 0–65535"),
    c(PEER, peer!("", "allowed_ips = [\"10.99.1.0/24\"]\npreshared_key = \"psk!\""), "preshared_key", "`wg genpsk`"),
    c(PEER, peer!("", "allowed_ips = [\"10.99.1.0/24\"]\nconfig_dir = \"etc/wireguard\""), "config_dir = \"etc/wireguard\"", "is not an absolute path"),
    c(PEER, peer!("", "allowed_ips = [\"10.99.1.0/24\"]\nconfig_dir = \"/etc/wireguard/../../root\""), "config_dir", "(without '..')"),
    c(PEER, peer!("", "allowed_ips = [\"10.99.1.0/24\"]\ntimeouts {\ncreate = \"1 minute\"\n}"), "create = \"1 minute\"", "use a number with a unit"),
    c(PEER, peer!("", "allowed_ips = \"10.99.1.0/24\""), "allowed_ips = \"10.99.1.0/24\"", "set of string required"),
    // edge_wireguard_key: nothing of its own to validate; Terraform's own checks of the schema
    c(KEY, "keepers = \"rotate\"", "keepers = \"rotate\"", "map of string required"),
    c(KEY, "keepers = { hub = [\"a\"] }", "keepers = { hub = [\"a\"] }", "string required"),
    c(KEY, "keeper = { rotation = \"1\" }", "keeper = {", "Did you mean \"keepers\"?"),
];

/// A warning, not an error: pg_num that is not a power of two.
const WARN: &str = "\nresource \"edge_ceph_pool\" \"warn\" {\nnode = \"pve1\"\nname = \"p\"\npg_num = 100\n}\n";

#[test]
fn every_bad_input_names_its_attribute() {
    for (ty, want) in COUNTS {
        let n = CASES.iter().filter(|c| c.ty == *ty).count();
        assert_eq!(n, *want, "{ty}: {n} cases, the table says {want} (update COUNTS with the table)");
    }
    assert_eq!(CASES.len(), COUNTS.iter().map(|(_, n)| n).sum::<usize>(), "a case of a type COUNTS does not list");
    let (hcl, diags) = check(Kind::Resource, CASES, WARN);
    let start = hcl.lines().position(|l| l == "resource \"edge_ceph_pool\" \"warn\" {").expect("warn block") + 1;
    let warn = support::within(&diags, &(start..start + 5));
    assert!(
        warn.iter().any(|d| d["severity"] == "warning"
            && d["snippet"]["code"].as_str().is_some_and(|c| c.contains("pg_num = 100"))
            && d["detail"].as_str().is_some_and(|t| t.contains("power of two"))),
        "pg_num warning: {warn:#?}"
    );
    assert!(!warn.iter().any(|d| d["severity"] == "error"), "a pg_num warning must not be an error: {warn:#?}");
}
