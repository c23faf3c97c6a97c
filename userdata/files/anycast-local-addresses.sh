#!/bin/sh
# Write this unicast PoP's own global addresses (of the interface holding the default route) as NSD zone records
# for @ and www, so a client steered here by GeoDNS is answered with this PoP's address, not the anycast one.
set -eu
out=${1:-/etc/nsd/zones/local-addresses.inc}
tmp="$out.tmp"
: > "$tmp"
for fam in 4 6; do
  dev=$(ip -"$fam" route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit }}')
  [ -n "$dev" ] || continue
  addr=$(ip -"$fam" -o addr show dev "$dev" scope global | awk '{ split($4, a, "/"); print a[1]; exit }')
  [ -n "$addr" ] || continue
  if [ "$fam" = 4 ]; then type=A; else type=AAAA; fi
  printf '@ IN %s %s\nwww IN %s %s\n' "$type" "$addr" "$type" "$addr" >> "$tmp"
done
mv "$tmp" "$out"
