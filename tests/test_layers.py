"""The import graph keeps its layers: imports flow downwards only, and no circle joins two areas of ``portal/``.

Every import counts, including those inside functions (a lazy import is still an arrow). A failure names the arrow
(file, line, what it imports) so the fix is obvious: move the code down, or ask for the work through the outbox.
"""

import ast
from pathlib import Path

import pytest

from portal.jobs.registry import get_spec

PORTAL = Path(__file__).resolve().parent.parent / "portal"

#: The layers, bottom first (see shared DESIGN.md §1). An area may import its own layer (without circles) and below.
LAYERS = (
    # bottom: the outbox, the shared db metadata, money and settings helpers, URL converters, request timings,
    # the Prometheus metrics (counted by the layers above, never by the domain), rate counters, translatable texts
    {"portal.outbox", "portal.money", "portal.extensions", "portal.config", "portal.routing", "portal.timing",
     "portal.metrics", "portal.ratelimit", "portal.i18n"},
    # the domain (payment forms: their fields, amount rules and subjects)
    {"portal.ledger", "portal.accounts", "portal.forms_builder"},
    # services and adapters (citizen payments: spontaneous and notices, Checkout, receipts)
    {"portal.settings", "portal.pagopa", "portal.notices", "portal.reports", "portal.mail", "portal.formatting",
     "portal.imports", "portal.citizen_payments", "portal.collections",
     "portal.webhooks"},
    # jobs, and the demo data built from the services
    {"portal.jobs", "portal.demo"},
    # HTTP, command line, the app factory, the models index for migrations, operations (health, metrics, doctor)
    {"portal.officer", "portal.citizen", "portal.api", "portal.cli", "portal", "portal.models", "portal.ops"},
)
RANK = {area: rank for rank, areas in enumerate(LAYERS) for area in areas}
#: Areas that must not import Flask (or a Flask extension) themselves; they reach ``db`` through portal.extensions.
NO_FLASK = {"portal.ledger", "portal.accounts", "portal.outbox", "portal.money", "portal.settings", "portal.timing",
            "portal.imports", "portal.metrics",
            "portal.forms_builder", "portal.citizen_payments", "portal.ratelimit", "portal.collections",
            "portal.webhooks", "portal.i18n"}
#: Single modules that must not import Flask in an area that has views too.
NO_FLASK_MODULES = {"portal.ops.health", "portal.ops.collectors", "portal.ops.doctor"}
#: Areas that must not import prometheus-client: the domain is counted by the layers above it.
NO_METRICS = {"portal.ledger", "portal.accounts"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PORTAL.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def area(module: str) -> str:
    """``portal.ledger.models`` → ``portal.ledger``; ``portal`` itself is the app factory."""
    return ".".join(module.split(".")[:2])


def imports(path: Path):
    """``(line, imported module)`` for every import in the file, ``from portal import x`` resolved to ``portal.x``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            if node.module == "portal":
                for alias in node.names:
                    yield node.lineno, f"portal.{alias.name}"
            else:
                yield node.lineno, node.module


def arrows():
    """``(from module, line, to module)`` for every import between modules of ``portal/`` and of Flask."""
    for path in sorted(PORTAL.rglob("*.py")):
        source = module_name(path)
        for line, target in imports(path):
            if target == "portal" or target.startswith("portal.") or target.split(".")[0].startswith("flask"):
                yield source, line, target, path


def test_every_area_has_a_layer():
    areas = {area(module_name(p)) for p in PORTAL.rglob("*.py")}
    assert areas - set(RANK) == set(), "add the new area to LAYERS in tests/test_layers.py"


def test_no_import_goes_up_a_layer():
    upward = []
    for source, line, target, path in arrows():
        if not target.startswith("portal"):
            continue
        if source.startswith("portal.pagopa.sandbox") and area(target) != "portal.pagopa" \
                and RANK[area(target)] > 0:
            upward.append(f"{path.relative_to(PORTAL.parent)}:{line} imports {target} (the sandbox plays pagoPA: "
                          "it may use only the bottom and portal.pagopa)")
            continue
        if RANK[area(target)] > RANK[area(source)]:
            upward.append(f"{path.relative_to(PORTAL.parent)}:{line} imports {target} "
                          f"({area(source)} is below {area(target)})")
    assert upward == []


def test_the_domain_does_not_import_flask():
    found = [f"{path.relative_to(PORTAL.parent)}:{line} imports {target}" for source, line, target, path in arrows()
             if (area(source) in NO_FLASK or source in NO_FLASK_MODULES) and target.split(".")[0].startswith("flask")]
    assert found == []


def test_the_domain_counts_no_metrics():
    found = [f"{path.relative_to(PORTAL.parent)}:{line} imports {target}"
             for path in sorted(PORTAL.rglob("*.py")) if area(module_name(path)) in NO_METRICS
             for line, target in imports(path) if target.split(".")[0] == "prometheus_client"
             or target == "portal.metrics"]
    assert found == []


def test_no_circle_between_areas():
    graph: dict[str, set[str]] = {}
    for source, _, target, _ in arrows():
        if target.startswith("portal") and area(source) != area(target):
            graph.setdefault(area(source), set()).add(area(target))
    circles = []

    def visit(node, trail):
        for nxt in sorted(graph.get(node, ())):
            if nxt in trail:
                circles.append(" → ".join([*trail[trail.index(nxt):], nxt]))
            elif len(trail) < len(RANK):
                visit(nxt, [*trail, nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert circles == []


def outbox_task_names():
    """The task names written as literals in ``outbox.schedule(session, "name", ...)`` calls."""
    for path in sorted(PORTAL.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "schedule"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "outbox"
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)):
                yield node.args[1].value


@pytest.mark.parametrize("name", sorted({*outbox_task_names(), "sync_position", "publish_batch"}))
def test_every_task_the_domain_asks_for_is_declared(name):
    from portal.ledger import sync_state

    assert {sync_state.SYNC_TASK, sync_state.PUBLISH_TASK} == {"sync_position", "publish_batch"}
    assert get_spec(name).name == name


def test_the_arrow_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from portal.jobs.queue import enqueue_after_commit\n", encoding="utf-8")
    assert [target for _, target in imports(bad)] == ["portal.jobs.queue"]
    assert RANK[area("portal.jobs.queue")] > RANK[area("portal.ledger.services")]
