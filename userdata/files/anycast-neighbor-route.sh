#!/bin/sh
# bgp.ipv6NeighborRoute: auto (docs/deploy.md). Usage: anycast-neighbor-route NEIGHBOUR. Waits up to 60 s for an
# IPv6 default route with a gateway (the RA one first), routes NEIGHBOUR/128 via it; never fails the boot.
set -u
neighbor="$1"
tries="${ANYCAST_NEIGHBOR_ROUTE_TRIES:-60}"
while [ "$tries" -gt 0 ]; do
    route="$(ip -6 route show default proto ra | head -n 1)"
    [ -n "$route" ] || route="$(ip -6 route show default | head -n 1)"
    gw=""
    dev=""
    set -- $route
    while [ "$#" -gt 1 ]; do
        case "$1" in
            via) gw="$2" ;;
            dev) dev="$2" ;;
        esac
        shift
    done
    if [ -n "$gw" ] && [ -n "$dev" ]; then
        ip -6 route replace "$neighbor/128" via "$gw" dev "$dev" proto static || exit 0
        echo "anycast-neighbor-route: $neighbor/128 via $gw dev $dev"
        exit 0
    fi
    tries=$((tries - 1))
    sleep 1
done
echo "anycast-neighbor-route: no IPv6 default router in time; $neighbor stays on the default route" >&2
exit 0
