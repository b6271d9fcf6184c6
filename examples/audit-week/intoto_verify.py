#!/usr/bin/env python3
"""Checks edgeform's daily evidence files with third-party code only (securesystemslib's DSSE).

    intoto_verify.py DIR NAME:BASE64-PUBKEY [...]

For each DIR/YYYY-MM-DD.json, oldest first: the DSSE envelope verifies with one of the given
Ed25519 keys (Nix's `name:base64` form; the name is the keyid), the payload is an in-toto
Statement v1, each store record's digest is a subject, and the file names the previous day's file
by the SHA-256 of its bytes. Prints one line per problem ("DATE: what"), exits 1 if any.
Written against the DSSE and in-toto specifications, not against edgeform's code.
"""
import base64
import datetime
import hashlib
import json
import os
import sys

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey


def canonical(v):
    # edgeform's record digest: compact JSON, keys sorted (the subject names it).
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def main():
    d, keys = sys.argv[1], []
    for k in sys.argv[2:]:
        name, b64 = k.split(":", 1)
        keys.append(SSlibKey(name, "ed25519", "ed25519", {"public": base64.b64decode(b64).hex()}))
    files = sorted(f for f in os.listdir(d) if f.endswith(".json") and len(f) == len("YYYY-MM-DD.json"))
    problems, prev = [], None
    if not files:
        problems.append(f"{d}: no evidence files")
    for f in files:
        date = f[:-5]
        raw = open(os.path.join(d, f), "rb").read()
        env = Envelope.from_dict(json.loads(raw))
        try:
            env.verify(keys, 1)
        except VerificationError as e:
            problems.append(f"{date}: DSSE signature does not verify with the trusted keys ({e})")
        st = json.loads(env.payload)
        if st.get("_type") != "https://in-toto.io/Statement/v1":
            problems.append(f"{date}: not an in-toto Statement v1")
            continue
        subjects = {s["name"]: s["digest"].get("sha256") for s in st["subject"]}
        day = st["predicate"]
        for rec in day["stores"]:
            if subjects.get("store/" + rec["store"]) != hashlib.sha256(canonical(rec)).hexdigest():
                problems.append(f"{date} {rec['store']}: record digest is not the signed subject")
        link = day.get("previous")
        if prev is not None:
            want_name = (datetime.date.fromisoformat(date) - datetime.timedelta(days=1)).isoformat() + ".json"
            if prev[0] != want_name:
                problems.append(f"{date}: the day before ({want_name}) is missing")
            elif link is None or link["file"] != prev[0] or link["sha256"] != hashlib.sha256(prev[1]).hexdigest():
                problems.append(f"{date}: does not link to {prev[0]} as it is now (replaced or edited)")
        prev = (f, raw)
    for p in problems:
        print(p)
    print(f"{len(files)} file(s), {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
