#!/usr/bin/env python3
"""What the evidence chain must catch, done the way an attacker would (week.sh check uses it).

    tamper.py edit NAME DIR                      change the signed payload, keep the signature
    tamper.py hide-drift NAME STORE KEYFILE DIR  empty STORE's drift, fix its subject digest and
                                                 re-sign with KEYFILE (an insider with the real key)
    tamper.py resign NAME KEYFILE DIR            re-sign the unchanged statement with another key
NAME is a day file in DIR (the directory comes last: week.sh appends the copy it tampers with).
KEYFILE is a Nix-format secret key (`name:base64(seed || public)`).
"""
import base64
import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def pae(t, body):
    return b"DSSEv1 %d %s %d %s" % (len(t), t.encode(), len(body), body)


def sign(env, payload, keyfile):
    name, b64 = open(keyfile).read().strip().split(":", 1)
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(b64)[:32])
    env["payload"] = base64.b64encode(payload).decode()
    env["signatures"] = [{"keyid": name, "sig": base64.b64encode(key.sign(pae(env["payloadType"], payload))).decode()}]


def main():
    mode, path, args = sys.argv[1], os.path.join(sys.argv[-1], sys.argv[2]), sys.argv[3:-1]
    env = json.load(open(path))
    payload = base64.b64decode(env["payload"])
    st = json.loads(payload)
    if mode == "edit":
        st["predicate"]["written_at"] = "1999-01-01T00:00:00Z"
        env["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
    elif mode == "hide-drift":
        store, keyfile = args
        rec = next(r for r in st["predicate"]["stores"] if r["store"] == store)
        assert rec["drift"]["changes"], f"{store} has no drift to hide"
        rec["drift"]["changes"] = []
        # …and the subject digest to match, as a careful insider would.
        digest = hashlib.sha256(json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
        for s in st["subject"]:
            if s["name"] == "store/" + store:
                s["digest"]["sha256"] = digest.hexdigest()
        sign(env, json.dumps(st).encode(), keyfile)
    elif mode == "resign":
        sign(env, payload, args[0])
    else:
        sys.exit(f"unknown mode {mode}")
    json.dump(env, open(path, "w"), indent=2)


if __name__ == "__main__":
    main()
