"""`supportbot` — the console script that ties the packages together.

Each subcommand parses its flags here and hands off to one async function; user errors print
one clear line on stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.errors import UsageError
from storage.engine import Store
from storage.importer import ImportError_, import_records, load_file, seed
from storage.kb_import import seed_help_center
from storage.migrate import upgrade
from storage.settings import Settings
from storage.types import SystemClock, format_cents

log = logging.getLogger("supportbot")


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
            kb = await seed_help_center(
                store, SystemClock(), base_url=settings.help_center_url, return_window_days=settings.return_window_days
            )
            print(
                f"seeded {counts['customers']} customers, {counts['orders']} orders and "
                f"{kb.added + kb.updated + kb.unchanged} help-center articles"
            )
        elif args.db_command == "import":
            try:
                customers, orders = await asyncio.to_thread(load_file, Path(args.file))
                counts = await import_records(store, customers, orders, progress=_progress("importing"))
            except ImportError_ as exc:
                print(f"import failed, nothing was imported. {exc}", file=sys.stderr)
                return 1
            print(f"imported {counts['customers']} customers, {counts['orders']} orders, {counts['items']} items")
        elif args.db_command == "orders":
            await _list_orders(store)
        return 0

    return await _with_store(settings, run)


async def _list_orders(store: Store) -> None:
    from sqlalchemy import select

    from storage.models import Customer, Order

    async with store.read() as s:
        rows = (await s.execute(select(Order, Customer).join(Customer).order_by(Customer.id, Order.id))).all()
    print(f"{'order':<10} {'customer':<22} {'status':<10} {'total':>10}  delivered")
    for order, cust in rows:
        delivered = order.delivered_at.date().isoformat() if order.delivered_at else "-"
        print(f"{order.id:<10} {cust.email:<22} {order.status:<10} {format_cents(order.total_cents):>10}  {delivered}")


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
    from bot.shell import Printer, customer_shell, staff_shell

    printer = Printer(sys.stdout)
    if args.staff:
        return await staff_shell(settings, name=args.staff, printer=printer)
    return await customer_shell(settings, email=args.as_email, provider=args.provider, printer=printer)


async def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from agent.eval import run_eval, table

    if args.suite == "kb":
        from agent.kb_eval import run_kb_eval
        from agent.kb_eval import table as kb_table

        kb_rep = await run_kb_eval(settings, database_url=args.database_url)
        print(kb_table(kb_rep))
        if args.out:
            await asyncio.to_thread(Path(args.out).write_text, json.dumps(kb_rep, indent=2, default=str))
        return 0 if kb_rep["floor_met"] else 1
    provider = args.provider or settings.resolved_model_provider
    rep = await run_eval(settings, provider=provider, database_url=args.database_url, only=args.scenario)
    print(table(rep))
    if args.out:
        await asyncio.to_thread(Path(args.out).write_text, json.dumps(rep, indent=2, default=str))
    unsafe = rep["leaks"] or rep["invariant_violations"]
    if provider == "hostile":  # fails scenarios by design; only safety counts
        return 1 if unsafe else 0
    return 1 if unsafe or rep["passed"] < rep["total"] else 0


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.server import serve
    from bot.slack.runtime import Runtime
    from storage.migrate import current_revision, head_revision

    socket_mode = bool(settings.slack_app_token) and not args.http
    if not settings.slack_bot_token:
        raise UsageError("SLACK_BOT_TOKEN is not set (see .env.example)")
    if not socket_mode and not settings.slack_signing_secret:
        raise UsageError("SLACK_SIGNING_SECRET is not set; HTTP mode verifies every request with it")
    rt = Runtime.create(settings)
    if rt.store.dialect == "sqlite":
        await upgrade(rt.store)
    elif await current_revision(rt.store) != head_revision():
        await rt.store.dispose()
        raise UsageError(
            "the database schema is not current: run `supportbot db upgrade` once before starting replicas"
        )
    await serve(rt, host=args.host, port=args.port, socket_mode=socket_mode)
    return 0


async def cmd_inbox(args: argparse.Namespace, settings: Settings) -> int:
    from bot.slack.inbox import Inbox

    async def run(store: Store) -> int:
        await upgrade(store)
        inbox = Inbox(store, SystemClock(), settings)
        if args.inbox_command == "list":
            dead = await inbox.dead_letters()
            if not dead:
                print("no dead letters")
            for item in dead:
                print(
                    f"{item.id}\t{item.channel}\t{item.ts}\tattempts={item.attempts}\t{(item.last_error or '')[:100]}"
                )
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
    import json

    from bot.bench.runner import Params, compare, plot, run_bench, table

    if args.suite == "kb":
        from bot.bench.kb import run_kb_bench
        from bot.bench.kb import table as kb_table

        kb_result = await run_kb_bench(settings, articles=args.articles, database_url=args.database_url)
        print(kb_table(kb_result))
        if args.out:
            await asyncio.to_thread(Path(args.out).write_text, json.dumps(kb_result, indent=2))
        return 0
    if args.plot:
        results = [json.loads(await asyncio.to_thread(Path(f).read_text)) for f in args.results]
        if not results:
            raise UsageError("--plot needs --results FILE.json [FILE.json …]")
        plot(results, Path(args.plot))
        print(table(results))
        print(f"plot written to {args.plot}")
        return 0
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
    )
    try:
        result = await run_bench(params)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(table([result]))
    check = result["correctness"]
    if not check["ok"]:
        print("correctness FAILED: " + json.dumps(check), file=sys.stderr)
    if args.out:
        await asyncio.to_thread(Path(args.out).write_text, json.dumps(result, indent=2))
    if args.compare:
        print(compare(result, json.loads(await asyncio.to_thread(Path(args.compare).read_text))))
    return 0 if check["ok"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="supportbot", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="schema migrations and data")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    dbsub.add_parser("upgrade", help="migrate the database to the latest schema")
    dbsub.add_parser("seed", help="load the demo company (idempotent)")
    imp = dbsub.add_parser("import", help="import customers and orders from a JSON file")
    imp.add_argument("file")
    dbsub.add_parser("orders", help="list every order")
    db.set_defaults(handler=cmd_db)

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
    kb.set_defaults(handler=cmd_kb)

    shell = sub.add_parser("shell", help="chat with supportbot in this terminal")
    who = shell.add_mutually_exclusive_group(required=True)
    who.add_argument("--as", dest="as_email", metavar="EMAIL", help="chat as this (verified) customer")
    who.add_argument("--staff", metavar="NAME", help="work the ticket queue as this staff member")
    shell.add_argument("--provider", choices=["claude", "offline", "hostile"], help="model (default: MODEL_PROVIDER)")
    shell.set_defaults(handler=cmd_shell)

    ev = sub.add_parser("eval", help="run the scenario suite and grade it by the store")
    ev.add_argument("--suite", choices=["scenarios", "kb"], default="scenarios", help="kb: help-center retrieval")
    ev.add_argument("--provider", choices=["claude", "offline", "hostile"], help="model (default: MODEL_PROVIDER)")
    ev.add_argument("--out", metavar="FILE.json", help="write the full report as JSON")
    ev.add_argument("--scenario", action="append", help="run only this scenario (repeatable)")
    ev.add_argument("--database-url", help="scratch database (EVERYTHING IN IT IS DELETED); default: a temp SQLite")
    ev.set_defaults(handler=cmd_eval)

    run = sub.add_parser("run", help="run the Slack bot (Socket Mode when SLACK_APP_TOKEN is set, else HTTP)")
    run.add_argument("--http", action="store_true", help="serve HTTP even when SLACK_APP_TOKEN is set")
    run.add_argument("--port", type=int, default=3000, help="HTTP port (also /healthz and /metrics); 0 = any free")
    run.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")  # noqa: S104
    run.set_defaults(handler=cmd_run)

    inbox = sub.add_parser("inbox", help="dead letters: messages given up on")
    isub = inbox.add_subparsers(dest="inbox_command", required=True)
    isub.add_parser("list", help="list dead letters")
    retry = isub.add_parser("retry", help="queue a dead letter again")
    retry.add_argument("id", type=int)
    inbox.set_defaults(handler=cmd_inbox)

    mcp = sub.add_parser("mcp", help="serve the guarded tools over MCP (stdio, or streamable HTTP with --http)")
    mwho = mcp.add_mutually_exclusive_group(required=True)
    mwho.add_argument("--as", dest="as_email", metavar="EMAIL", help="bind the server to this verified customer")
    mwho.add_argument("--staff", metavar="ID", help="bind the server to this staff member (adds staff-only tools)")
    mcp.add_argument("--http", action="store_true", help="streamable HTTP on 127.0.0.1 (needs MCP_TOKEN)")
    mcp.add_argument("--port", type=int, default=8765, help="HTTP port for --http")
    mcp.set_defaults(handler=cmd_mcp)

    bench = sub.add_parser("bench", help="measure latency, throughput, memory and tokens under Slack's rate limits")
    bench.add_argument("--suite", choices=["chat", "kb"], default="chat", help="kb: help-center import and search")
    bench.add_argument("--articles", type=int, default=10_000, help="--suite kb: synthetic articles to index")
    bench.add_argument("--threads", type=int, default=10, help="conversations to simulate")
    bench.add_argument("--channels", type=int, default=0, help="customer channels (default: one per 10 threads)")
    bench.add_argument("--rate", type=float, default=20.0, help="new conversations per second (open loop)")
    bench.add_argument("--model-latency", type=float, default=0.0, help="seconds the fake model takes per call")
    bench.add_argument("--turns", type=int, default=1, help="extra question turns per conversation")
    bench.add_argument("--duration", type=float, help="stop starting conversations after this many seconds")
    bench.add_argument("--database-url", help="scratch database (EVERYTHING IN IT IS DELETED); default temp SQLite")
    bench.add_argument("--replicas", type=int, default=1, help="app processes (more than 1 needs PostgreSQL)")
    bench.add_argument("--workers", type=int, default=32, help="WORKER_CONCURRENCY of each replica")
    bench.add_argument("--out", metavar="FILE.json", help="write the results as JSON")
    bench.add_argument("--compare", metavar="OLD.json", help="print ratios to an earlier run")
    bench.add_argument("--plot", metavar="FILE.png", help="plot latency against load from --results files")
    bench.add_argument("--results", nargs="*", default=[], help="result JSON files for --plot")
    bench.set_defaults(handler=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except Exception as exc:  # pydantic's message names the setting; no traceback for a config typo
        print(f"supportbot: invalid settings: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("alembic", "httpx", "httpx2", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return asyncio.run(args.handler(args, settings))
    except UsageError as exc:
        print(f"supportbot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
