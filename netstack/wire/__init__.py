"""Byte codecs of the netstack: each module parses one header (raising
netstack.core.Malformed, whose text names the drop counter) and builds it.
They hold no state; the layers above decide what a packet means."""
