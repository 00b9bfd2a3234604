"""Releasing a named worker's group membership: the two group requests librdkafka and
confluent-kafka do not offer, sent by kstatefun itself over Kafka's protocol.

A named worker is a static member of its KIP-848 group (``group.instance.id`` = its instance
id). librdkafka's static members always leave with member epoch -2 ("back soon"): the group
keeps the member and its partitions for the group's session timeout (Kafka's default 45 s)
so that a restart finds them again. Two cases then wait for that timeout for nothing:

* **Scale-in**: a worker stopped for good. Its partitions move to the others only when its
  session ends. :func:`remove_static_members` removes it at once (a LeaveGroup by
  ``group.instance.id``, what Kafka's Java admin client sends for
  ``removeMembersFromConsumerGroup``; Kafka 4.x applies it to KIP-848 groups too).
* **Restart after kill -9**: the killed member never left, and the group refuses a new member
  with the same instance id (UNRELEASED_INSTANCE_ID) until the killed one's session ends.
  :func:`release_static_member` sends the heartbeat the killed member would have sent on a
  clean stop (epoch -2, its member id from DescribeConsumerGroups), so the restarted worker
  is admitted at once and takes the same partitions without a rebalance.

Both requests go to the group's coordinator (FindCoordinator) on one connection of our own,
with the client's security settings: PLAINTEXT, SSL and SASL (PLAIN, SCRAM-SHA-256/512) over
either. Another mechanism (GSSAPI, OAUTHBEARER) raises :class:`Unsupported`; the caller then
waits for the session as before. Wire formats: Kafka's message JSON files
(clients/src/main/resources/common/message), flexible versions only where the broker has had
them since 3.0, ConsumerGroupHeartbeat v0 (Kafka 4.0).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import socket
import ssl
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from kstatefun.wire.protobuf import _varint as _uvarint  # Kafka's unsigned varint is protobuf's

log = logging.getLogger(__name__)

# Kafka API keys and the versions sent
_LEAVE_GROUP: Final = (13, 5)
_FIND_COORDINATOR: Final = (10, 4)
_SASL_HANDSHAKE: Final = (17, 1)
_SASL_AUTHENTICATE: Final = (36, 2)
_CONSUMER_GROUP_HEARTBEAT: Final = (68, 0)
# which of those use the flexible (tagged-field) headers
_FLEXIBLE: Final = {13, 10, 36, 68}

# the member epochs of a ConsumerGroupHeartbeat that leaves: for good, and "back soon"
LEAVE_EPOCH: Final = -1
STATIC_LEAVE_EPOCH: Final = -2

CLIENT_ID: Final = "kstatefun-membership"
DEFAULT_TIMEOUT_S: Final = 10.0
# each request of a starting worker's release: bounded tighter, since the start waits for it
# (a coordinator that does not answer costs a few of these; the join then waits as before)
RELEASE_TIMEOUT_S: Final = 5.0

# Kafka error codes this module names in its messages
_ERRORS: Final = {
    14: "COORDINATOR_LOAD_IN_PROGRESS",
    15: "COORDINATOR_NOT_AVAILABLE",
    16: "NOT_COORDINATOR",
    25: "UNKNOWN_MEMBER_ID",
    30: "GROUP_AUTHORIZATION_FAILED",
    58: "SASL_AUTHENTICATION_FAILED",
    69: "GROUP_ID_NOT_FOUND",
    82: "FENCED_INSTANCE_ID",
    110: "FENCED_MEMBER_EPOCH",
    111: "UNRELEASED_INSTANCE_ID",
}


class MembershipError(Exception):
    """A group request failed: the broker's error, or no answer in time."""


class Unsupported(MembershipError):
    """The client's security settings name something this module does not speak."""


def error_name(code: int) -> str:
    return _ERRORS.get(code, f"error code {code}")


# --- encoding ------------------------------------------------------------------------------


def _compact_str(s: str | None) -> bytes:
    if s is None:
        return _uvarint(0)
    raw = s.encode()
    return _uvarint(len(raw) + 1) + raw


def _compact_bytes(b: bytes) -> bytes:
    return _uvarint(len(b) + 1) + b


def _str16(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


_NO_TAGS: Final = b"\x00"


class _Reader:
    """Reads one response body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise MembershipError("a malformed response from the broker (too short)")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def int8(self) -> int:
        return int(struct.unpack(">b", self.take(1))[0])

    def int16(self) -> int:
        return int(struct.unpack(">h", self.take(2))[0])

    def int32(self) -> int:
        return int(struct.unpack(">i", self.take(4))[0])

    def int64(self) -> int:
        return int(struct.unpack(">q", self.take(8))[0])

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def compact_str(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def compact_bytes(self) -> bytes:
        n = self.uvarint()
        return b"" if n == 0 else self.take(n - 1)

    def str16(self) -> str | None:
        n = self.int16()
        return None if n < 0 else self.take(n).decode()

    def tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


# --- one connection ------------------------------------------------------------------------


@dataclass(frozen=True)
class Security:
    """What a connection needs of the client's librdkafka properties."""

    protocol: str = "PLAINTEXT"
    mechanism: str = "PLAIN"
    username: str = ""
    password: str = ""
    ca_location: str | None = None
    certificate_location: str | None = None
    key_location: str | None = None
    key_password: str | None = None
    check_hostname: bool = True

    @classmethod
    def from_config(cls, conf: Mapping[str, Any]) -> Security:
        protocol = str(conf.get("security.protocol", "plaintext")).upper()
        if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            raise Unsupported(f"security.protocol {protocol!r}")
        mechanism = str(conf.get("sasl.mechanism", conf.get("sasl.mechanisms", "GSSAPI")))
        if protocol.startswith("SASL") and mechanism.upper() not in (
            "PLAIN",
            "SCRAM-SHA-256",
            "SCRAM-SHA-512",
        ):
            raise Unsupported(f"sasl.mechanism {mechanism!r}")
        algorithm = str(conf.get("ssl.endpoint.identification.algorithm", "https")).lower()
        return cls(
            protocol=protocol,
            mechanism=mechanism.upper(),
            username=str(conf.get("sasl.username", "")),
            password=str(conf.get("sasl.password", "")),
            ca_location=conf.get("ssl.ca.location"),
            certificate_location=conf.get("ssl.certificate.location"),
            key_location=conf.get("ssl.key.location"),
            key_password=conf.get("ssl.key.password"),
            check_hostname=algorithm == "https",
        )


class _Connection:
    """One blocking connection to one broker: requests one at a time."""

    def __init__(self, host: str, port: int, security: Security, timeout_s: float) -> None:
        self._correlation = 0
        sock = socket.create_connection((host, port), timeout=timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if security.protocol.endswith("SSL"):
                sock = _tls_context(security).wrap_socket(sock, server_hostname=host)
            self._sock = sock
            if security.protocol.startswith("SASL"):
                self._authenticate(security)
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, api: tuple[int, int], body: bytes) -> _Reader:
        key, version = api
        self._correlation += 1
        header = struct.pack(">hhi", key, version, self._correlation) + _str16(CLIENT_ID)
        if key in _FLEXIBLE:
            header += _NO_TAGS
        frame = header + body
        self._sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", self._read(4))[0]
        reader = _Reader(self._read(size))
        if reader.int32() != self._correlation:
            raise MembershipError("a response to another request (correlation id)")
        if key in _FLEXIBLE:
            reader.tags()
        return reader

    def _read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self._sock.recv(n - len(out))
            if not chunk:
                raise MembershipError("the broker closed the connection")
            out += chunk
        return bytes(out)

    def _authenticate(self, security: Security) -> None:
        r = self.request(_SASL_HANDSHAKE, _str16(security.mechanism))
        code = r.int16()
        if code != 0:
            raise MembershipError(
                f"the broker refused SASL mechanism {security.mechanism} ({error_name(code)})"
            )
        if security.mechanism == "PLAIN":
            self._sasl_step(f"\0{security.username}\0{security.password}".encode())
            return
        _scram(self, security)

    def _sasl_step(self, token: bytes) -> bytes:
        r = self.request(_SASL_AUTHENTICATE, _compact_bytes(token) + _NO_TAGS)
        code = r.int16()
        message = r.compact_str()
        if code != 0:
            raise MembershipError(f"SASL authentication failed: {message or error_name(code)}")
        return r.compact_bytes()


def _tls_context(security: Security) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=security.ca_location)
    context.check_hostname = security.check_hostname
    if security.certificate_location:
        context.load_cert_chain(
            security.certificate_location, security.key_location, security.key_password
        )
    return context


class Scram:
    """The client side of RFC 5802 (SCRAM) without channel binding, as Kafka's
    SCRAM-SHA-256/512 expect: :meth:`first`, then :meth:`final` with the server's first
    message, then :meth:`check` with its last."""

    def __init__(self, mechanism: str, username: str, password: str, nonce: str) -> None:
        self._digest = "sha256" if mechanism.upper() == "SCRAM-SHA-256" else "sha512"
        user = username.replace("=", "=3D").replace(",", "=2C")
        self._password = password
        self._nonce = nonce
        self._first_bare = f"n={user},r={nonce}"
        self._server_signature = b""

    def first(self) -> bytes:
        return f"n,,{self._first_bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode()
        fields = dict(part.split("=", 1) for part in text.split(","))
        if not fields.get("r", "").startswith(self._nonce):
            raise MembershipError("SCRAM: the broker's nonce does not extend ours")
        digest = self._digest
        salted = hashlib.pbkdf2_hmac(
            digest, self._password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
        )
        client_key = hmac.digest(salted, b"Client Key", digest)
        final_bare = f"c=biws,r={fields['r']}"
        auth_message = f"{self._first_bare},{text},{final_bare}".encode()
        signature = hmac.digest(hashlib.new(digest, client_key).digest(), auth_message, digest)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", digest)
        self._server_signature = hmac.digest(server_key, auth_message, digest)
        return f"{final_bare},p={base64.b64encode(proof).decode()}".encode()

    def check(self, server_final: bytes) -> None:
        expected = b"v=" + base64.b64encode(self._server_signature)
        if not self._server_signature or not hmac.compare_digest(server_final, expected):
            raise MembershipError("SCRAM: the broker's signature does not match")


def _scram(conn: _Connection, security: Security) -> None:
    nonce = base64.b64encode(os.urandom(24)).decode()
    scram = Scram(security.mechanism, security.username, security.password, nonce)
    scram.check(conn._sasl_step(scram.final(conn._sasl_step(scram.first()))))


# --- the group requests --------------------------------------------------------------------


def _bootstrap_addresses(servers: str) -> list[tuple[str, int]]:
    out = []
    for entry in servers.split(","):
        entry = entry.strip().rsplit("://", 1)[-1]
        if not entry:
            continue
        host, _, port = entry.rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out


def _connect_any(conf: Mapping[str, Any], timeout_s: float) -> _Connection:
    security = Security.from_config(conf)
    errors = []
    for host, port in _bootstrap_addresses(str(conf["bootstrap.servers"])):
        try:
            return _Connection(host, port, security, timeout_s)
        except (OSError, MembershipError) as e:
            errors.append(f"{host}:{port}: {e}")
    raise MembershipError("no bootstrap server answered: " + "; ".join(errors))


def _ask_coordinator(
    conf: Mapping[str, Any], group: str, api: tuple[int, int], body: bytes, timeout_s: float
) -> _Reader:
    """Send one request to ``group``'s coordinator; its answer. Network failures (refused,
    reset, timed out, TLS) raise MembershipError too."""
    try:
        with _coordinator(conf, group, timeout_s) as conn:
            return conn.request(api, body)
    except OSError as e:
        raise MembershipError(f"the coordinator of group {group!r} did not answer: {e}") from e


def _coordinator(conf: Mapping[str, Any], group: str, timeout_s: float) -> _Connection:
    """A connection to ``group``'s coordinator (FindCoordinator v4, key type 0 = group)."""
    with _connect_any(conf, timeout_s) as conn:
        body = struct.pack(">b", 0) + _uvarint(2) + _compact_str(group) + _NO_TAGS
        r = conn.request(_FIND_COORDINATOR, body)
        r.int32()  # throttle
        if r.uvarint() != 2:
            raise MembershipError("FindCoordinator: not one coordinator in the answer")
        r.compact_str()
        r.int32()  # node id
        host = r.compact_str() or ""
        port = r.int32()
        code = r.int16()
        message = r.compact_str()
        if code != 0:
            raise MembershipError(
                f"the coordinator of group {group!r} is unknown: {message or error_name(code)}"
            )
    return _Connection(host, port, Security.from_config(conf), timeout_s)


def release_static_member(
    conf: Mapping[str, Any],
    group: str,
    instance_id: str,
    member_id: str,
    epoch: int = STATIC_LEAVE_EPOCH,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Send, for the static member ``member_id`` of ``group`` with ``instance_id``, the
    ConsumerGroupHeartbeat of a member that leaves: ``epoch`` -2 keeps its partitions for a
    member with the same instance id (what librdkafka sends on close), -1 removes it.
    ``conf``: the client's librdkafka properties (``bootstrap.servers`` and security)."""
    body = (
        _compact_str(group)
        + _compact_str(member_id)
        + struct.pack(">i", epoch)
        + _compact_str(instance_id)
        + _compact_str(None)  # rack
        + struct.pack(">i", -1)  # rebalance timeout: unchanged
        + _compact_str(None)  # subscribed topics: null (compact nullable array)
        + _compact_str(None)  # server assignor
        + _compact_str(None)  # owned partitions: null
        + _NO_TAGS
    )
    r = _ask_coordinator(conf, group, _CONSUMER_GROUP_HEARTBEAT, body, timeout_s)
    r.int32()  # throttle
    code = r.int16()
    message = r.compact_str()
    if code != 0:
        raise MembershipError(
            f"group {group!r} did not release member {instance_id!r}: {message or error_name(code)}"
        )


def remove_static_members(
    conf: Mapping[str, Any],
    group: str,
    instance_ids: Iterable[str],
    reason: str = "removed by kstatefun",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[str, str | None]:
    """Remove the static members of ``group`` with these instance ids at once (LeaveGroup v5
    by ``group.instance.id``); their partitions go to the other members. Returns each instance
    id's outcome: None when removed, else the broker's error name (UNKNOWN_MEMBER_ID: not a
    member, e.g. already gone)."""
    ids = list(instance_ids)
    members = b"".join(
        _compact_str("") + _compact_str(i) + _compact_str(reason) + _NO_TAGS for i in ids
    )
    body = _compact_str(group) + _uvarint(len(ids) + 1) + members + _NO_TAGS
    r = _ask_coordinator(conf, group, _LEAVE_GROUP, body, timeout_s)
    r.int32()  # throttle
    code = r.int16()
    outcome: dict[str, str | None] = {}
    for _ in range(r.uvarint() - 1):
        r.compact_str()
        instance = r.compact_str() or ""
        member_code = r.int16()
        r.tags()
        outcome[instance] = None if member_code == 0 else error_name(member_code)
    if code != 0 and not outcome:
        raise MembershipError(f"group {group!r} refused to remove members: {error_name(code)}")
    return outcome


def static_member_id(admin: Any, group: str, instance_id: str, timeout_s: float) -> str | None:
    """The member id of ``group``'s member with ``instance_id`` (DescribeConsumerGroups), or
    None when it has none (a new group, a member that left for good)."""
    description = admin.describe_consumer_groups([group], request_timeout=timeout_s)[group]
    for member in description.result(timeout_s).members:
        if member.group_instance_id == instance_id:
            return str(member.member_id)
    return None


def release_predecessor(
    admin: Any,
    conf: Mapping[str, Any],
    group: str,
    instance_id: str,
    timeout_s: float = RELEASE_TIMEOUT_S,
) -> bool:
    """Before a static member with ``instance_id`` joins ``group``: mark its predecessor
    (a worker killed without leaving) as left with epoch -2, so that the group admits the new
    member at once with the same partitions instead of refusing it until the predecessor's
    session ends. The caller must already have fenced the predecessor's transactions (its
    ``init_transactions``): a predecessor still running then stops anyway. True when a member
    was released; best effort (False after logging why): the join then waits as before."""
    try:
        member_id = static_member_id(admin, group, instance_id, timeout_s)
        if member_id is None:
            return False
        release_static_member(conf, group, instance_id, member_id, STATIC_LEAVE_EPOCH, timeout_s)
    except Exception as e:  # noqa: BLE001 - best effort: the group's session ends it anyway
        log.info(
            "could not release the previous member of this instance id (a restart after "
            "kill -9 then waits for its session) group=%s instance=%s error=%s",
            group,
            instance_id,
            e,
        )
        return False
    log.info(
        "released the previous member of this instance id, so the group admits this one "
        "at once group=%s instance=%s member_id=%s",
        group,
        instance_id,
        member_id,
    )
    return True
