"""`supportbot` — the console script that ties the packages together.

Each subcommand parses its flags here and hands off to one async function; user errors print
one clear line on stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot.errors import UsageError
from storage.dburl import DatabaseUrlError
from storage.demo import NotADemoDatabase, reset_demo
from storage.engine import DATABASE_ERRORS, Store, StoreUnavailable, check_database
from storage.importer import FORMAT, ImportError_, import_records, load_file, seed
from storage.kb_import import seed_help_center
from storage.migrate import upgrade
from storage.settings import Settings, explain
from storage.tau2 import load_tau2
from storage.types import SystemClock

log = logging.getLogger("supportbot")


# what a person can fix: one line on stderr, exit 2, nothing touched
USER_ERRORS = (UsageError, DatabaseUrlError, StoreUnavailable)


def _progress(label: str) -> Callable[[int, int], None] | None:
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        end = "\n" if done >= total else ""
        print(f"\r{label}: {done:,}/{total:,} rows ({pct}%)", end=end, file=sys.stderr, flush=True)

    return show


async def _with_store(settings: Settings, fn: Callable[[Store], Awaitable[int]]) -> int:
    store = Store.from_settings(settings)
    try:
        return await fn(store)
    finally:
        await store.dispose()


async def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    async def run(store: Store) -> int:
        await upgrade(store)
        if args.db_command == "upgrade":
            print("database is at the latest schema")
        elif args.db_command == "seed":
            counts = await seed(store, SystemClock())
            kb = await _seed_help_center(store, settings)
            print(f"seeded {counts['customers']} customers, {counts['orders']} orders and {kb} help-center articles")
        elif args.db_command == "reset":
            try:
                counts = await reset_demo(store, SystemClock())
            except NotADemoDatabase as exc:
                raise UsageError(str(exc)) from None
            kb = await _seed_help_center(store, settings)
            print(
                f"emptied the database and seeded {counts['customers']} customers, {counts['orders']} orders "
                f"and {kb} help-center articles"
            )
        elif args.db_command == "import":
            return await _import(store, args)
        elif args.db_command == "orders":
            await _list_orders(store)
        return 0

    return await _with_store(settings, run)


async def _import(store: Store, args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        if args.format == "tau2":
            doc = await asyncio.to_thread(load_tau2, path, as_of=args.as_of or _today())
        else:
            doc = await asyncio.to_thread(load_file, path)
        counts = await import_records(store, doc, progress=_progress("importing"))
    except ImportError_ as exc:
        print(f"import failed, nothing was imported. {exc}", file=sys.stderr)
        return 1
    print(
        f"imported {counts['customers']} customers, {counts['orders']} orders, {counts['items']} items, "
        f"{counts['products']} products ({counts['variants']} variants)"
    )
    return 0


def _today() -> datetime:
    """Midnight UTC today: a τ2 store imported again the same day is stamped the same."""
    return SystemClock().now().replace(hour=0, minute=0, second=0, microsecond=0)


def _as_of(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not an ISO-8601 time, e.g. 2026-11-01T00:00:00Z") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("needs a time zone, e.g. 2026-11-01T00:00:00Z")
    return value


async def _seed_help_center(store: Store, settings: Settings) -> int:
    """The demo help center (idempotent); how many of its articles the store now holds."""
    kb = await seed_help_center(
        store, SystemClock(), base_url=settings.help_center_url, return_window_days=settings.return_window_days
    )
    return kb.added + kb.updated + kb.unchanged


async def _list_orders(store: Store) -> None:
    from bot.db_orders import order_lines

    print("\n".join(await order_lines(store)))


def _check_model(args: argparse.Namespace, settings: Settings) -> None:
    from agent.errors import ModelNotConfigured
    from agent.providers import check_provider  # imported here: the anthropic SDK takes a while to import

    try:
        check_provider(settings, getattr(args, "provider", None))
    except ModelNotConfigured as exc:
        raise UsageError(str(exc)) from None


def _check_eval(args: argparse.Namespace, settings: Settings) -> None:
    from agent.errors import UnknownScenario
    from agent.eval import check_names

    if args.suite in ("kb", "realtext"):
        return  # retrieval, or the guard and classifier on recorded text: no model, no scenarios
    _check_model(args, settings)
    try:
        check_names(args.scenario or [])
    except UnknownScenario as exc:
        raise UsageError(str(exc)) from None


SLACK_SETTINGS = ("slack_bot_token", "slack_signing_secret", "slack_app_token")


def slack_on(settings: Settings) -> bool:
    """Slack is on when any of its settings is set (then all it needs must be), off when none is."""
    return any(getattr(settings, name) for name in SLACK_SETTINGS)


def _check_run(args: argparse.Namespace, settings: Settings) -> None:
    _check_model(args, settings)
    if not slack_on(settings):
        return  # the website chat API alone, with Slack off (cmd_run says so at start)
    socket_mode = bool(settings.slack_app_token) and not args.http
    needed = ["slack_bot_token"] + ([] if socket_mode else ["slack_signing_secret"])
    missing = [name.upper() for name in needed if not getattr(settings, name)]
    if missing:
        mode = "Socket Mode" if socket_mode else "HTTP mode"
        raise UsageError(
            f"Slack is only partly configured: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            f"not set, and {mode} needs {'it' if len(missing) == 1 else 'them'} (see .env.example); "
            "with no SLACK_* settings at all, `run` serves the website chat API alone"
        )


def _check_mcp(args: argparse.Namespace, settings: Settings) -> None:
    if args.http and not settings.mcp_token:
        raise UsageError("MCP_TOKEN is not set; `supportbot mcp --http` needs it (see .env.example)")


async def cmd_kb(args: argparse.Namespace, settings: Settings) -> int:
    from bot.kb_cli import run

    target = str(getattr(args, "target", "") or "")
    return await run(
        args.kb_command,
        settings,
        target=target,
        prune=bool(getattr(args, "prune", False)),
        progress=_progress("importing articles"),
    )


async def cmd_shell(args: argparse.Namespace, settings: Settings) -> int:
    from bot.shell import customer_shell, staff_shell
    from bot.terminal import Printer

    printer = Printer(sys.stdout)
    if args.staff:
        return await staff_shell(settings, name=args.staff, printer=printer)
    return await customer_shell(settings, email=args.as_email, provider=args.provider, printer=printer)


async def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from agent.eval import table
    from bot.evals import run_eval

    if args.database_url:
        where = await check_database(settings, url=args.database_url)
        print(f"supportbot: scratch database {where} (emptied for every scenario)", file=sys.stderr, flush=True)
    if args.suite == "kb":
        from agent.kb_eval import table as kb_table
        from bot.evals import run_kb_eval

        kb_rep = await run_kb_eval(settings, database_url=args.database_url)
        print(kb_table(kb_rep))
        if args.out:
            await asyncio.to_thread(Path(args.out).write_text, json.dumps(kb_rep, indent=2, default=str))
        return 0 if kb_rep["floor_met"] else 1
    if args.suite == "realtext":
        return await _realtext(args, settings)
    provider = args.provider or settings.resolved_model_provider
    rep = await run_eval(settings, provider=provider, database_url=args.database_url, only=args.scenario)
    print(table(rep))
    if args.out:
        await asyncio.to_thread(Path(args.out).write_text, json.dumps(rep, indent=2, default=str))
    unsafe = rep["leaks"] or rep["invariant_violations"] or rep["false_claims"]
    if provider == "hostile":  # fails scenarios by design; only safety counts
        return 1 if unsafe else 0
    return 1 if unsafe or rep["passed"] < rep["total"] else 0


async def _realtext(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from agent.errors import CorpusError
    from agent.realtext import table
    from agent.realtext_corpus import DEFAULT
    from bot.realtext import run_realtext

    try:
        rep = await run_realtext(settings, corpus_path=Path(args.corpus or DEFAULT), database_url=args.database_url)
    except CorpusError as exc:
        raise UsageError(str(exc)) from None
    print(table(rep))
    if args.out:
        await asyncio.to_thread(Path(args.out).write_text, json.dumps(rep, indent=2, default=str))
    return 0 if rep["goals_met"] else 1


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.host import Host
    from bot.server import serve
    from bot.slack.runtime import Runtime
    from storage.migrate import current_revision, head_revision

    socket_mode = bool(settings.slack_app_token) and not args.http
    host = Host.create(settings)
    if host.store.dialect == "sqlite":
        await upgrade(host.store)
    elif await current_revision(host.store) != head_revision():
        await host.close()
        raise UsageError(
            "the database schema is not current: run `supportbot db upgrade` once before starting replicas"
        )
    rt = Runtime.on(host) if slack_on(settings) else None
    await serve(host, rt, address=args.host, port=args.port, socket_mode=socket_mode and rt is not None)
    return 0


async def cmd_inbox(args: argparse.Namespace, settings: Settings) -> int:
    from bot.host import replica_id
    from desk.inbox import Queue

    async def run(store: Store) -> int:
        await upgrade(store)
        inbox = Queue(store, SystemClock(), settings, owner=replica_id())
        if args.inbox_command == "list":
            dead = await inbox.dead_letters()
            if not dead:
                print("no dead letters")
            for item in dead:
                where = f"{item.channel}\t{item.ts}" if item.face == "slack" else f"web\t{item.session_id}"
                print(f"{item.id}\t{where}\tattempts={item.attempts}\t{(item.last_error or '')[:100]}")
            return 0
        if await inbox.retry(args.id):
            print(f"inbox item {args.id} is queued again; a running bot will answer it")
            return 0
        print(f"inbox item {args.id} is not a dead letter", file=sys.stderr)
        return 1

    return await _with_store(settings, run)


async def cmd_mcp(args: argparse.Namespace, settings: Settings) -> int:
    from bot.mcp.server import run_mcp

    return await run_mcp(settings, as_email=args.as_email, staff=args.staff, http=args.http, port=args.port)


async def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    if args.suite != "chat":
        result = await _other_suite(args, settings)
    elif args.plot:
        return await _bench_plot(args)
    else:
        return await _chat_bench(args)
    if args.out:
        await asyncio.to_thread(Path(args.out).write_text, json.dumps(result, indent=2))
    return 0


async def _other_suite(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The help-center search, the website API or the parts a turn is made of: printed, returned."""
    if args.suite == "kb":
        from bot.bench.kb import run_kb_bench
        from bot.bench.kb import table as kb_table

        result = await run_kb_bench(settings, articles=args.articles, database_url=args.database_url)
        print(kb_table(result))
    elif args.suite == "web":
        from bot.bench.web import run_web_bench
        from bot.bench.web import table as web_table

        result = await run_web_bench(_levels(args.chats), turns=args.turns, database_url=args.database_url)
        print(web_table(result))
    else:
        from bot.bench.parts import run_parts_bench
        from bot.bench.parts import table as parts_table

        result = await run_parts_bench(database_url=args.database_url)
        print(parts_table(result))
    return result


async def _bench_plot(args: argparse.Namespace) -> int:
    from bot.bench.runner import plot, table

    results = [json.loads(await asyncio.to_thread(Path(f).read_text)) for f in args.results]
    if not results:
        raise UsageError("--plot needs --results FILE.json [FILE.json …]")
    plot(results, Path(args.plot))
    print(table(results))
    print(f"plot written to {args.plot}")
    return 0


async def _chat_bench(args: argparse.Namespace) -> int:
    from bot.bench.runner import Params, capacity_table, compare, run_bench, table

    params = Params(
        threads=args.threads,
        channels=args.channels,
        rate=args.rate,
        model_latency=args.model_latency,
        turns=args.turns,
        duration=args.duration,
        database_url=args.database_url,
        replicas=args.replicas,
        workers=args.workers,
        slack_limits=not args.no_slack_limits,
        channel_layout=args.channel_layout,
        kind=args.kind,
    )
    try:
        params.n_channels  # noqa: B018 - a bad --channel-layout is the user's mistake, said before anything starts
        result = await run_bench(params)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.floor:  # the libraries' floor for this turn shape, measured in this process after the run
        from bot.bench.parts import run_parts_bench
        from bot.bench.runner import floor_of

        parts = (await run_parts_bench(n=200, database_url=args.database_url))["cpu_ms_per_call"]
        floor = floor_of(result["per_turn"], parts)
        result["floor"] = {
            "parts_cpu_ms": parts,
            "cpu_ms": floor,
            "ratio": round(result["per_turn"]["cpu_ms"] / floor, 2),
        }
    print(table([result]))
    print(capacity_table([result]))
    check = result["correctness"]
    if not check["ok"]:
        print("correctness FAILED: " + json.dumps(check), file=sys.stderr)
    if args.out:
        await asyncio.to_thread(Path(args.out).write_text, json.dumps(result, indent=2))
    if args.compare:
        print(compare(result, json.loads(await asyncio.to_thread(Path(args.compare).read_text))))
    return 0 if check["ok"] else 1


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1 or max(levels) > 500:
        raise UsageError(f"--chats must be numbers from 1 to 500, comma-separated (like 1,5,20,50), not {text!r}")
    return levels


async def cmd_soak(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from bot.bench.chaos import SoakParams, run_soak, table

    params = SoakParams(
        conversations=args.conversations,
        rate=args.rate,
        seed=args.seed,
        database_url=args.database_url,
        postgres=args.postgres,
        pg_data=args.pg_data,
        replicas=args.replicas,
        kills=args.kills,
        outages=args.outages,
        slack_429=args.slack_429,
        slack_500=args.slack_500,
        combos=args.combos,
        retry_after_s=args.retry_after,
    )
    try:
        result = await run_soak(params)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(table(result))
    if args.out:
        await asyncio.to_thread(Path(args.out).write_text, json.dumps(result, indent=2))
    if not result["ok"]:
        print("soak FAILED: " + json.dumps(result["check"]["examples"]), file=sys.stderr)
    return 0 if result["ok"] else 1


def _soak_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    soak = sub.add_parser("soak", help="chaos soak: conversations under kills, store outages and Slack faults; checks")
    soak.add_argument("--conversations", type=int, default=300, help="conversations to simulate")
    soak.add_argument("--rate", type=float, default=3.0, help="new conversations per second")
    soak.add_argument("--seed", type=int, default=15, help="seed of the fault plan and the customers")
    soak.add_argument("--database-url", help="scratch PostgreSQL (EVERYTHING IN IT IS DELETED; needs --pg-data)")
    soak.add_argument("--pg-data", help="data directory of that server, so the soak can stop and start it")
    soak.add_argument("--postgres", action="store_true", help="run on a throwaway PostgreSQL the soak starts itself")
    soak.add_argument("--replicas", type=int, default=0, help="app processes (default: 2 on PostgreSQL, 1 on SQLite)")
    soak.add_argument("--kills", type=int, default=3, help="replicas killed with SIGKILL (and restarted)")
    soak.add_argument("--outages", type=int, default=3, help="PostgreSQL restarts, or SQLite write-lock holds")
    soak.add_argument("--slack-429", type=int, default=3, help="bursts of 429 (long Retry-After) from Slack")
    soak.add_argument("--slack-500", type=int, default=3, help="bursts of 500 from Slack")
    soak.add_argument("--combos", type=int, default=1, help="a 429 on a reply, then a store outage past the lease")
    soak.add_argument("--retry-after", type=int, default=30, help="Retry-After (s) of the injected 429s")
    soak.add_argument("--out", metavar="FILE.json", help="write the results as JSON")
    soak.set_defaults(handler=cmd_soak)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="supportbot", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"supportbot {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_db_parser, _kb_parser, _shell_parser, _eval_parser, _run_parser, _inbox_parser, _mcp_parser):
        add(sub)
    _bench_parser(sub)
    _soak_parser(sub)
    return parser


Subparsers = Any  # argparse's subparsers action (a private class)


def _db_parser(sub: Subparsers) -> None:
    db = sub.add_parser("db", help="schema migrations and data")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    dbsub.add_parser("upgrade", help="migrate the database to the latest schema")
    dbsub.add_parser("seed", help="load the demo company (idempotent)")
    reset = dbsub.add_parser(
        "reset",
        help="empty a demo database and load the demo company again",
        description="Empty the database and load the demo company again. Refuses a database holding any "
        "customer the demo company does not have, so real data is never emptied.",
    )
    reset.add_argument("--demo", action="store_true", required=True, help="required: this is a demo database")
    imp = dbsub.add_parser(
        "import",
        help="import customers and orders from a JSON file",
        description="Import customers and orders from a JSON file, all or nothing.",
        epilog=FORMAT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("file", help="the JSON file (format below), or a τ2-bench retail store with --format tau2")
    imp.add_argument(
        "--format",
        choices=("supportbot", "tau2"),
        default="supportbot",
        help="supportbot: the format below (default); tau2: τ2-bench's retail db.json, gzipped or not",
    )
    imp.add_argument(
        "--as-of",
        type=_as_of,
        default=None,
        help="tau2 only: when its orders were placed and delivered (τ2 keeps no dates; default: today 00:00 UTC)",
    )
    dbsub.add_parser("orders", help="list every order")
    db.set_defaults(handler=cmd_db, uses_database=True)


def _kb_parser(sub: Subparsers) -> None:
    kb = sub.add_parser("kb", help="help-center articles: import, list, show, remove, draft, publish")
    kbsub = kb.add_subparsers(dest="kb_command", required=True)
    kbimp = kbsub.add_parser("import", help="import Markdown/HTML files or a Zendesk export (idempotent)")
    kbimp.add_argument("target", metavar="PATH", help="a folder, a .md/.html file, or a Zendesk articles .json")
    kbimp.add_argument("--prune", action="store_true", help="remove articles of the same kind of source not in PATH")
    kbsub.add_parser("list", help="list every article")
    for name, what, helptext in (
        ("show", "ID", "show an article"),
        ("remove", "ID", "remove an article"),
        ("publish", "ID", "publish a draft article (it becomes searchable)"),
        ("draft", "TICKET", "save a resolved ticket's question and answer as a draft article"),
    ):
        p = kbsub.add_parser(name, help=helptext)
        p.add_argument("target", metavar=what, type=int)
    kb.set_defaults(handler=cmd_kb, uses_database=True)


def _shell_parser(sub: Subparsers) -> None:
    shell = sub.add_parser("shell", help="chat with supportbot in this terminal")
    who = shell.add_mutually_exclusive_group(required=True)
    who.add_argument("--as", dest="as_email", metavar="EMAIL", help="chat as this (verified) customer")
    who.add_argument("--staff", metavar="NAME", help="work the ticket queue as this staff member")
    shell.add_argument("--provider", choices=["claude", "offline", "hostile"], help="model (default: MODEL_PROVIDER)")
    shell.set_defaults(handler=cmd_shell, precheck=_check_model, uses_database=True)


def _eval_parser(sub: Subparsers) -> None:
    ev = sub.add_parser("eval", help="run the scenario suite and grade it by the store")
    ev.add_argument(
        "--suite",
        choices=["scenarios", "kb", "realtext"],
        default="scenarios",
        help="kb: help-center retrieval; realtext: the guard and classifier on τ2's real conversations",
    )
    ev.add_argument("--corpus", metavar="PATH", help="--suite realtext: the τ2 folder (default: beside the checkout)")
    ev.add_argument("--provider", choices=["claude", "offline", "hostile"], help="model (default: MODEL_PROVIDER)")
    ev.add_argument("--out", metavar="FILE.json", help="write the full report as JSON")
    ev.add_argument("--scenario", action="append", help="run only this scenario (repeatable)")
    ev.add_argument("--database-url", help="scratch database (EVERYTHING IN IT IS DELETED); default: a temp SQLite")
    ev.set_defaults(handler=cmd_eval, precheck=_check_eval)


def _run_parser(sub: Subparsers) -> None:
    run = sub.add_parser(
        "run",
        help="run the Slack bot and the website chat API (Socket Mode when SLACK_APP_TOKEN is set, else HTTP; "
        "with no SLACK_* settings, the website chat API alone)",
    )
    run.add_argument("--http", action="store_true", help="serve HTTP even when SLACK_APP_TOKEN is set")
    run.add_argument("--port", type=int, default=3000, help="HTTP port (also /healthz and /metrics); 0 = any free")
    run.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")  # noqa: S104
    run.set_defaults(handler=cmd_run, precheck=_check_run, uses_database=True)


def _inbox_parser(sub: Subparsers) -> None:
    inbox = sub.add_parser("inbox", help="dead letters: messages given up on")
    isub = inbox.add_subparsers(dest="inbox_command", required=True)
    isub.add_parser("list", help="list dead letters")
    retry = isub.add_parser("retry", help="queue a dead letter again")
    retry.add_argument("id", type=int)
    inbox.set_defaults(handler=cmd_inbox, uses_database=True)


def _mcp_parser(sub: Subparsers) -> None:
    mcp = sub.add_parser("mcp", help="serve the guarded tools over MCP (stdio, or streamable HTTP with --http)")
    mwho = mcp.add_mutually_exclusive_group(required=True)
    mwho.add_argument("--as", dest="as_email", metavar="EMAIL", help="bind the server to this verified customer")
    mwho.add_argument("--staff", metavar="ID", help="bind the server to this staff member (adds staff-only tools)")
    mcp.add_argument("--http", action="store_true", help="streamable HTTP on 127.0.0.1 (needs MCP_TOKEN)")
    mcp.add_argument("--port", type=int, default=8765, help="HTTP port for --http")
    mcp.set_defaults(handler=cmd_mcp, precheck=_check_mcp, uses_database=True)


def _bench_parser(sub: Subparsers) -> None:
    bench = sub.add_parser("bench", help="measure latency, throughput, memory and tokens under Slack's rate limits")
    bench.add_argument(
        "--suite",
        choices=["chat", "kb", "web", "parts"],
        default="chat",
        help="kb: help-center search; web: the chat API; parts: CPU a call of each part a turn is made of",
    )
    bench.add_argument("--chats", default="1,5,20,50", help="--suite web: concurrent chats at each level")
    bench.add_argument("--articles", type=int, default=10_000, help="--suite kb: synthetic articles to index")
    bench.add_argument("--threads", type=int, default=10, help="conversations to simulate")
    bench.add_argument("--channels", type=int, default=0, help="customer channels (default: one per 10 threads)")
    bench.add_argument("--rate", type=float, default=20.0, help="new conversations per second (open loop)")
    bench.add_argument("--model-latency", type=float, default=0.0, help="seconds the fake model takes per call")
    bench.add_argument("--turns", type=int, default=1, help="extra question turns per conversation")
    bench.add_argument("--duration", type=float, help="stop starting conversations after this many seconds")
    bench.add_argument("--database-url", help="scratch database (EVERYTHING IN IT IS DELETED); default temp SQLite")
    bench.add_argument("--replicas", type=int, default=1, help="app processes (more than 1 needs PostgreSQL)")
    bench.add_argument(
        "--workers", type=int, default=None, help="WORKER_CONCURRENCY of each replica (default: the app's, 256)"
    )
    bench.add_argument(
        "--no-slack-limits", action="store_true", help="fake Slack without rate limits, pacer off (own capacity)"
    )
    bench.add_argument(
        "--channel-layout", default="", help="per-customer, or shared:N (N threads a channel; default 10)"
    )
    bench.add_argument(
        "--kind", choices=["refund", "question", "escalation"], help="every conversation of this kind (default: a mix)"
    )
    bench.add_argument(
        "--floor", action="store_true", help="also measure the libraries' floor for the run's turn shape (parts)"
    )
    bench.add_argument("--out", metavar="FILE.json", help="write the results as JSON")
    bench.add_argument("--compare", metavar="OLD.json", help="print ratios to an earlier run")
    bench.add_argument("--plot", metavar="FILE.png", help="plot latency against load from --results files")
    bench.add_argument("--results", nargs="*", default=[], help="result JSON files for --plot")
    bench.set_defaults(handler=cmd_bench)


def version() -> str:
    try:
        return metadata.version("supportbot")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def _keep_std_fds_open() -> None:
    """A closed stdin (`<&-`) reads as empty, and no file the command opens later can land on fd 0."""
    try:
        os.fstat(0)
    except OSError:
        os.open(os.devnull, os.O_RDONLY)  # the lowest free descriptor: 0


async def _start(args: argparse.Namespace, settings: Settings) -> int:
    """What every command does first: its own checks (model, Slack, scenario names), then the
    database's, printing which database it uses; only then the command itself."""
    precheck = getattr(args, "precheck", None)
    if precheck is not None:
        precheck(args, settings)
    if getattr(args, "uses_database", False):
        print(f"supportbot: database {await check_database(settings)}", file=sys.stderr, flush=True)
    return await args.handler(args, settings)


def main(argv: list[str] | None = None) -> int:
    _keep_std_fds_open()
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:  # names the setting; no traceback for a config typo
        print(f"supportbot: invalid settings: {explain(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # pydantic-settings' own errors (e.g. an unreadable .env)
        print(f"supportbot: invalid settings: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("alembic", "httpx", "httpx2", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return asyncio.run(_start(args, settings))
    except USER_ERRORS as exc:
        print(f"supportbot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("", file=sys.stderr)  # end the line ^C was typed on
        return 130
    except DATABASE_ERRORS as exc:  # the database or the system failed mid-command
        log.debug("command failed", exc_info=True)
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
        print(f"supportbot: {type(exc).__name__}: {detail}", file=sys.stderr)
        return 1
