"""Remote functions: StateFun SDK applications served over HTTP, called with StateFun's
request-reply protocol (docs/architecture.md, "Remote functions").

- ``protocol``: encode a batch, decode a reply, the per-type state registry.
- ``batcher``: per address at most one request in flight; the rest queue as the next batch.
- ``transport``: the async HTTP client in one background thread, with retries and limits.

Nothing here touches Kafka or the state store: the runtime reads state, builds batches with
these pieces, and applies the decoded effects inside its transaction.
"""

from kstatefun.remote.batcher import AddressBatcher, Batch, BatchItem
from kstatefun.remote.protocol import (
    DelayedCancel,
    DelayedSend,
    EgressRecord,
    ExpireMode,
    MalformedReplyError,
    MissingStates,
    OutgoingMessage,
    RemoteProtocolError,
    RemoteResult,
    RemoteStateRegistry,
    StateMutation,
    StateRegistrationError,
    StateSpec,
    StateTypeConflictError,
    StateValue,
    decode_reply,
    encode_batch,
)
from kstatefun.remote.transport import (
    CallBudgetExceeded,
    CallProgress,
    Completion,
    PermanentCallError,
    RemoteCallError,
    RemoteTransport,
    RetryPolicy,
    build_ssl_context,
)

__all__ = [
    "AddressBatcher",
    "Batch",
    "BatchItem",
    "CallBudgetExceeded",
    "CallProgress",
    "Completion",
    "DelayedCancel",
    "DelayedSend",
    "EgressRecord",
    "ExpireMode",
    "MalformedReplyError",
    "MissingStates",
    "OutgoingMessage",
    "PermanentCallError",
    "RemoteCallError",
    "RemoteProtocolError",
    "RemoteResult",
    "RemoteStateRegistry",
    "RemoteTransport",
    "RetryPolicy",
    "StateMutation",
    "StateRegistrationError",
    "StateSpec",
    "StateTypeConflictError",
    "StateValue",
    "build_ssl_context",
    "decode_reply",
    "encode_batch",
]
