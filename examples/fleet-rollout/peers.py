#!/usr/bin/env python3
"""What rollout.sh check asks the fleet's peers: Prometheus's HTTP API and the DOM chromium
rendered from the hub's /status page. Each command exits 0 when the peer shows what it should,
1 (with the reason on stderr) when not, so the script can poll it with wait_for and die on it.

  peers.py rule PROM ALERT                  the alert rule is loaded, healthy and evaluated
  peers.py value PROM QUERY WANT [L=V...]   the query's samples are one per L=V (their label L is V;
                                            with none, exactly one sample), each equal to WANT ("any":
                                            whatever value)
  peers.py targets PROM N                   N active targets, every one up with no scrape error
  peers.py not-halted PROM ALERT            no alert ALERT, firing or pending
  peers.py halted PROM ALERT ROLLOUT PART   exactly one alert ALERT, firing, for ROLLOUT and PART
  peers.py failed-on AGENTS RELEASE         the stores whose own newest signed report on RELEASE
                                            (kept by their agents under AGENTS/<store>/reports) failed
  peers.py status-dom DOM RELEASE PART AGENTS   the rendered status page shows the rollout of
                                            RELEASE halted and reverted at PART, naming exactly the
                                            stores failed-on names, each with its signed words
  peers.py pids-mentioning TEXT             pids of processes whose command line contains TEXT
"""

import json
import os
import sys
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path


def fail(msg):
    print(f"[peers] {msg}", file=sys.stderr)
    sys.exit(1)


def get(prom, path, **params):
    url = f"{prom}{path}" + (("?" + urllib.parse.urlencode(params)) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            v = json.load(r)
    except OSError as e:
        fail(f"GET {url}: {e}")
    if v.get("status") != "success":
        fail(f"GET {url}: {v}")
    return v["data"]


def query(prom, q):
    return get(prom, "/api/v1/query", query=q)["result"]


def alerts(prom, name):
    return [a for a in get(prom, "/api/v1/alerts")["alerts"] if a["labels"].get("alertname") == name]


def failed_on(agents, release):
    """{store: detail lines} for the stores whose newest report on `release` is a failure."""
    out = {}
    for store in sorted(p.name for p in Path(agents).iterdir() if p.is_dir()):
        newest = None
        for f in (Path(agents) / store / "reports").glob("*.json"):
            if not f.stem.isdigit():
                continue
            r = json.loads(f.read_text())["report"]
            if r.get("release") == release and (newest is None or int(f.stem) > newest[0]):
                newest = (int(f.stem), r)
        if newest and newest[1].get("outcome") == "failed":
            out[store] = [str(line) for line in newest[1].get("detail") or []]
    return out


class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def walk(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.walk()

    def text(self):
        return " ".join("".join(c if isinstance(c, str) else c.text() + " " for c in self.children).split())

    def find(self, pred):
        return [n for n in self.walk() if pred(n)]


class Tree(HTMLParser):
    """The DOM as chromium serialized it (every non-void element closed)."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.cur = Node("#document", {}, None)

    def handle_starttag(self, tag, attrs):
        n = Node(tag, dict(attrs), self.cur)
        self.cur.children.append(n)
        if tag not in self.VOID:
            self.cur = n

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, dict(attrs), self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def status_dom(dom_file, release, partition, agents):
    t = Tree()
    t.feed(Path(dom_file).read_text())
    doc = t.root
    by_id = lambda i: doc.find(lambda n: n.attrs.get("id") == i)  # noqa: E731
    header = by_id("rollout")
    if len(header) != 1:
        fail(f"no #rollout on the page: {doc.text()[:400]}")
    h = header[0].attrs
    if (h.get("data-release"), h.get("data-halted")) != (release, "true"):
        fail(f"#rollout says release {h.get('data-release')!r}, halted {h.get('data-halted')!r}")
    banner = by_id("halt")
    if len(banner) != 1:
        fail("no halt banner (#halt) on the page")
    banner = banner[0]
    if banner.attrs.get("data-reverted") != "true" or "Rollout halted and reverted" not in banner.text():
        fail(f"the banner does not say halted and reverted: {banner.text()[:300]}")
    reasons = banner.find(lambda n: "reason" in n.attrs.get("class", "").split())
    if [r.attrs.get("data-partition") for r in reasons] != [partition]:
        fail(f"the banner names partitions {[r.attrs.get('data-partition') for r in reasons]}, not [{partition!r}]")
    if not reasons[0].text().startswith(f"Partition {partition} failed its gate:"):
        fail(f"the reason reads {reasons[0].text()!r}")
    table = by_id("partitions")
    rows = table[0].find(lambda n: n.tag == "tr" and n.attrs.get("data-partition") == partition) if table else []
    if [r.attrs.get("data-phase") for r in rows] != ["reverted"]:
        fail(f"the partitions table shows {partition} as {[r.attrs.get('data-phase') for r in rows]}")
    # The failed stores: exactly those whose own signed reports say so, in their words.
    want = failed_on(agents, release)
    if not want:
        fail(f"no store's own report says it failed on {release[:12]}: nothing to check the page against")
    shown = banner.find(lambda n: "data-failed-store" in n.attrs)
    names = [n.attrs["data-failed-store"] for n in shown]
    if sorted(names) != sorted(want):
        fail(f"the page names failed stores {names}, their reports say {sorted(want)}")
    for n in shown:
        pre = n.find(lambda c: c.tag == "pre")
        words = pre[0].text() if pre else ""
        signed = " ".join("\n".join(want[n.attrs["data-failed-store"]]).split())
        if not signed or words != signed:
            fail(f"{n.attrs['data-failed-store']}: the page shows {words!r}, the store signed {signed!r}")
    print(f"status page in chromium: halted and reverted; {reasons[0].text()}; failed stores: {', '.join(names)}")


def main(a):
    cmd = a[0] if a else ""
    if cmd == "rule" and len(a) == 3:
        rules = [r for g in get(a[1], "/api/v1/rules")["groups"] for r in g["rules"] if r.get("name") == a[2]]
        if len(rules) != 1:
            fail(f"{len(rules)} rules named {a[2]} loaded")
        r = rules[0]
        if r.get("health") != "ok" or r.get("lastEvaluation", "0001").startswith("0001"):
            fail(f"{a[2]}: health {r.get('health')!r}, last evaluated {r.get('lastEvaluation')!r}")
        print(f"prometheus: {a[2]} loaded (for: {r.get('duration')} s), last evaluated {r['lastEvaluation']}")
    elif cmd == "value" and len(a) >= 4:
        res = query(a[1], a[2])
        want = sorted(tuple(x.split("=", 1)) for x in a[4:])
        if len({k for k, _ in want}) > 1:
            fail(f"one label name in {a[4:]}")
        # The label each sample carries under the one name the L=V pairs use.
        got = sorted((want[0][0], s["metric"].get(want[0][0], "")) for s in res) if want else []
        shown = [(s["metric"], s["value"][1]) for s in res]
        wrong_value = a[3] != "any" and any(float(s["value"][1]) != float(a[3]) for s in res)
        if (got != want if want else len(res) != 1) or wrong_value:
            fail(f"{a[2]}: {shown}, want {a[3]} for each of {want or 'one sample'}")
        # Each sample by the labels that tell it apart here (not Prometheus's own).
        names = [{k: v for k, v in m.items() if k not in ("__name__", "instance", "job")} for m, _ in shown]
        each = ", ".join(f"{' '.join(f'{k}={v}' for k, v in sorted(n.items())) or '{}'}: {v}"
                         for n, (_, v) in zip(names, shown))
        print(f"prometheus: {a[2]} -> {each}")
    elif cmd == "targets" and len(a) == 3:
        ts = get(a[1], "/api/v1/targets")["activeTargets"]
        bad = [f"{t['labels'].get('job')} {t['scrapeUrl']}: {t['health']} {t['lastError']}"
               for t in ts if t["health"] != "up" or t["lastError"]]
        if len(ts) != int(a[2]) or bad:
            fail(f"{len(ts)} targets (want {a[2]}); not up: {bad}")
        jobs = sorted({t["labels"].get("job") for t in ts})
        per_job = ", ".join(f"{j}: {sum(t['labels'].get('job') == j for t in ts)}" for j in jobs)
        print(f"prometheus: {len(ts)} targets up ({per_job})")
    elif cmd == "not-halted" and len(a) == 3:
        got = alerts(a[1], a[2])
        if got:
            fail(f"{a[2]} {[(x['state'], x['labels']) for x in got]}")
        print(f"prometheus: {a[2]} neither pending nor firing")
    elif cmd == "halted" and len(a) == 5:
        got = alerts(a[1], a[2])
        firing = [x for x in got if x["state"] == "firing"]
        if len(got) != 1 or len(firing) != 1:
            fail(f"{a[2]}: {[(x['state'], x['labels']) for x in got]}")
        lab = firing[0]["labels"]
        if (lab.get("rollout"), lab.get("partition"), lab.get("severity")) != (a[3], a[4], "critical"):
            fail(f"{a[2]} fires for {lab}, want rollout {a[3]}, partition {a[4]}, severity critical")
        print(f"prometheus: {a[2]} firing {json.dumps(lab, sort_keys=True)}: {firing[0]['annotations'].get('summary')}")
    elif cmd == "failed-on" and len(a) == 3:
        print(" ".join(failed_on(a[1], a[2])))
    elif cmd == "status-dom" and len(a) == 5:
        status_dom(*a[1:])
    elif cmd == "pids-mentioning" and len(a) == 2:
        me = {os.getpid(), os.getppid()}
        for p in Path("/proc").iterdir():
            if not p.name.isdigit() or int(p.name) in me:
                continue
            try:
                line = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if a[1] in line:
                print(p.name)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(64)


if __name__ == "__main__":
    main(sys.argv[1:])
