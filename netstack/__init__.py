"""pyrunsc's own TCP/IP stack: link endpoints (loopback, tap), Ethernet and
ARP, IPv4/IPv6, ICMP, UDP and TCP, and the endpoints sockets are made of.
Pure Python; knows nothing of the sentry (see docs/netstack.md)."""
