"""The runtime: the worker's loop and what it drives for each record (ingress routing, dispatch,
remote calls, dead letters, the commit protocol, the watchdog); each module's first lines say
which part it owns."""
