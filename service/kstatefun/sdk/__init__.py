"""The user-facing SDK: what a function body imports (re-exported by ``kstatefun``).

One concept per module, as in StateFun's Python SDK: ``types`` (value types), ``functions``
(ValueSpec and registration), ``storage``, ``messages`` (messages and builders), ``context``.
"""
