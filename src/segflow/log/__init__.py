"""The durable, ordered, partitioned event log (Kafka's model) and its drivers."""

from segflow.log.base import DeadLetter, EventLog, Position, Record, ServedLog, partition_for

__all__ = ["DeadLetter", "EventLog", "Position", "Record", "ServedLog", "partition_for"]
