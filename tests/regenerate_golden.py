"""Rewrite the golden files of the dev stack: `make golden`, then review the change with `git diff tests/golden`."""

from __future__ import annotations

import shutil
from pathlib import Path

from infra.cli.render import write_rendered
from infra.model.stack import load_network
from tests.conftest import TEST_PASSWORD
from tests.dnssec_data import ENV, NOW, signed_network
from userdata.dnssec import signing_from_env
from userdata.render import render_pop, zone_file_name

GOLDEN = Path(__file__).resolve().parent / "golden" / "dev"
SIGNED = GOLDEN.parent / "dnssec"


def main() -> None:
    if GOLDEN.exists():
        shutil.rmtree(GOLDEN)
    count = write_rendered(load_network("dev"), TEST_PASSWORD, GOLDEN)
    for path in GOLDEN.rglob("*"):
        if path.is_file():
            path.chmod(0o644)  # the real password never lands here; keep the files ordinary in git
    print(f"wrote {count} golden files under {GOLDEN}")
    # The signed zone (the lab key, a fixed time): docs/dnssec.md; the dev stack itself is unsigned.
    signed = signed_network()
    zone = SIGNED / "ams" / zone_file_name(signed)
    zone.parent.mkdir(parents=True, exist_ok=True)
    zone.write_text(render_pop(signed, signed.pop("ams"), TEST_PASSWORD, signing=signing_from_env(signed, ENV, NOW))
                    .files[zone.name], encoding="utf-8")
    print(f"wrote {zone}")


if __name__ == "__main__":
    main()
