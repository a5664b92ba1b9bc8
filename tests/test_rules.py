"""The house rules a reader relies on, checked from the code itself:

- faces only translate: no face (nor the process around them) imports SQLAlchemy or the ORM
  models, or a state machine of `tools` directly; every act goes through the desk;
- one desk: acts live in `desk/`, and nothing below it (agent, tools, storage) imports it;
- states are types: a status value is written as its `storage.states` member, never as a string,
  wherever it is compared, assigned, looked up or moved.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

from storage import states

ROOT = Path(__file__).resolve().parents[1]
FACES = ["bot/slack", "bot/web", "bot/mcp", "bot/shell.py", "bot/host.py", "bot/server.py", "bot/workers.py"]
FACES += ["bot/terminal.py", "bot/kb_cli.py", "bot/evals.py", "bot/app.py"]
NOT_FOR_FACES = ("sqlalchemy", "storage.models", "tools.refunds", "tools.tickets")
BELOW_THE_DESK = ("agent", "tools", "storage")
STATUS_VALUES = {
    str(v)
    for machine in (states.RefundStatus, states.TicketStatus, states.OutboxStatus, states.InboxStatus)
    for v in machine
}
STATUS_VALUES |= {str(v) for v in states.WebTurnStatus}


def _files(*places: str) -> list[Path]:
    out: list[Path] = []
    for place in places:
        path = ROOT / place
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            out += [p for p in path.rglob("*.py") if "migrations" not in p.parts]
    return out


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return found


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_faces_write_no_sql_and_reach_state_machines_only_through_the_desk() -> None:
    bad = {
        _rel(p): sorted(i for i in _imports(p) if i.startswith(NOT_FOR_FACES))
        for p in _files(*FACES)
        if any(i.startswith(NOT_FOR_FACES) for i in _imports(p))
    }
    assert bad == {}


def test_there_is_one_desk_and_nothing_below_it_reaches_up() -> None:
    assert not (ROOT / "agent" / "desk.py").exists() and not (ROOT / "tools" / "desk.py").exists()
    upward = {
        _rel(p): sorted(i for i in _imports(p) if i == "desk" or i.startswith(("desk.", "bot.", "bot")))
        for p in _files(*BELOW_THE_DESK)
    }
    assert {f: i for f, i in upward.items() if i} == {}
    desk_up = {_rel(p): sorted(i for i in _imports(p) if i.startswith("bot")) for p in _files("desk")}
    assert {f: i for f, i in desk_up.items() if i} == {}


def _status_literals(path: Path) -> list[tuple[int, str]]:
    """String constants that are status values where a status is compared, assigned, looked up or
    moved: in a comparison, a `status=` keyword, a `"status"` dict entry, a mapping's keys, or the
    arguments of `.in_` / `.not_in` / a `_move`."""
    tree = ast.parse(path.read_text(), str(path))
    hits: list[tuple[int, str]] = []

    def mark(node: ast.AST) -> None:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value in STATUS_VALUES:
                hits.append((sub.lineno, sub.value))

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and not _about_kind(node):
            mark(node)
        elif isinstance(node, ast.keyword) and node.arg == "status":
            mark(node.value)
        elif isinstance(node, ast.Dict):
            keyed = [k for k in node.keys if isinstance(k, ast.Constant) and k.value in STATUS_VALUES]
            if len(keyed) > 1:  # a mapping from states (one such key alone is another vocabulary's)
                for key in keyed:
                    mark(key)
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "status":
                    mark(value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            if name in ("in_", "not_in", "_move"):
                for arg in node.args:
                    mark(arg)
    return sorted(set(hits))


def _about_kind(node: ast.Compare) -> bool:
    """`x.kind == "done"`: an event's kind, a vocabulary of its own, not a status."""
    return any(isinstance(side, ast.Attribute) and side.attr == "kind" for side in (node.left, *node.comparators))


# the claims check's own vocabulary: what a sentence claims ("processing", "denied"…), each word
# mapped there to the store's members
OWN_VOCABULARY = {"storage/states.py", "agent/claim_patterns.py"}


def test_status_values_are_written_as_their_state_machine_members() -> None:
    found = {_rel(p): _status_literals(p) for p in _files("bot", "desk", "agent", "tools", "storage")}
    assert {f: h for f, h in found.items() if h and f not in OWN_VOCABULARY} == {}


def test_every_move_of_a_machine_is_in_its_table() -> None:
    assert states.REFUNDS.allows(states.RefundStatus.AWAITING_CONFIRMATION, states.RefundStatus.PROCESSING)
    assert not states.REFUNDS.allows(states.RefundStatus.PROCESSED, states.RefundStatus.PROCESSING)
    assert not states.TICKETS.allows(states.TicketStatus.RESOLVED, states.TicketStatus.OPEN)
    assert set(states.TICKETS.sources(states.TicketStatus.RESOLVED)) == {
        states.TicketStatus.OPEN,
        states.TicketStatus.CLAIMED,
    }


ERROR_HOMES = {
    "agent": "agent.errors",
    "bot": "bot.errors",
    "desk": "desk.errors",
    "storage": "storage.errors",
    "tools": "tools.codes",
}


def _exception_classes(package: str) -> dict[str, str]:
    """Every exception class defined in the package: its name and the module that defines it."""
    out: dict[str, str] = {}
    for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
        if ".migrations" in info.name or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == info.name:
                out[name] = info.name
    return out


def test_each_package_has_one_error_tree() -> None:
    for package, home in ERROR_HOMES.items():
        found = _exception_classes(package)
        assert {name: where for name, where in found.items() if where != home} == {}, package
        base = importlib.import_module(home)
        roots = [c for c in vars(base).values() if inspect.isclass(c) and issubclass(c, BaseException)]
        tree = {c for c in roots if c.__module__ == home}
        assert len({c for c in tree if not any(issubclass(c, other) for other in tree - {c})}) == 1, package


def test_no_function_is_longer_than_a_screen() -> None:
    long = {
        f"{_rel(p)}:{node.name}": node.end_lineno - node.lineno + 1
        for p in _files("bot", "desk", "agent", "tools", "storage")
        for node in ast.walk(ast.parse(p.read_text(), str(p)))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (node.end_lineno or 0) - node.lineno + 1 > 60
    }
    assert long == {}
