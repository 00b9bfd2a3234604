#!/bin/sh
exec /opt/kafka/bin/kafka-run-class kafka.tools.StorageTool "$@"
