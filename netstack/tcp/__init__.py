"""TCP (RFC 9293) for the netstack: the protocol handler a Stack
registers (protocol.TCPProtocol), the connection state machine
(connection.py) and the socket-facing endpoint (endpoint.TCPEndpoint).

    tcp = TCPProtocol(stack)          # registers itself with the stack
    ep = tcp.endpoint(AF_INET)        # or netstack.tcp.endpoint(stack, family)
"""
from .connection import (CLOSE_WAIT, CLOSED, CLOSING, ESTABLISHED, FIN_WAIT1,
                         FIN_WAIT2, LAST_ACK, LISTEN, STATE_NAMES, SYN_RECV,
                         SYN_SENT, TIME_WAIT, Connection)
from .endpoint import TCPEndpoint
from .protocol import TCPProtocol, endpoint

__all__ = ["TCPProtocol", "TCPEndpoint", "Connection", "endpoint", "STATE_NAMES",
           "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
           "TIME_WAIT", "CLOSED", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"]
