"""`chorus status`: the node at a glance — who it is, whom it talks to, what it
stores, where its ledger stands and what its keys hold in the co-op.

While a daemon runs it owns the repo, so the facts come from its API
(`/api/chorus/v1`: /node, /peers, /store, /ledger, /coop, /tally, /wallets/{key}),
through the same client `chorus ledger` uses. Without one they come from the repo
itself, through the same views the API runs (node/ledger_views.py, node/coop.py),
marked "daemon: not running" and with no peers (only a daemon has any).

Every section stands alone: one that cannot be read (the daemon refused, the genesis
file is broken, the repo is locked by another command) says why, and the others are
still shown. A node in no co-op shows "no co-op" and has no wallets or hosting pay.
`--json` prints the same facts as one document: each section is an object, null when
it does not apply, or `{"error": MESSAGE}` when it could not be read.
"""

from __future__ import annotations

import argparse
import http.client
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey
from rich import box
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from node import coop as coop_views
from node import ledger_views as views
from node.errors import RepoError
from node.identity import load_identity
from node.keystore import Keystore
from node.repo import CONFIG_FILE, Repo
from protocol.errors import ChorusError

from .console import emit_json
from .coop import _console, _money
from .ledger import _daemon, _LedgerApi, _plural, _when

__all__ = ["human_size", "register"]

#: Peers listed, most bytes exchanged first (the counts cover them all).
TOP_PEERS = 5
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
#: What one section may fail with; the others are still shown.
_SECTION_ERRORS = (ChorusError, OSError, http.client.HTTPException, ValueError, KeyError)

EPILOG = """\
example:
  chorus status
  chorus status --as alice
  chorus status --json | jq .ledger.tree_head

Through a running daemon: node, peers, storage, ledger, co-op, wallets, hosting pay.
Without one: the same from the repo, with "daemon: not running" and no peers.
"""


def register(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser(
        "status",
        help="a summary of the node: peers, storage, ledger head, co-op, wallets",
        description=(
            "A summary of the node: identity and addresses, peers, storage, the ledger's "
            "size and newest signed tree head, the co-op, the wallets of this repo's keys "
            "and the hosting pay this node earned. Goes through the daemon when one runs."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument(
        "--as", dest="as_name", default=None, metavar="NAME",
        help="show only this key's wallet (`chorus key list`), even if it holds nothing",
    )
    status.add_argument("--json", action="store_true", help="print the facts as one JSON document")
    status.set_defaults(run=run_status)


# -- formatting ---------------------------------------------------------------------------------


def human_size(size: int | None) -> str:
    """`1536` -> `1.5 KiB`; bytes below 1 KiB exactly (`512 B`)."""
    if size is None:
        return "-"
    value = float(size)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _age(ms: int) -> str:
    """A duration in milliseconds as `42s`, `5m 3s`, `3h 2m`, `2d 4h`."""
    seconds = max(ms, 0) // 1000
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _section(read: Callable[[], Any]) -> Any:
    """`read()`, or `{"error": ...}` saying why it could not be read."""
    try:
        return read()
    except _SECTION_ERRORS as exc:
        return {"error": _error_text(exc)}


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def _failed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"error"}


# -- gathering the facts ------------------------------------------------------------------------


def _ledger_section(answer: dict[str, Any], now: int) -> dict[str, Any]:
    """The ledger status with the tree head's age and the entries it does not cover."""
    head = answer.get("tree_head")
    if head is not None:
        answer["tree_head"] = {**head, "age_ms": max(now - head["time"], 0)}
        answer["uncovered"] = answer["size"] - head["index"] - 1
    else:
        answer["uncovered"] = answer["size"]
    return answer


def _peers_section(peers: list[dict[str, Any]]) -> dict[str, Any]:
    def exchanged(peer: dict[str, Any]) -> int:
        return peer["exchange"]["bytes_sent"] + peer["exchange"]["bytes_received"]

    ordered = sorted(peers, key=lambda p: (-exchanged(p), not p["connected"], p["peer_id"]))
    return {
        "connected": sum(1 for p in peers if p["connected"]),
        "known": len(peers),
        "banned": sum(1 for p in peers if p["penalty"] and p["penalty"]["banned"]),
        "top": [
            {
                "peer_id": p["peer_id"],
                "connected": p["connected"],
                "bytes_sent": p["exchange"]["bytes_sent"],
                "bytes_received": p["exchange"]["bytes_received"],
                "blocks_sent": p["exchange"]["blocks_sent"],
                "blocks_received": p["exchange"]["blocks_received"],
                "penalty": p["penalty"],
            }
            for p in ordered[:TOP_PEERS]
        ],
    }


def _coop_section(genesis: dict[str, Any], tally: Any) -> dict[str, Any]:
    section = {
        "id": genesis["id"],
        "name": genesis["name"],
        "board": len(genesis["board"]),
        "treasury": len(genesis["treasury"]),
        "created": genesis["time"],
    }
    if not _failed(tally):
        section.update(
            members=len(tally["members"]),
            entries=tally["entries"],
            anomalies=len(tally["anomalies"]),
        )
    return section


def _wallet_keys(data_dir: Path, tally: dict[str, Any], only: str | None) -> list[tuple[str, str]]:
    """(name, public hex) of the keys to show: `only`, or every key of the keystore
    the tally knows (a wallet, top-ups, earnings or a membership)."""
    store = Keystore(data_dir)
    if only is not None:
        return [(only, store.info(only).public_hex)]
    known = set(tally["balances"]) | set(tally["topups"]) | set(tally["earnings"])
    known |= set(tally["members"])
    return [(info.name, info.public_hex) for info in store.list() if info.public_hex in known]


def _wallets_section(
    data_dir: Path, tally: Any, only: str | None, wallet: Callable[[str], dict[str, Any]]
) -> Any:
    if _failed(tally):
        return tally

    def read() -> list[dict[str, Any]]:
        return [{"name": name, **wallet(key)} for name, key in _wallet_keys(data_dir, tally, only)]

    return _section(read)


def _hosting_section(peer_id: str | None, tally: Any) -> Any:
    """What this node's peer id earned hosting, summed over the tally's epochs."""
    if _failed(tally):
        return tally
    if peer_id is None:
        return {"error": "the node's peer ID is unknown"}
    earned = served = 0
    epochs = []
    for epoch, figures in tally["epochs"].items():
        pay, count = figures["host_pay"].get(peer_id, 0), figures["host_bytes"].get(peer_id, 0)
        if pay or count:
            epochs.append({"epoch": int(epoch), "pay": pay, "bytes": count})
            earned += pay
            served += count
    return {"peer_id": peer_id, "earned": earned, "bytes": served, "epochs": epochs}


def _through_daemon(api: _LedgerApi, args: argparse.Namespace, now: int) -> dict[str, Any]:
    node = _section(lambda: api.get("/node"))
    peer_id = None if _failed(node) else node["peer_id"]
    facts: dict[str, Any] = {
        "daemon": {"running": True, "api": f"http://{api.host}:{api.port}"},
        "node": node
        if _failed(node)
        else {
            "peer_id": node["peer_id"],
            "public_key": node["public_key"],
            "addresses": node["addresses"],
            "version": node["version"],
            "data_dir": str(args.data_dir),
        },
        "peers": _section(lambda: _peers_section(api.get("/peers")["peers"])),
        "storage": _section(lambda: api.get("/store")),
        "ledger": _section(lambda: _ledger_section(api.get("/ledger"), now)),
    }
    in_coop = _failed(node) or node["coop"] is not None
    if not in_coop:
        return {**facts, "coop": None, "wallets": None, "hosting": None}
    genesis = _section(lambda: api.get("/coop"))
    if _failed(genesis):
        return {**facts, "coop": genesis, "wallets": genesis, "hosting": genesis}
    tally = _section(lambda: api.get("/tally"))
    return {
        **facts,
        "coop": _coop_section(genesis, tally),
        "wallets": _wallets_section(
            args.data_dir, tally, args.as_name, lambda key: api.get("/wallets/" + key)
        ),
        "hosting": _hosting_section(peer_id, tally),
    }


def _from_repo(args: argparse.Namespace, now: int) -> dict[str, Any]:
    data_dir: Path = args.data_dir
    facts: dict[str, Any] = {"daemon": {"running": False, "api": None}, "peers": None}
    genesis = _section(lambda: coop_views.load_genesis(data_dir))
    try:
        repo = Repo.open(data_dir)
    except RepoError as exc:
        if not (data_dir / CONFIG_FILE).exists():
            raise  # no repo at all: nothing to summarise
        # Locked by another command, or broken: say so in each section needing it.
        unreadable = {"error": _error_text(exc)}
        return {
            **facts,
            "node": _section(lambda: _offline_node(load_identity(data_dir), data_dir)),
            "storage": unreadable,
            "ledger": unreadable,
            "coop": _offline_coop(genesis, unreadable),
            "wallets": None if genesis is None else unreadable,
            "hosting": None if genesis is None else unreadable,
        }
    with repo:
        facts["node"] = _offline_node(repo.identity, data_dir)
        peer_id = facts["node"]["peer_id"]
        facts["storage"] = _section(lambda: _store_stat(repo))
        facts["ledger"] = _section(lambda: _offline_ledger(repo, now))
        if genesis is None:
            return {**facts, "coop": None, "wallets": None, "hosting": None}
        if _failed(genesis):
            return {**facts, "coop": genesis, "wallets": genesis, "hosting": genesis}
        result = _section(lambda: coop_views.tally_store(repo.ledger, genesis))
        tally = result if _failed(result) else coop_views.tally_json(result, genesis)
        return {
            **facts,
            "coop": _offline_coop(genesis, tally),
            "wallets": _wallets_section(
                data_dir, tally, args.as_name,
                lambda key: coop_views.wallet_json(result, bytes.fromhex(key)),
            ),
            "hosting": _hosting_section(peer_id, tally),
        }


def _offline_node(identity: SigningKey, data_dir: Path) -> dict[str, Any]:
    from node.identity import peer_id_of  # libp2p is heavy to import: only when asked

    return {
        "peer_id": peer_id_of(identity),
        "public_key": bytes(identity.verify_key).hex(),
        "addresses": [],
        "version": None,
        "data_dir": str(data_dir),
    }


def _offline_coop(genesis: Any, tally: Any) -> Any:
    if genesis is None or _failed(genesis):
        return genesis
    return _coop_section(coop_views.genesis_json(genesis), tally)


def _store_stat(repo: Repo) -> dict[str, Any]:
    stat = repo.blockstore.stat()
    free = None if stat.quota is None else max(stat.quota - stat.bytes, 0)
    return {"blocks": stat.blocks, "bytes": stat.bytes, "quota": stat.quota, "free": free}


def _offline_ledger(repo: Repo, now: int) -> dict[str, Any]:
    answer = views.status(repo.ledger)
    # Counters count what a running daemon did; without one there are none.
    answer.update(pending=None, counters=None, sync=None, replication=None)
    return _ledger_section(answer, now)


def gather(args: argparse.Namespace) -> dict[str, Any]:
    """Every fact `chorus status` shows, as its --json document."""
    if args.as_name is not None:
        Keystore(args.data_dir).info(args.as_name)  # a name that is no key: refuse now
    now = _now_ms()
    api = _daemon(args)
    facts = _from_repo(args, now) if api is None else _through_daemon(api, args, now)
    return {"time": now, **facts}


# -- printing -----------------------------------------------------------------------------------


def _fields(rows: list[tuple[str, str | Text]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in rows:
        grid.add_row(label, value if isinstance(value, Text) else Text(value))
    return grid


def _problem(value: dict[str, Any]) -> Text:
    return Text("unavailable: " + value["error"], style="red")


def _panel(title: str, body: Any) -> Panel:
    return Panel(body, title=f"[bold]{title}[/]", title_align="left", box=box.ROUNDED,
                 expand=False)


def _node_panel(facts: dict[str, Any]) -> Panel:
    node, daemon, coop = facts["node"], facts["daemon"], facts["coop"]
    rows: list[tuple[str, str | Text]] = []
    if daemon["running"]:
        rows.append(("daemon", Text("running", style="green")))
        rows.append(("API", daemon["api"]))
    else:
        rows.append(("daemon", Text("not running", style="yellow")))
    if _failed(node):
        rows.append(("node", _problem(node)))
    else:
        rows.append(("peer ID", node["peer_id"]))
        rows.append(("public key", node["public_key"]))
        if daemon["running"]:
            rows.append(("addresses", "\n".join(node["addresses"]) or "none"))
            rows.append(("version", node["version"]))
        rows.append(("data", node["data_dir"]))
    if coop is None:
        rows.append(("co-op", Text("no co-op", style="dim")))
    elif _failed(coop):
        rows.append(("co-op", _problem(coop)))
    else:
        rows.append(("co-op", f"{coop['name']}  ({coop['id']})"))
        line = f"board {coop['board']}, treasury {coop['treasury']}"
        if "members" in coop:
            line += (f", {_plural(coop['members'], 'member')}, "
                     f"{_plural(coop['entries'], 'entry', 'entries')} counted, "
                     f"{_plural(coop['anomalies'], 'anomaly', 'anomalies')}")
        rows.append(("", line))
    return _panel("node", _fields(rows))


def _peers_panel(peers: Any) -> Panel:
    if peers is None:
        return _panel("peers", Text("none: the daemon is not running", style="dim"))
    if _failed(peers):
        return _panel("peers", _problem(peers))
    summary = f"{peers['connected']} connected, {peers['known']} known"
    if peers["banned"]:
        summary += f", {peers['banned']} banned"
    if not peers["top"]:
        return _panel("peers", Text(summary))
    table = Table("peer", "connected", "sent", "received", "penalty", box=box.SIMPLE)
    for column in table.columns[2:4]:
        column.justify = "right"
    for peer in peers["top"]:
        penalty = peer["penalty"]
        table.add_row(
            Text(peer["peer_id"]), "yes" if peer["connected"] else "no",
            human_size(peer["bytes_sent"]), human_size(peer["bytes_received"]),
            "" if penalty is None else Text(
                f"{penalty['strikes']} strikes" + (" (banned)" if penalty["banned"] else "")
            ),
        )
    return _panel("peers", Group(Text(summary + "; top by bytes exchanged:"), table))


def _storage_panel(storage: Any) -> Panel:
    if _failed(storage):
        return _panel("storage", _problem(storage))
    quota = storage["quota"]
    rows: list[tuple[str, str | Text]] = [
        ("blocks", f"{storage['blocks']:,}"),
        ("stored", f"{human_size(storage['bytes'])} ({storage['bytes']:,} bytes)"),
        ("quota", "none" if quota is None else human_size(quota)),
    ]
    if quota is not None:
        used = 100 * storage["bytes"] / quota if quota else 100.0
        rows.append(("free", f"{human_size(storage['free'])} ({used:.0f}% used)"))
    return _panel("storage", _fields(rows))


def _ledger_panel(ledger: Any) -> Panel:
    if _failed(ledger):
        return _panel("ledger", _problem(ledger))
    head = ledger["tree_head"]
    rows: list[tuple[str, str | Text]] = [
        ("entries", f"{ledger['size']:,}"),
        ("root", ledger["root"]),
        ("feeds", str(ledger["feeds"])),
    ]
    if head is None:
        rows.append(("tree head", Text("none signed yet (`chorus ledger tree-head --sign`)",
                                       style="dim")))
    else:
        rows.append(("tree head", f"size {head['size']}, signed {_when(head['time'])} "
                                  f"({_age(head['age_ms'])} ago)"))
        rows.append(("", head["id"]))
        rows.append(("uncovered", _plural(ledger["uncovered"], "entry", "entries")
                          + " after the tree head"))
    if ledger["counters"] is not None:
        rows.append(("pending", str(ledger["pending"])))
        rows.append(("counters", ", ".join(f"{k} {v}" for k, v in ledger["counters"].items())))
    for name in ("sync", "replication"):
        if ledger.get(name) is not None:
            rows.append((name, ", ".join(f"{k} {v}" for k, v in ledger[name].items())))
    return _panel("ledger", _fields(rows))


def _wallets_panel(wallets: Any) -> Panel:
    if wallets is None:
        return _panel("wallets", Text("no co-op", style="dim"))
    if _failed(wallets):
        return _panel("wallets", _problem(wallets))
    if not wallets:
        return _panel("wallets", Text("no key of this repo has a wallet or membership",
                                      style="dim"))
    table = Table("key", "public key", "class", "balance", "topped up", "earned", "tracks",
                  box=box.SIMPLE)
    for column in table.columns[3:]:
        column.justify = "right"
    for wallet in wallets:
        owned = sum(1 for track in wallet["tracks"] if track["owned"])
        table.add_row(
            Text(wallet["name"]), wallet["wallet"][:16] + "…", Text(wallet["member"] or "-"),
            _money(wallet["balance"]), _money(wallet["topped_up"]), _money(wallet["earned"]),
            f"{len(wallet['tracks'])} ({owned} owned)",
        )
    return _panel("wallets", table)


def _hosting_panel(hosting: Any) -> Panel:
    if hosting is None:
        return _panel("hosting pay", Text("no co-op", style="dim"))
    if _failed(hosting):
        return _panel("hosting pay", _problem(hosting))
    text = (f"{_money(hosting['earned'])} for {human_size(hosting['bytes'])} acknowledged "
            f"over {_plural(len(hosting['epochs']), 'epoch')}")
    return _panel("hosting pay", _fields([("earned", text), ("as", hosting["peer_id"])]))


def run_status(args: argparse.Namespace) -> int:
    facts = gather(args)
    if args.json:
        emit_json(facts)
        return 0
    console = _console()
    panels = [
        _node_panel(facts),
        _peers_panel(facts["peers"]),
        _storage_panel(facts["storage"]),
        _ledger_panel(facts["ledger"]),
        _wallets_panel(facts["wallets"]),
        _hosting_panel(facts["hosting"]),
    ]
    width = max(console.measure(panel).maximum for panel in panels)
    for panel in panels:
        panel.width, panel.expand = width, True  # one column of equal boxes
        console.print(panel)
    return 0
