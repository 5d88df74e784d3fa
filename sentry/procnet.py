"""/proc/net files about the sandbox's interfaces, in Linux's formats:
dev, if_inet6, route, igmp, igmp6, dev_mcast, arp, snmp and netstat. They read the
same Device views and routing tables as rtnetlink and the interface
ioctls (sentry/netdevice.py, sentry/rtnetlink.py), so all agree.

The netstack keeps no per-interface or SNMP counters: those read 0, and
no neighbour entries are shown.
"""
from __future__ import annotations

from .netdevice import devices, netmask4

RTF_UP, RTF_GATEWAY = 0x1, 0x2
ROUTE_LINE = 127               # /proc/net/route pads every line to this width
ALL_HOSTS4 = bytes((224, 0, 0, 1))
ALL_NODES6, ALL_NODES6_NODE = bytes.fromhex("ff02" + "00" * 13 + "01"), bytes.fromhex("ff01" + "00" * 13 + "01")


def _stack(k):
    from .inet import stack_of
    return stack_of(k)


def _be32(addr: bytes) -> str:
    """A __be32 printed with %08X on a little-endian machine."""
    return "%08X" % int.from_bytes(addr, "little")


def render_dev(stack) -> bytes:
    """dev_seq_show."""
    lines = ["Inter-|   Receive                                                |  Transmit",
             " face |bytes    packets errs drop fifo frame compressed multicast|"
             "bytes    packets errs drop fifo colls carrier compressed"]
    for d in devices(stack):
        s = d.stat
        lines.append("%6s:%8d %7d %4d %4d %4d %5d %10d %9d %8d %7d %4d %4d %4d %5d %7d %10d" % (
            d.name.decode(errors="replace"), s("rx_bytes"), s("rx_packets"), s("rx_errors"),
            s("rx_dropped") + s("rx_missed_errors"), s("rx_fifo_errors"),
            s("rx_length_errors") + s("rx_over_errors") + s("rx_crc_errors") + s("rx_frame_errors"),
            s("rx_compressed"), s("multicast"), s("tx_bytes"), s("tx_packets"), s("tx_errors"),
            s("tx_dropped"), s("tx_fifo_errors"), s("collisions"),
            s("tx_carrier_errors") + s("tx_aborted_errors") + s("tx_window_errors") + s("tx_heartbeat_errors"),
            s("tx_compressed")))
    return "".join(line + "\n" for line in lines).encode()


def _scope6(addr: bytes) -> int:
    """ipv6_addr_scope's IFA_* value (loopback, link, global)."""
    if addr == bytes(15) + b"\x01":
        return 0x10
    if addr[0] == 0xFE and addr[1] & 0xC0 == 0x80:
        return 0x20
    return 0x00


def render_if_inet6(stack) -> bytes:
    out = []
    for d in devices(stack):
        for addr, plen in d.addrs6():
            out.append("%s %02x %02x %02x %02x %8s\n" % (addr.hex(), d.index, plen, _scope6(addr), 0x80,
                                                        d.name.decode(errors="replace")))
    return "".join(out).encode()


def render_route(stack) -> bytes:
    """fib_route_seq_show: the main table's IPv4 unicast routes."""
    # here, not at the top: procfs lists these files at every sandbox's start
    from .rtnetlink import AF_INET, RT_TABLE_MAIN, RTN_UNICAST, fib, tables
    lines = ["Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"]
    for e in tables(fib(stack), AF_INET):
        if e.table != RT_TABLE_MAIN or e.type != RTN_UNICAST:
            continue
        flags = RTF_UP | (RTF_GATEWAY if e.gateway is not None else 0)
        lines.append("%s\t%s\t%s\t%04X\t%d\t%u\t%d\t%s\t%d\t%u\t%u" % (
            e.dev.name.decode(errors="replace"), _be32(e.dst), _be32(e.gateway or bytes(4)), flags, 0, 0,
            e.priority or 0, _be32(netmask4(e.dst_len)), 0, 0, 0))
    return "".join(line.ljust(ROUTE_LINE) + "\n" for line in lines).encode()


def render_igmp(stack) -> bytes:
    """igmp_mc_seq_show: every interface is in the all-hosts group."""
    out = ["Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n"]
    for d in devices(stack):
        if not d.up:
            continue
        out.append("%d\t%-10s: %5d %7s\n" % (d.index, d.name.decode(errors="replace"), 1, "V3"))
        out.append("\t\t\t\t%s %5d %d:%08X\t\t%d\n" % (_be32(ALL_HOSTS4), 1, 0, 0, 0))
    return "".join(out).encode()


def _groups6(d) -> list[tuple[bytes, int]]:
    """The IPv6 groups an interface is in, newest first, with their MAF_*
    flags: the solicited-node group of each address (not on loopback),
    all-nodes link- and node-local."""
    if not d.up or not d.addrs6():
        return []
    out = []
    if not d.loopback:
        for addr, _ in reversed(d.addrs6()):
            out.append((bytes.fromhex("ff02" + "00" * 9 + "01ff") + addr[13:], 0x4))
    return out + [(ALL_NODES6, 0xC), (ALL_NODES6_NODE, 0x8)]


def render_igmp6(stack) -> bytes:
    out = []
    for d in devices(stack):
        for group, flags in _groups6(d):
            out.append("%-4d %-15s %s %5d %08X %d\n" % (d.index, d.name.decode(errors="replace"), group.hex(),
                                                       1, flags, 0))
    return "".join(out).encode()


def render_dev_mcast(stack) -> bytes:
    """dev_mc_seq_show: the link-layer groups of Ethernet interfaces."""
    out = []
    for d in devices(stack):
        if d.loopback or not d.up:
            continue
        macs = [bytes.fromhex("01005e000001")]
        macs += [b"\x33\x33" + g[12:] for g, _ in _groups6(d) if g[1] == 0x02]
        for mac in macs:
            out.append("%-4d %-15s %-5d %-5d %s\n" % (d.index, d.name.decode(errors="replace"), 1, 0, mac.hex()))
    return "".join(out).encode()


_SNMP = (
    ("Ip", "Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos "
           "InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout ReasmReqds ReasmOKs "
           "ReasmFails FragOKs FragFails FragCreates OutTransmits", {"Forwarding": 2, "DefaultTTL": 64}),
    ("Icmp", "InMsgs InErrors InCsumErrors InDestUnreachs InTimeExcds InParmProbs InSrcQuenchs InRedirects "
             "InEchos InEchoReps InTimestamps InTimestampReps InAddrMasks InAddrMaskReps OutMsgs OutErrors "
             "OutRateLimitGlobal OutRateLimitHost OutDestUnreachs OutTimeExcds OutParmProbs OutSrcQuenchs "
             "OutRedirects OutEchos OutEchoReps OutTimestamps OutTimestampReps OutAddrMasks OutAddrMaskReps", {}),
    ("Tcp", "RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab "
            "InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors",
     {"RtoAlgorithm": 1, "RtoMin": 200, "RtoMax": 120000, "MaxConn": -1}),
    ("Udp", "InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti "
            "MemErrors", {}),
    ("UdpLite", "InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti "
                "MemErrors", {}),
)


def render_snmp(stack) -> bytes:
    """snmp_seq_show's layout; the counters are not kept (0), the
    constants are Linux's (not forwarding, TTL 64, RTO bounds)."""
    out = []
    for proto, names, fixed in _SNMP:
        fields = names.split()
        out.append(f"{proto}: {names}\n")
        out.append(f"{proto}: " + " ".join(str(fixed.get(f, 0)) for f in fields) + "\n")
    return "".join(out).encode()


# netstat_seq_show's extended counters (Linux 6.18's names): none are kept
_NETSTAT = (
    ("TcpExt", (
        "SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts PruneCalled RcvPruned OfoPruned "
        "OutOfWindowIcmps LockDroppedIcmps ArpFilter TW TWRecycled TWKilled PAWSActive PAWSEstab "
        "BeyondWindow TSEcrRejected PAWSOldAck PAWSTimewait DelayedACKs DelayedACKLocked DelayedACKLost "
        "ListenOverflows ListenDrops TCPHPHits TCPPureAcks TCPHPAcks TCPRenoRecovery TCPSackRecovery "
        "TCPSACKReneging TCPSACKReorder TCPRenoReorder TCPTSReorder TCPFullUndo TCPPartialUndo "
        "TCPDSACKUndo TCPLossUndo TCPLostRetransmit TCPRenoFailures TCPSackFailures TCPLossFailures "
        "TCPFastRetrans TCPSlowStartRetrans TCPTimeouts TCPLossProbes TCPLossProbeRecovery "
        "TCPRenoRecoveryFail TCPSackRecoveryFail TCPRcvCollapsed TCPBacklogCoalesce TCPDSACKOldSent "
        "TCPDSACKOfoSent TCPDSACKRecv TCPDSACKOfoRecv TCPAbortOnData TCPAbortOnClose TCPAbortOnMemory "
        "TCPAbortOnTimeout TCPAbortOnLinger TCPAbortFailed TCPMemoryPressures TCPMemoryPressuresChrono "
        "TCPSACKDiscard TCPDSACKIgnoredOld TCPDSACKIgnoredNoUndo TCPSpuriousRTOs TCPMD5NotFound "
        "TCPMD5Unexpected TCPMD5Failure TCPSackShifted TCPSackMerged TCPSackShiftFallback TCPBacklogDrop "
        "PFMemallocDrop TCPMinTTLDrop TCPDeferAcceptDrop IPReversePathFilter TCPTimeWaitOverflow "
        "TCPReqQFullDoCookies TCPReqQFullDrop TCPRetransFail TCPRcvCoalesce TCPOFOQueue TCPOFODrop "
        "TCPOFOMerge TCPChallengeACK TCPSYNChallenge TCPFastOpenActive TCPFastOpenActiveFail "
        "TCPFastOpenPassive TCPFastOpenPassiveFail TCPFastOpenListenOverflow TCPFastOpenCookieReqd "
        "TCPFastOpenBlackhole TCPSpuriousRtxHostQueues BusyPollRxPackets TCPAutoCorking "
        "TCPFromZeroWindowAdv TCPToZeroWindowAdv TCPWantZeroWindowAdv TCPSynRetrans TCPOrigDataSent "
        "TCPHystartTrainDetect TCPHystartTrainCwnd TCPHystartDelayDetect TCPHystartDelayCwnd "
        "TCPACKSkippedSynRecv TCPACKSkippedPAWS TCPACKSkippedSeq TCPACKSkippedFinWait2 "
        "TCPACKSkippedTimeWait TCPACKSkippedChallenge TCPWinProbe TCPKeepAlive TCPMTUPFail TCPMTUPSuccess "
        "TCPDelivered TCPDeliveredCE TCPAckCompressed TCPZeroWindowDrop TCPRcvQDrop TCPWqueueTooBig "
        "TCPFastOpenPassiveAltKey TcpTimeoutRehash TcpDuplicateDataRehash TCPDSACKRecvSegs "
        "TCPDSACKIgnoredDubious TCPMigrateReqSuccess TCPMigrateReqFailure TCPPLBRehash TCPAORequired "
        "TCPAOBad TCPAOKeyNotFound TCPAOGood TCPAODroppedIcmps")),
    ("IpExt", (
        "InNoRoutes InTruncatedPkts InMcastPkts OutMcastPkts InBcastPkts OutBcastPkts InOctets OutOctets "
        "InMcastOctets OutMcastOctets InBcastOctets OutBcastOctets InCsumErrors InNoECTPkts InECT1Pkts "
        "InECT0Pkts InCEPkts ReasmOverlaps")),
    ("MPTcpExt", (
        "MPCapableSYNRX MPCapableSYNTX MPCapableSYNACKRX MPCapableACKRX MPCapableFallbackACK "
        "MPCapableFallbackSYNACK MPCapableSYNTXDrop MPCapableSYNTXDisabled MPCapableEndpAttempt "
        "MPFallbackTokenInit MPTCPRetrans MPJoinNoTokenFound MPJoinSynRx MPJoinSynBackupRx MPJoinSynAckRx "
        "MPJoinSynAckBackupRx MPJoinSynAckHMacFailure MPJoinAckRx MPJoinAckHMacFailure MPJoinRejected "
        "MPJoinSynTx MPJoinSynTxCreatSkErr MPJoinSynTxBindErr MPJoinSynTxConnectErr DSSNotMatching "
        "DSSCorruptionFallback DSSCorruptionReset InfiniteMapTx InfiniteMapRx DSSNoMatchTCP DataCsumErr "
        "OFOQueueTail OFOQueue OFOMerge NoDSSInWindow DuplicateData AddAddr AddAddrTx AddAddrTxDrop "
        "EchoAdd EchoAddTx EchoAddTxDrop PortAdd AddAddrDrop MPJoinPortSynRx MPJoinPortSynAckRx "
        "MPJoinPortAckRx MismatchPortSynRx MismatchPortAckRx RmAddr RmAddrDrop RmAddrTx RmAddrTxDrop "
        "RmSubflow MPPrioTx MPPrioRx MPFailTx MPFailRx MPFastcloseTx MPFastcloseRx MPRstTx MPRstRx "
        "SubflowStale SubflowRecover SndWndShared RcvWndShared RcvWndConflictUpdate RcvWndConflict "
        "MPCurrEstab Blackhole MPCapableDataFallback MD5SigFallback DssFallback SimultConnectFallback "
        "FallbackFailed WinProbe")),
)


def render_netstat(stack) -> bytes:
    out = []
    for proto, names in _NETSTAT:
        out.append(f"{proto}: {names}\n")
        out.append(f"{proto}:" + " 0" * len(names.split()) + "\n")
    return "".join(out).encode()


def render_arp(stack) -> bytes:
    """arp_seq_show: the header; neighbour entries are not shown (as
    RTM_GETNEIGH)."""
    return b"IP address       HW type     Flags       HW address            Mask     Device\n"


RENDERERS = {b"dev": render_dev, b"if_inet6": render_if_inet6, b"route": render_route,
             b"igmp": render_igmp, b"igmp6": render_igmp6, b"dev_mcast": render_dev_mcast,
             b"snmp": render_snmp, b"netstat": render_netstat, b"arp": render_arp}


def net_files(kernel_of) -> dict:
    """{name: generate()} for procfs; kernel_of() gives the kernel at read
    time (the proc source is made before it is bound)."""
    return {name: (lambda r=render: r(_stack(kernel_of()))) for name, render in RENDERERS.items()}
