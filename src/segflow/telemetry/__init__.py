"""segflow.telemetry: what segflow tells its operators: ``logs`` (structured log lines, request
ids) and ``metrics`` (the Prometheus registry every part counts into)."""
