"""Reminders: delayed messages with a cancellation token, and a session state that expires.

``example/reminder`` (one instance per user id) reads ``example/ReminderRequest`` JSON:

- ``{"remind": "standup", "after_s": 600}``: in 600 s, write ``ann: standup (#2 this session)``
  to the egress topic ``reminders-due``. The reminder's name is its cancellation token, so
  setting a reminder whose name is still pending is refused: the invocation becomes a dead
  letter (``duplicate-cancellation-token``) and changes nothing. Add ``"replace": true`` to
  cancel the pending one first.
- ``{"cancel": "standup"}``: the reminder will not fire. Cancelling a reminder that is unknown
  or has already fired does nothing.

The ``session`` value counts the reminders set; it expires 30 minutes after it was last written
(``expire_after_write``), so a user who comes back later starts again at #1.

Its module (``MODULE_YAML``) routes ``reminder-requests`` (key = user id) to the function.
``tests/unit/testing/test_harness_reminder.py`` runs it on the harness's virtual clock; the
worker runs it unchanged (docs/module-yaml.md has its module.yaml).
"""

from datetime import timedelta

from kstatefun import (
    StatefulFunctions,
    ValueSpec,
    kafka_egress_message,
    make_json_type,
    message_builder,
)

REQUEST = make_json_type("example/ReminderRequest")
DUE = make_json_type("example/ReminderDue")
SESSION = make_json_type("example/ReminderSession")

SESSION_TTL = timedelta(minutes=30)

MODULE_YAML = """\
kind: io.statefun.kafka.v1/ingress
spec:
  id: example/reminder-requests
  topics:
    - topic: reminder-requests
      valueType: example/ReminderRequest
      targets:
        - example/reminder
---
kind: io.statefun.kafka.v1/egress
spec:
  id: example/reminders
---
kind: io.kstatefun.v1/embedded
spec:
  functions:
    - examples.reminder:functions
"""

functions = StatefulFunctions()


@functions.bind(
    "example/reminder",
    specs=[ValueSpec("session", SESSION, expire_after_write=SESSION_TTL)],
)
def reminder(context, message):
    if message.is_type(DUE):
        due = message.as_type(DUE)
        context.send_egress(
            kafka_egress_message(
                typename="example/reminders",
                topic="reminders-due",
                key=context.address.id,
                value=f"{context.address.id}: {due['name']} (#{due['number']} this session)",
            )
        )
        return
    request = message.as_type(REQUEST)
    if "cancel" in request:
        context.cancel_delayed_message(request["cancel"])
        return
    name = request["remind"]
    if request.get("replace"):
        context.cancel_delayed_message(name)
    session = context.storage.session or {"reminders": 0}
    session["reminders"] += 1
    context.storage.session = session
    context.send_after(
        timedelta(seconds=request["after_s"]),
        message_builder(
            "example/reminder",
            context.address.id,
            value={"name": name, "number": session["reminders"]},
            value_type=DUE,
        ),
        cancellation_token=name,
    )
