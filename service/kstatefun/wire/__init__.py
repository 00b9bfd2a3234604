"""Byte formats: what kstatefun writes to and reads from Kafka and HTTP."""
