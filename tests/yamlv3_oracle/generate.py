"""Generate stack-file-like YAML documents and record what Go's gopkg.in/yaml.v3 makes of each (tests/data/yamlv3_cases.json).

    GO111MODULE=off GOPATH=/usr/share/gocode .venv/bin/python tests/yamlv3_oracle/generate.py [COUNT] [SEED]

needs Debian's golang-go and golang-gopkg-yaml.v3-dev (3.0.1, the version pulumi/pulumi's sdk/go.mod pins); the test
(tests/unit/test_stack_yaml.py) only reads the recorded answers, so it runs without Go.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "data" / "yamlv3_cases.json"

WORDS = ["yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", "y", "Y", "n", "N", "true",
         "True", "TRUE", "tRue", "false", "False", "FALSE", "null", "Null", "NULL", "nUll", "~", "", ".inf", ".Inf",
         ".INF", "+.inf", "-.inf", "-.Inf", ".nan", ".NaN", ".NAN", "inf", "nan", "Infinity", "<<", "ams", "ewr",
         "0x", "0o", "0b", "-", "+", ".", "..", "1.2.3", "0.0.0.0", "192.0.2.1", "2001:db8::1", "1:30", "1:30:00",
         "-1:30", "190:20:30", "64496:100", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10",
         "2001-12-14T21:59:43Z", "2001-13-14", "2001-02-29", "2000-02-29", "0000-01-01", "2001-1-2", "2001-12-14x",
         "12:00", "1e3", "1E3", "1e+3", "1e-3", "1.e3", ".5e3", ".5_0", "._5", "1_000", "1__0", "_1", "1_", "0777",
         "0778", "08", "09", "-0777", "+0777", "0o17", "0O17", "-0o17", "0x1F", "0X1f", "-0x1F", "0x_1F", "0b101",
         "0B101", "-0b101", "0b102", "00", "-0", "+0", "0.0", "-0.0", "1.0", "1.", "+.5", "-.5", "0xG",
         "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
         "18446744073709551615", "18446744073709551616", "+18446744073709551615", "99999999999999999999",
         "123456789012345678901234", "1e400", "-1e400", "1e-400", ".5e400", "1e21", "1e20", "999999999999999999999",
         "0x" + "f" * 17, "0b" + "1" * 65, "0o" + "7" * 23, "1,000", "$1", "1%", "v1", "a b", "@x", "%x"]


def atom(rng: random.Random) -> str:
    """A plain scalar: a tricky word, or digits and punctuation put together."""
    if rng.random() < 0.55:
        return rng.choice(WORDS)
    parts = [rng.choice(["", "+", "-"]), rng.choice(["", "0", "0x", "0o", "0b", "."])]
    for _ in range(rng.randint(1, 4)):
        parts.append(rng.choice(["0", "1", "7", "8", "9", "12", "255", "1_0", "_", ".", "e", "E", "e-", "f", ":", "-"]))
    text = "".join(parts)
    return text if text and text[0] not in ":-_" else "1" + text


def scalar(rng: random.Random) -> str:
    text = atom(rng)
    r = rng.random()
    if r < 0.1:
        return json.dumps(text)  # double-quoted: always a string
    if r < 0.15:
        return "'" + text.replace("'", "''") + "'"
    if text in ("", "-", "+", "@x", "%x", "a b") or text.startswith(("- ", "? ", "@", "%", "*", "&", "!")):
        return json.dumps(text)
    return text


def key(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.6:
        return rng.choice(["asn", "pops", "code", "region", "ttl", "geodns", "announce", "weight", "config",
                           "anycast:network", "dns", "prepend"])
    if r < 0.65:
        return "<<"
    return scalar(rng)


class Doc:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.anchors: list[str] = []
        self.n = 0

    def value(self, depth: int) -> str:
        rng = self.rng
        r = rng.random()
        if self.anchors and r < 0.08:
            return "*" + rng.choice(self.anchors)
        if depth >= 3 or r < 0.5:
            return scalar(rng)
        anchor = ""
        if rng.random() < 0.15:
            self.n += 1
            anchor = f"&a{self.n} "
        if r < 0.75:
            body = "[" + ", ".join(self.value(depth + 1) for _ in range(rng.randint(0, 4))) + "]"
        else:
            body = "{" + ", ".join(f"{key(rng)}: {self.value(depth + 1)}" for _ in range(rng.randint(0, 4))) + "}"
        if anchor:
            self.anchors.append(f"a{self.n}")
        return anchor + body

    def block(self) -> str:
        rng = self.rng
        lines = ["config:"]
        for _ in range(rng.randint(1, 5)):
            lines.append(f"  {key(rng)}: {self.value(1)}")
        if rng.random() < 0.3:  # a second top-level key, now and then the same one again
            lines.append(f"{rng.choice(['config', 'environment', 'secretsprovider'])}: {self.value(1)}")
        return "\n".join(lines) + "\n"


def cases(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = [f"config:\n  v: {w}\n" for w in WORDS if w not in ("", "-", "@x", "%x")]  # every word once, plain
    out += [f"config:\n  {json.dumps(w)}: 1\n  {w}: 2\n" for w in ("ams", "yes", "1")]  # the same key, quoted and not
    out += ["config:\n  b: &b {x: 1, y: 2}\n  c: {<<: *b, x: 3}\n",
            "config:\n  b: &b {x: 1}\n  d: &d {x: 2, z: 4}\n  c: {<<: [*b, *d], y: 3}\n",
            "config:\n  b: &b [1]\n  c: {<<: *b}\n", "config:\n  c: {<<: {x: 1}, <<: {y: 2}}\n",
            "config:\n  l: &l []\n  c: {<<: *l}\n", "config:\n  l: &l [{a: 1}]\n  c: {<<: *l}\n",
            "config:\n  a: &a [*a]\n", "config:\n  '<<': 1\n", "config:\n  a: 1\n---\nb: 2\n"]
    root = HERE.parent.parent  # the project's own files, as they are when the corpus is made
    out += [f.read_text(encoding="utf-8") for f in sorted(root.glob("Pulumi*.yaml"))]
    while len(out) < count:
        out.append(Doc(rng).block())
    return out


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 20261206
    docs = cases(count, seed)
    proc = subprocess.run(["go", "run", str(HERE / "main.go")], input=json.dumps(docs), capture_output=True,
                          text=True, check=True)
    results = json.loads(proc.stdout)
    head = {"generator": f"tests/yamlv3_oracle/generate.py {count} {seed}",
            "library": "gopkg.in/yaml.v3 3.0.1 (Debian golang-gopkg-yaml.v3-dev)"}
    lines = [json.dumps({"yaml": d, **r}, ensure_ascii=False, sort_keys=True) for d, r in zip(docs, results, strict=True)]
    OUT.write_text(json.dumps(head)[:-1] + ', "cases": [\n' + ",\n".join(lines) + "\n]}\n", encoding="utf-8")
    print(f"{OUT}: {len(docs)} cases, {sum('err' in r for r in results)} refused by yaml.v3")


if __name__ == "__main__":
    main()
