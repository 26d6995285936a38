"""Runs a plan of SQL statements on ClickHouse's engine in-process (chdb).

Usage: run.py PLAN.json

The plan (written by tests/modern_clickhouse.rs) is
    {"session": DIR, "out": DIR,
     "steps": [{"kind": "ddl" | "insert" | "query", "sql": TEXT,
                "data": FILE (insert), "settings": TEXT (insert, optional)}]}
Steps run in order in one chdb session kept in "session". An insert's
"sql" is an `INSERT INTO t(cols) FORMAT <format>` head; its rows, already
in that format, are read from "data" and streamed in as the client would
send them. A query's output, in TabSeparated, is written byte for byte to
out/<step index>.tsv. out/results.json holds the server's version and, per
step, null or the error ClickHouse gave; a failing step does not stop the
ones after it. Exits 0 unless the plan itself could not be run.
"""

import json
import os
import re
import sys
import time


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        plan = json.load(f)
    started = time.monotonic()
    from chdb import session  # imported late: it loads a 500 MB library

    out = plan["out"]
    os.makedirs(out, exist_ok=True)
    s = session.Session(plan["session"])
    version = s.query("SELECT version()", "TabSeparated").bytes().decode().strip()
    results = []
    for i, step in enumerate(plan["steps"]):
        try:
            if step["kind"] == "insert":
                head = re.match(r"(?s)(.*\S)\s+FORMAT\s+(\w+)\s*$", step["sql"])
                if head is None:
                    raise ValueError("an insert head ends with FORMAT <format>")
                sql, fmt = head.group(1), head.group(2)
                if step.get("settings"):
                    sql += " SETTINGS " + step["settings"]
                with open(step["data"], "rb") as f:
                    data = f.read()
                inserter = s.send_insert(sql, fmt)
                inserter.append(data)
                inserter.finish()
            else:
                result = s.query(step["sql"], "TabSeparated")
                if step["kind"] == "query":
                    with open(os.path.join(out, f"{i}.tsv"), "wb") as f:
                        f.write(result.bytes())
            results.append(None)
        except Exception as e:  # ClickHouse's refusal is the result
            results.append(str(e) or type(e).__name__)
    s.close()
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "version": version,
                "seconds": round(time.monotonic() - started, 3),
                "errors": results,
            },
            f,
        )


if __name__ == "__main__":
    main()
