#!/usr/bin/env python3
"""The scan stage's verdict: vulnix's JSON report against a CVSS threshold and reviewed waivers.

A finding fails the stage when its CVSS v3 base score is at or above the threshold (a finding
without a score counts as at the threshold: unknown severity is not waved through) and no
unexpired waiver names both its component and its advisory. Findings below the threshold are
listed and pass. Exit 0 pass, 1 fail, 2 a bad report or waiver file.

Waiver file (TOML), every field required; `component` is the package name (`openssl`) or name
and version (`openssl-3.0.7`, then a new version is reviewed again):

    [[waiver]]
    component = "openssl-3.0.7"
    advisory = "CVE-2023-0286"
    reason = "X.400 addresses are not parsed anywhere in the image"
    expires = 2026-12-31      # the last day it waives
"""

import argparse
import datetime
import json
import sys
import tomllib

FIELDS = ("component", "advisory", "reason", "expires")


def load_waivers(path):
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        return []
    except tomllib.TOMLDecodeError as e:
        raise SystemExit(f"scan: {path}: not TOML: {e}")
    unknown = set(doc) - {"waiver"}
    if unknown:
        raise SystemExit(f"scan: {path}: unknown top-level key(s) {sorted(unknown)}; waivers are [[waiver]] tables")
    out = []
    for i, w in enumerate(doc.get("waiver", [])):
        where = f"{path}: waiver #{i + 1}"
        missing = [k for k in FIELDS if not str(w.get(k, "")).strip()]
        if missing:
            raise SystemExit(f"scan: {where} lacks {', '.join(missing)} (each waiver needs {', '.join(FIELDS)})")
        extra = set(w) - set(FIELDS)
        if extra:
            raise SystemExit(f"scan: {where}: unknown field(s) {sorted(extra)}")
        exp = w["expires"]
        if isinstance(exp, datetime.datetime):
            exp = exp.date()
        elif isinstance(exp, str):
            try:
                exp = datetime.date.fromisoformat(exp)
            except ValueError:
                raise SystemExit(f"scan: {where}: expires {exp!r} is not a date (YYYY-MM-DD)")
        elif not isinstance(exp, datetime.date):
            raise SystemExit(f"scan: {where}: expires must be a date (YYYY-MM-DD)")
        out.append({**w, "expires": exp})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", required=True, help="vulnix --json output")
    ap.add_argument("--waivers", required=True)
    ap.add_argument("--threshold", type=float, required=True, help="CVSS v3 base score that fails")
    ap.add_argument("--scanner-exit", type=int, required=True, help="vulnix's exit code: 0 clean, 2 findings")
    ap.add_argument("--today", type=datetime.date.fromisoformat, default=datetime.datetime.now(datetime.timezone.utc).date())
    a = ap.parse_args()

    try:
        with open(a.report) as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        print(f"scan: cannot read the scanner's report {a.report}: {e}", file=sys.stderr)
        return 2
    if not isinstance(report, list):
        print(f"scan: {a.report} is not vulnix's JSON report (a list)", file=sys.stderr)
        return 2
    # vulnix also exits 2 on its own errors: only a report that agrees with the code is believed.
    if (a.scanner_exit == 2) != bool(report):
        print(f"scan: vulnix exited {a.scanner_exit} with {len(report)} finding(s) in its report: not trusted", file=sys.stderr)
        return 2
    try:
        waivers = load_waivers(a.waivers)
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2

    failing, waived, below, expired_hits = [], [], [], []
    used = set()
    for item in report:
        name, pname = item["name"], item["pname"]
        scores = item.get("cvssv3_basescore", {})
        for adv in item.get("affected_by", []):
            score = scores.get(adv)
            line = f"{adv} in {name} (CVSS {score if score is not None else 'unknown'})"
            if score is not None and score < a.threshold:
                below.append(line)
                continue
            match = [
                (i, w) for i, w in enumerate(waivers) if w["advisory"] == adv and w["component"] in (pname, name)
            ]
            live = [(i, w) for i, w in match if w["expires"] >= a.today]
            if live:
                i, w = live[0]
                used.add(i)
                waived.append(f"{line}: waived until {w['expires']}: {w['reason']}")
                continue
            for i, w in match:
                used.add(i)
                expired_hits.append(f"{line}: waiver expired on {w['expires']} no longer applies")
            failing.append(line)

    for line in below:
        print(f"scan: below threshold {a.threshold}: {line}")
    for line in waived:
        print(f"scan: WAIVED {line}")
    for line in expired_hits:
        print(f"scan: {line}")
    for i, w in enumerate(waivers):
        if i not in used:
            print(f"scan: note: waiver {w['component']} {w['advisory']} matched no finding (remove it?)")
    if failing:
        for line in failing:
            print(f"scan: FAIL {line}: at or above {a.threshold}, not waived", file=sys.stderr)
        print(f"scan: FAILED: {len(failing)} finding(s) at or above CVSS {a.threshold}", file=sys.stderr)
        return 1
    print(
        f"scan: PASSED: {len(report)} affected package(s) reported; {len(waived)} waived, "
        f"{len(below)} below CVSS {a.threshold}, none failing"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
