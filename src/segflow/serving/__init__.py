"""segflow.serving: the floor the admin API and the web console stand on, side by side: the
stores of a data directory (``runtime``), their status and the pipeline's figures (``status``,
``snapshots``), what both faces are given (``deps``), and the error shape and body limit both
answer with (``errors``, ``limits``). ``segflow.server`` composes them into a process."""
