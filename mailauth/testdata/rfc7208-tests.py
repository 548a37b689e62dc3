#!/usr/bin/python3
"""Converts the openspf.org RFC 7208 test suite (release 2014.04), shipped by
Debian's python3-spf as /usr/share/doc/python3-spf/rfc7208-tests.yml.gz, to
rfc7208-tests.json for spf_suite_test.go (Go has no YAML parser in go.mod).

Run: /usr/bin/python3 rfc7208-tests.py > rfc7208-tests.json
"""
import gzip, json, sys, yaml

SRC = "/usr/share/doc/python3-spf/rfc7208-tests.yml.gz"
out = []
for doc in yaml.safe_load_all(gzip.open(SRC)):
    zone = {}
    for name, recs in doc["zonedata"].items():
        rows = []
        for r in recs:
            if isinstance(r, str):
                rows.append({"type": r})
                continue
            for typ, val in r.items():
                if not isinstance(val, list):
                    val = [val]
                rows.append({"type": typ, "value": [str(v) for v in val]})
        zone[name] = rows
    tests = {}
    for name, t in doc["tests"].items():
        res = t["result"]
        tests[name] = {
            "spec": str(t.get("spec", "")),
            "helo": t["helo"],
            "host": t["host"],
            "mailfrom": t.get("mailfrom", ""),
            "result": res if isinstance(res, list) else [res],
            "explanation": t.get("explanation"),
        }
    out.append({"description": doc["description"], "zonedata": zone, "tests": tests})
json.dump(out, sys.stdout, indent=1, sort_keys=True, ensure_ascii=False)
sys.stdout.write("\n")
