"""Link endpoints (docs/netstack.md, "Link API"): loopback, Ethernet over a
tap device."""
