"""The stack's multicast DNS responder, asked by other implementations on the kernel peer:
python-zeroconf (browsing, service info, a service instance it already holds) and a
one-shot query built and read with dnspython."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
import scapy.all as scapy

import mipfast

STACK_IP = "10.77.0.2"
STACK_CIDR = f"{STACK_IP}/24"
SERVICE = ("Lab dashboard", "_http._tcp", 8080, {"path": "/", "model": "lab"})

ZEROCONF_PEER = """
import json, socket, sys, threading
from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, Zeroconf

peer_ip, mode = sys.argv[1], sys.argv[2]
zc = Zeroconf(interfaces=[peer_ip], ip_version=IPVersion.V4Only)
kind = "_http._tcp.local."
if mode == "hold":  # a host that already holds the instance name
    zc.register_service(ServiceInfo(
        kind, "Lab dashboard." + kind, addresses=[socket.inet_aton(peer_ip)], port=9999,
        server="peerhost.local.",
    ))
    print("registered", flush=True)
    sys.stdin.read()
    zc.close()
    sys.exit()
found, seen = threading.Event(), []
class Listener:
    def add_service(self, zc, type_, name):
        seen.append(name)
        found.set()
    def update_service(self, zc, type_, name):
        pass
    def remove_service(self, zc, type_, name):
        pass
browser = ServiceBrowser(zc, kind, Listener())
found.wait(10)
info = zc.get_service_info(kind, seen[0], timeout=5000) if seen else None
print(json.dumps({
    "browsed": seen,
    "server": info and info.server,
    "port": info and info.port,
    "addresses": info and info.parsed_addresses(),
    "txt": info and {k.decode(): v.decode() for k, v in info.properties.items()},
}), flush=True)
zc.close()
"""

ONE_SHOT_PEER = """
import json, socket, sys
import dns.message, dns.rdatatype

peer_ip, names = sys.argv[1], sys.argv[2:]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(peer_ip))
s.bind((peer_ip, 0))
s.settimeout(5)
out = []
for name in names:
    rdtype = dns.rdatatype.PTR if name.endswith(".arpa") or name.startswith("_") else dns.rdatatype.A
    if name.startswith("AAAA:"):
        name, rdtype = name[5:], dns.rdatatype.AAAA
    q = dns.message.make_query(name, rdtype)
    s.sendto(q.to_wire(), ("224.0.0.251", 5353))
    data, src = s.recvfrom(9000)
    r = dns.message.from_wire(data)
    out.append({
        "from": list(src), "id_matches": r.id == q.id, "question": [str(x.name) for x in r.question],
        "answers": [(str(a.name), a.ttl, [x.to_text() for x in a]) for a in r.answer],
    })
print(json.dumps(out), flush=True)
"""


def peer(lab, script: str, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        lab.ns(sys.executable, "-c", script, *args),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate, timeout: float = 10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def test_the_stack_is_found_by_name_and_its_service_browsed(lab, tmp_path):
    """zeroconf on the kernel peer browses the stack's service and reads its SRV, TXT and
    address; a one-shot query (from an ordinary port) gets a unicast answer with its ID;
    closing the stack says goodbye."""
    service = ("Lab café", *SERVICE[1:])  # names are UTF-8 (RFC 6762 §16)
    trace = tmp_path / "mdns.pcap"
    stack = mipfast.Stack(lab.iface, ip=STACK_CIDR, mdns="labmip", services=[service], pcap_out=trace)
    with stack:
        assert wait_for(lambda: stack.mdns_name) == "labmip.local"
        assert stack.stats()["mdns"] == "labmip.local"
        assert stack.mdns_services == ["Lab café._http._tcp.local"]
        # The name stands for the stack's IPv6 address too (RFC 6762 §6.2), once it has one.
        ours6 = wait_for(lambda: stack.ipv6_addresses)
        time.sleep(1.5)  # its announcement, which caches take, has gone out
        browse = peer(lab, ZEROCONF_PEER, lab.peer_ip, "browse")
        out, err = browse.communicate(timeout=30)
        found = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        assert found == {
            "browsed": ["Lab café._http._tcp.local."],
            "server": "labmip.local.",
            "port": 8080,
            "addresses": [STACK_IP, *ours6],
            "txt": {"path": "/", "model": "lab"},
        }, err
        reverse = ".".join(reversed(STACK_IP.split("."))) + ".in-addr.arpa"
        one_shot = peer(lab, ONE_SHOT_PEER, lab.peer_ip, "LabMip.local", reverse)
        out, err = one_shot.communicate(timeout=30)
        assert one_shot.returncode == 0, err
        by_name, by_address = json.loads(out)
        assert by_name["from"] == [STACK_IP, 5353] and by_name["id_matches"]
        assert by_name["question"] == ["LabMip.local."]
        assert by_name["answers"] == [["labmip.local.", 10, [STACK_IP]]]  # §6.7: TTL at most 10
        assert by_address["answers"] == [[reverse + ".", 10, ["labmip.local."]]]
        one_shot = peer(lab, ONE_SHOT_PEER, lab.peer_ip, "AAAA:labmip.local")
        out, err = one_shot.communicate(timeout=30)
        assert json.loads(out)[0]["answers"] == [["labmip.local.", 10, ours6]], err
        assert stack.counters["drop_mdns_malformed"] == 0
        # A service announced while running: probed for, then answered for; withdrawn again.
        stack.mdns_advertise("Lab printer", "_ipp._tcp", 631, {"rp": "lab"})
        assert wait_for(lambda: "Lab printer._ipp._tcp.local" in stack.mdns_services)
        one_shot = peer(lab, ONE_SHOT_PEER, lab.peer_ip, "_ipp._tcp.local")
        out, err = one_shot.communicate(timeout=30)
        printer = "Lab\\032printer._ipp._tcp.local."  # (dnspython's text for a space)
        assert json.loads(out)[0]["answers"] == [["_ipp._tcp.local.", 10, [printer]]], err
        with pytest.raises(ValueError, match="already"):
            stack.mdns_advertise("Lab printer", "_ipp._tcp", 631)
        with pytest.raises(TypeError, match="port"):
            stack.mdns_advertise("Other", "_ipp._tcp", "631")
        stack.mdns_withdraw("lab printer", "_ipp._tcp")
        assert stack.mdns_services == ["Lab café._http._tcp.local"]
        with pytest.raises(ValueError, match="no _ipp._tcp service"):
            stack.mdns_withdraw("Lab printer", "_ipp._tcp")
    # The last thing sent: every record with TTL 0, to the group, IP TTL 255 (§10.1, §11).
    sent = [f for f in scapy.rdpcap(str(trace)) if f.haslayer(scapy.UDP) and f[scapy.IP].src == STACK_IP]
    goodbye = sent[-1]
    assert (goodbye[scapy.IP].dst, goodbye[scapy.IP].ttl, goodbye[scapy.UDP].sport) == (
        "224.0.0.251",
        255,
        5353,
    )
    records = [goodbye[scapy.DNS].an[i] for i in range(goodbye[scapy.DNS].ancount)]
    assert len(records) == 7 and {r.ttl for r in records} == {0}  # the AAAA record among them


def test_a_service_name_another_host_holds_is_taken_with_a_number(lab):
    """zeroconf on the peer holds "Lab dashboard" first: the stack's probe meets its answer
    (RFC 6762 §9) and the stack announces "Lab dashboard (2)" instead; its host name, not
    held by anyone, stays."""
    holder = peer(lab, ZEROCONF_PEER, lab.peer_ip, "hold", stdin=subprocess.PIPE)
    try:
        assert "registered" in holder.stdout.readline(), holder.stderr.read()
        with mipfast.Stack(lab.iface, ip=STACK_CIDR, mdns="labmip", services=[SERVICE]) as stack:
            assert wait_for(lambda: stack.mdns_services, timeout=15) == ["Lab dashboard (2)._http._tcp.local"]
            assert stack.mdns_name == "labmip.local"
            # .local names are asked of the link (one-shot queries, §5.1): zeroconf answers
            # for its host; a name nobody holds is EAI_NONAME after 7 s, as nss-mdns has it.
            assert stack.resolve("PeerHost.local") == [lab.peer_ip]
            started = time.monotonic()
            with pytest.raises(socket.gaierror) as e:
                stack.resolve("nobody-here.local")
            assert e.value.errno == socket.EAI_NONAME and 6 < time.monotonic() - started < 10
    finally:
        holder.communicate(input="", timeout=15)
    assert holder.returncode == 0


def test_mdns_arguments_are_checked(lab):
    with pytest.raises(ValueError, match="one label"):
        mipfast.Stack(lab.iface, ip=STACK_CIDR, mdns="two.labels")
    with pytest.raises(ValueError, match="give mdns"):
        mipfast.Stack(lab.iface, ip=STACK_CIDR, services=[SERVICE])
    with pytest.raises(ValueError, match="_http._tcp"):
        mipfast.Stack(lab.iface, ip=STACK_CIDR, mdns="x", services=[("x", "http", 80)])
    with pytest.raises(TypeError, match="instance, type, port"):
        mipfast.Stack(lab.iface, ip=STACK_CIDR, mdns="x", services=["x"])
