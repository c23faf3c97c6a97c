"""`make bench`: run every benchmark module that is present and print one table of figures."""

from __future__ import annotations

import importlib
import sys

MODULES = ("bench.render", "bench.program", "bench.lab", "bench.health", "bench.machines", "bench.rollout",
           "bench.hardening")


def main() -> int:
    rows: list[tuple[str, float, str]] = []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += module.run()
    width = max(len(r[0]) for r in rows)
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:10.3f}  {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
