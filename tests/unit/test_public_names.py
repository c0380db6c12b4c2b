"""Each package's public names, pinned (as httpx pins its exports): a change to what a package
offers is a change to this list, made on purpose and reviewed. Packages without ``__all__`` are
internal (the CLI, the API's routes, the console's pages...) and import only by module."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import segflow

PUBLIC: dict[str, list[str]] = {
    "activate": [
        "ActivationService",
        "Delivery",
        "DeliveryStore",
        "DeliveryWorker",
        "Destination",
        "DictProfiles",
        "Feeder",
        "ProfileLookup",
        "Subscription",
        "UrlGuard",
    ],
    "backup": [
        "Manifest",
        "create_backup",
        "restore_backup",
        "verify_backup",
    ],
    "identity": [
        "Conflict",
        "ExternalId",
        "GraphView",
        "Identifier",
        "IdentityConfigError",
        "IdentityRules",
        "MemoryGraph",
        "Merge",
        "Resolution",
        "TypeLimit",
        "extract_identifiers",
        "normalise",
        "resolve",
        "violation",
    ],
    "log": [
        "DeadLetter",
        "EventLog",
        "Position",
        "Record",
        "ServedLog",
        "partition_for",
    ],
    "profiles": [
        "IdentityEntry",
        "Profile",
        "TraitChange",
        "apply_event",
        "decode_profile",
        "encode_profile",
        "event_key",
        "merge_into",
    ],
    "rules": [
        "Diagnostic",
        "EvalResult",
        "Rule",
        "RuleCycleError",
        "RuleSyntaxError",
        "SegmentProgram",
        "StaticProfile",
        "check",
        "compile_segments",
        "parse",
        "parse_trait",
    ],
    "server": [
        "Runtime",
        "ServeApp",
        "Service",
        "ServiceGroup",
        "build_app",
        "build_collector",
    ],
    "spec": [
        "AnyChange",
        "CONSENT_TRAIT",
        "Change",
        "ChangeFeed",
        "ConsentChanged",
        "EVENT_TYPES",
        "Event",
        "IdentityLinked",
        "MembershipChange",
        "ProfileMerged",
        "ScoreChanged",
        "decode_event",
        "encode_event",
    ],
    "stream": [
        "ConflictRecord",
        "EvalResult",
        "Evaluation",
        "MemoryStateStore",
        "MergeRecord",
        "NullEvaluator",
        "Processor",
        "ProcessorSettings",
        "ProfileReader",
        "ProfileView",
        "RocksStateStore",
        "SegmentEvaluator",
        "SqliteStateStore",
        "StateChangeFeed",
        "StateStore",
        "TimelinePage",
    ],
    "syncs": [
        "Credential",
        "DltMissing",
        "SyncDefinition",
        "SyncExists",
        "SyncInfo",
        "SyncInvalid",
        "SyncProgress",
        "SyncResult",
        "SyncRunner",
        "SyncSchedule",
        "SyncStore",
        "UnknownSync",
        "VENDORS",
        "VendorError",
        "open_store",
        "segflow_destination",
    ],
    "ui": [
        "build_console",
    ],
}


def _packages() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(segflow.__path__) if m.ispkg)


@pytest.mark.parametrize("name", _packages())
def test_the_public_names_are_the_pinned_ones(name: str) -> None:
    package = importlib.import_module(f"segflow.{name}")
    exported = getattr(package, "__all__", None)
    assert (sorted(exported) if exported is not None else None) == PUBLIC.get(name), name


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_name_resolves_to_segflow_code(name: str) -> None:
    package = importlib.import_module(f"segflow.{name}")
    for public in package.__all__:
        value = getattr(package, public)  # an AttributeError names a stale entry
        if getattr(value, "__origin__", None) is None and callable(value):  # not an alias
            assert value.__module__.startswith("segflow."), (name, public, value.__module__)


def test_every_module_all_names_exist() -> None:
    """Modules that declare ``__all__`` list only names they have (``from m import *`` works)."""
    stale = []
    for info in pkgutil.walk_packages(segflow.__path__, "segflow."):
        if ".kernel._kernel" in info.name or info.name.startswith("segflow.cli.main"):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional extra (pyspark, clickhouse...) not installed
            continue
        stale += [
            f"{info.name}.{n}" for n in getattr(module, "__all__", ()) if not hasattr(module, n)
        ]
    assert stale == []
