"""`chorus demo`: a throwaway co-op of three nodes on this machine, shown working.

node/demo.py runs the story (genesis, members, a release, plays through the swarm,
tallies, audits) with the `chorus` command; this file draws it with rich, shows the
figures the three nodes agree on, prints each node's web app address and then, unless
`--once`, waits for Ctrl-C. Whatever happens — a failed step, Ctrl-C, SIGTERM — the
daemons are stopped (SIGINT, then SIGKILL after a timeout) and the demo's directory
is removed, unless `--keep DIR` named it.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from node.demo import COUNT_AFTER_MS, CoopDemo, DemoFailed, DemoNode, Narrator

from .console import emit_json

__all__ = ["register"]

#: Signals that end the demo as Ctrl-C does (the terminal closing, `kill`).
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo",
        help="run a throwaway co-op of three nodes on 127.0.0.1 and show it working",
        description="Start a throwaway co-op of three daemons on 127.0.0.1: genesis, a "
        "board, a treasury, an artist who publishes three tracks chorus synthesises, a "
        "listener who plays them through the swarm and pays (stream to own), the "
        "tallies every node agrees on and an audit. Then print each node's web app "
        "address and run until Ctrl-C. Everything goes when it stops.",
        epilog="examples:\n  chorus demo\n  chorus demo --once --json\n"
        "  chorus demo --keep ./demo-coop",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--once", action="store_true",
        help="tell the story, print the tallies and the audit, stop: exit 0 only if the "
        "audit passes (the co-op's test rules let a play count after "
        f"{COUNT_AFTER_MS // 1000} s, so nothing waits)",
    )
    demo.add_argument(
        "--keep", type=Path, default=None, metavar="DIR",
        help="work in DIR (new or empty) and keep it afterwards: the three repos, the "
        "genesis, the album and the ledger export",
    )
    demo.add_argument(
        "--json", action="store_true",
        help="with --once: print a summary (tallies, audit) as JSON on stdout; the story "
        "goes to stderr",
    )
    demo.set_defaults(run=run_demo)


class _Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the demo is, like Ctrl-C."""


def _interrupt(signum: int, frame: Any) -> None:
    raise _Interrupted(signal.Signals(signum).name)


class _RichNarrator(Narrator):
    def __init__(self, console: Console) -> None:
        self.console = console

    def begin(self, title: str) -> None:
        self.console.print(f"[bold]▸ {escape(title)}[/bold]", soft_wrap=True)

    def command(self, shown: str) -> None:
        self.console.print(Text(f"    $ {shown}", style="dim"), soft_wrap=True)

    def done(self, title: str, detail: str) -> None:
        self.console.print(Text.assemble(("  ✓ ", "bold green"), detail), soft_wrap=True)

    def waiting(self, text: str) -> AbstractContextManager[Any]:
        return self.console.status(text)


def _workdir(keep: Path | None) -> Path:
    if keep is None:
        return Path(tempfile.mkdtemp(prefix="chorus-demo-"))
    keep = keep.expanduser().absolute()
    keep.mkdir(parents=True, exist_ok=True)
    if any(keep.iterdir()):
        raise ValueError(f"{keep} is not empty; --keep needs a new or empty directory")
    return keep


def run_demo(args: argparse.Namespace) -> int:
    if args.json and not args.once:
        raise ValueError("--json goes with --once (a summary is printed when the demo ends)")
    console = Console(stderr=args.json, highlight=False)
    errors = Console(stderr=True, highlight=False)
    workdir = _workdir(args.keep)
    previous = {sig: signal.signal(sig, _interrupt) for sig in _STOP_SIGNALS}
    demo = CoopDemo(workdir, _RichNarrator(console))
    summary: dict[str, Any] = {}
    stopped: list[tuple[DemoNode, int]] = []
    error: DemoFailed | None = None
    code = 0
    try:
        console.print(f"[bold]chorus demo[/bold]: a throwaway co-op of three nodes on "
                      f"127.0.0.1, in {escape(str(workdir))}", soft_wrap=True)
        demo.start()
        demo.play()
        _print_figures(console, demo, demo.tally())
        demo.audit()
        console.print("[bold green]audit passed[/bold green]: node 2's ledger and node 1's "
                      "export verify, and the books of the co-op balance", soft_wrap=True)
        _print_urls(console, demo, args.once)
        if not args.once:
            code = _run_until_stopped(console, errors, demo, workdir, kept=args.keep is not None)
    except DemoFailed as exc:
        error, code = exc, 1
        _print_failure(errors, exc)
    except KeyboardInterrupt as exc:
        code = 130
        errors.print(f"interrupted ({exc or 'Ctrl-C'}): stopping the demo")
    finally:
        # No second Ctrl-C half-way through cleaning up: stopping is bounded anyway.
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        try:
            summary = _summary(demo)
            stopped = demo.stop()
        finally:
            if args.keep is None:
                shutil.rmtree(workdir, ignore_errors=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    for node, status in stopped:
        how = "stopped" if status == 0 else f"exited with status {status}"
        console.print(f"  {node.label}: daemon {how}")
    if args.keep is None:
        console.print(f"removed {escape(str(workdir))}", soft_wrap=True)
    else:
        console.print(f"kept {escape(str(workdir))}: start a node again with "
                      f"`chorus --data {escape(str(workdir / 'node1'))} daemon`", soft_wrap=True)
    if args.json:
        ok = code == 0 and demo.audit_ok
        emit_json({"ok": ok, **summary,
                   "error": None if error is None else error.to_json()})
    return code


def _run_until_stopped(console: Console, errors: Console, demo: CoopDemo, workdir: Path,
                       kept: bool) -> int:
    """Wait for Ctrl-C (0) or a daemon that dies on its own (1)."""
    where = "kept afterwards" if kept else "removed when the demo stops"
    console.print(f"The co-op runs in {escape(str(workdir))} ({where}). Try a command on a "
                  f"node, e.g. `chorus --data {escape(str(workdir / 'node3'))} wallet show "
                  "listener`.", soft_wrap=True)
    console.print("[bold]press Ctrl-C to stop[/bold]")
    try:
        while True:
            node = demo.exited()
            if node is not None:
                assert node.proc is not None
                _print_failure(errors, DemoFailed(
                    "running", f"the daemon of {node.label} exited with status "
                    f"{node.proc.returncode}", node.command, "\n".join(node.log[-40:])))
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("\nstopping the co-op")
        return 0


def _summary(demo: CoopDemo) -> dict[str, Any]:
    """The demo's summary for --json, or what can be said if it broke too early."""
    try:
        return demo.summary()
    except Exception as exc:  # noqa: BLE001 - a summary must never stand in the way of cleanup
        return {"workdir": str(demo.workdir), "summary_error": str(exc)}


def _print_failure(errors: Console, exc: DemoFailed) -> None:
    errors.print(Text.assemble(("✗ ", "bold red"), (exc.step, "bold"), ": ", exc.message),
                 soft_wrap=True)
    if exc.command:
        errors.print(Text(f"    $ {exc.command}"), soft_wrap=True)
    for line in exc.output.splitlines()[-60:]:
        errors.print(Text(f"    {line}", style="dim"), soft_wrap=True)
    errors.print("chorus: error: the demo failed; it stops everything it started")


# -- the figures ---------------------------------------------------------------------------


def _uc(value: int) -> str:
    return f"{value:,} µc"


def _print_figures(console: Console, demo: CoopDemo, value: dict[str, Any]) -> None:
    """What the listener paid, where the money went and what each host earned: the
    tally all three nodes printed (`chorus ledger tally`), with the demo's names."""
    params = demo.coop["params"]
    listener, artist = demo.keys["listener"], demo.keys["artist"]
    mine = value["plays"].get(listener, {})

    paid = Table("track", "paid plays", "prices (µc)", "spent", "next play", box=box.SIMPLE,
                 title="what the listener paid (stream to own)", title_justify="left")
    for column in paid.columns[1:]:
        column.justify = "right"
    for track in demo.release["tracks"]:
        stats = mine.get(track["cid"])
        if stats is None:
            continue
        prices = [play["price"] for play in demo.plays if play["track"] == track["cid"]]
        if stats["owned"]:
            upcoming = "free (owned)"
        else:
            upcoming = _uc(params["play_price"] * 2 ** stats["paid"])
        paid.add_row(track["title"], f"{stats['paid']} of {params['plays_to_own']}",
                     " → ".join(f"{price:,}" for price in prices),
                     _uc(stats["spent"]), upcoming)
    console.print(paid)

    totals = value["totals"]
    host_pay: dict[str, int] = {}
    host_bytes: dict[str, int] = {}
    for figures in value["epochs"].values():
        for peer, pay in figures["host_pay"].items():
            host_pay[peer] = host_pay.get(peer, 0) + pay
        for peer, count in figures["host_bytes"].items():
            host_bytes[peer] = host_bytes.get(peer, 0) + count
    artist_pct = params["artist_share_bps"] // 100
    money = Table("", "µc", box=box.SIMPLE, title="where the money went",
                  title_justify="left")
    money.columns[1].justify = "right"
    money.add_row("the treasury topped up the listener", f"{totals['topups']:,}")
    money.add_row("the listener paid for plays", f"{totals['paid_plays']:,}")
    money.add_row("  left in the listener's wallet", f"{value['balances'].get(listener, 0):,}")
    money.add_row(f"  to the artist ({artist_pct}% of each play)",
                  f"{value['earnings'].get(artist, 0):,}")
    money.add_row(f"  to the co-op ({100 - artist_pct}%)", f"{totals['coop']:,}")
    money.add_row("    of which the hosting pool", f"{totals['hosting_pool']:,}")
    names = demo.peer_names
    for peer in sorted(host_pay, key=lambda p: names.get(p, p)):
        money.add_row(f"      paid to {names.get(peer, peer)} for hosting", f"{host_pay[peer]:,}")
    money.add_row("    kept by the co-op", f"{totals['coop_retained']:,}")
    console.print(money)

    if host_bytes:
        roles = {node.peer_id: node for node in demo.nodes}
        hosts = Table("host", "bytes served to the listener", "hosting pay", "peer id",
                      box=box.SIMPLE, title="hosting pay (bytes the listener acknowledged)",
                      title_justify="left")
        hosts.columns[1].justify = hosts.columns[2].justify = "right"
        for peer in sorted(host_bytes, key=lambda p: names.get(p, p)):
            node: DemoNode | None = roles.get(peer)
            hosts.add_row(names.get(peer, "?"), f"{host_bytes[peer]:,}",
                          _uc(host_pay.get(peer, 0)), peer if node is None else "…" + peer[-12:])
        console.print(hosts)


def _print_urls(console: Console, demo: CoopDemo, once: bool) -> None:
    when = "until the demo stops" if not once else "while the demo ran"
    console.print(f"[bold]the web app of each node[/bold] ({when}; the link carries the "
                  "node's API token):", soft_wrap=True)
    for node in demo.nodes:
        console.print(f"  {node.label}  {escape(node.web_url)}  ({node.role})", soft_wrap=True)
