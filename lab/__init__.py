"""The anycast lab: the rendered network booted in network namespaces with real BIRD, NSD, Caddy and GoBGP."""
