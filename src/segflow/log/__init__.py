"""The durable, ordered, partitioned event log (Kafka's model) and its drivers."""

from segflow.log.base import EventLog, Record, partition_for

__all__ = ["EventLog", "Record", "partition_for"]
