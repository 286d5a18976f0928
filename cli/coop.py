"""`chorus coop|member|wallet|vote`: the co-op's rules, and the entries that move its books.

`coop create` writes and signs a genesis with the founding board keys (node/coop.py
keeps it in the repo, `chorus init --coop FILE` and `coop join FILE` copy it into
another, or fetch it by its CID from a member node with `--from URL`, keeping it only
if its hash is that CID); `coop show` prints its rules. The other commands write signed ledger
entries whose bodies docs/economics.md defines — `member.admit`, `member.leave`,
`topup`, `transfer`, `proposal`, `ballot` — exactly as `chorus ledger append` writes
them: through the daemon's POST /api/chorus/v1/ledger/entries when one runs (it owns
the repo and announces the entry to the co-op), else straight into the repo's ledger.
Reads (`member ls`, `wallet show`, `vote show|tally`, and `chorus ledger tally|audit`,
whose printing lives here) are node/coop.py's views, from the daemon's API or the
repo, so both print the same figures.

Why the writes check first: an entry is permanent, and one the tally will not count
(a top-up by a key outside the treasury, a ballot after the vote closed) stays in the
ledger as an anomaly forever. So each write command first checks what it can see
from the genesis and the current tally (who signs, membership, balance, the vote's
window) and refuses with the reason; `--force` writes anyway. After writing, it asks
the tally whether the new entry counts, and exits 1 naming the anomaly if not (an
ineligible ballot is only visible then: eligibility is membership at the opening).

Keys: KEY arguments are a key name in this repo's keystore (`chorus key list`) or a
public key as 64 hex digits; `--as NAME` is always a key name, because it signs.
Amounts are integer micro-credits (µc), or whole credits written `5c` (= 5,000,000 µc).
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich import box
from rich.console import Console
from rich.table import Table

from ledger.econ_kinds import CLASSES, MAX_AMOUNT
from ledger.genesis import Genesis, InvalidGenesis, Params, create_genesis
from ledger.jsonview import body_to_json, id_text
from ledger.tally import TallyInvariantBroken
from node import coop as coop_views
from node import ledger_views as views
from node.atomic_file import atomic_writer
from node.audit import default_workers, verify_export, verify_store
from node.client import find_daemon
from node.coop import CoopError, CoopMismatch
from node.errors import RepoError
from node.keystore import SELF, Keystore
from node.repo import Repo

from .console import emit_json, fail
from .ledger import _daemon, _LedgerApi, _now_ms, _print_fields, _print_report, _when

__all__ = ["register", "run_ledger_audit", "run_ledger_tally"]

_HEX_KEY = re.compile("[0-9a-fA-F]{64}")
_AMOUNT = re.compile(r"([0-9](?:_?[0-9])*)(c?)")
_DURATION = re.compile(r"\+([0-9]+)([smhdw])")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_CREDIT = 1_000_000


# -- argument types ---------------------------------------------------------------------


def amount(text: str) -> int:
    """An amount in µc: digits (``2500000``, ``2_500_000``) or whole credits (``5c``)."""
    match = _AMOUNT.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an amount: integer micro-credits (2500000) or whole "
            "credits (5c); no decimals, no sign"
        )
    value = int(match.group(1).replace("_", "")) * (_CREDIT if match.group(2) else 1)
    if not 1 <= value <= MAX_AMOUNT:
        raise argparse.ArgumentTypeError(
            f"{text!r} is {value} µc; an amount is 1..{MAX_AMOUNT} µc"
        )
    return value


def parse_time(text: str, *, now: int, base: int) -> int:
    """Milliseconds since 1970 from ``now``, ``+DURATION`` (from `base`: +30m, +1h,
    +7d), an ISO 8601 time (UTC unless it says otherwise) or plain milliseconds."""
    text = text.strip()
    if text == "now":
        return now
    relative = _DURATION.fullmatch(text)
    if relative is not None:
        return base + int(relative.group(1)) * _UNIT_MS[relative.group(2)]
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use now, +DURATION (+30m, +1h, +7d), an ISO time "
            "(2026-12-01T18:00Z) or milliseconds since 1970"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _money(value: int) -> str:
    return f"{value:,} µc"


def _console() -> Console:
    """A console at least 160 columns wide: tables hold 64-hex keys and CIDs, which
    must never be cropped (a table wider than the terminal wraps, and stays readable)."""
    console = Console(highlight=False)
    return console if console.width >= 160 else Console(highlight=False, width=160)


def _print_wide(table: Table) -> None:
    _console().print(table)


# -- keys ---------------------------------------------------------------------------------


class _Keys:
    """This repo's key names, to resolve KEY arguments and to label keys in output."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._names: dict[str, str] | None = None

    def store(self) -> Keystore:
        return Keystore(self.data_dir)

    def public(self, text: str) -> bytes:
        """KEY: 64 hex digits, or the name of a key in the keystore."""
        if _HEX_KEY.fullmatch(text):
            return bytes.fromhex(text)
        try:
            return self.store().info(text).public_key
        except RepoError as exc:
            raise ValueError(
                f"{text!r} is neither a 64-hex public key nor a key of this repo ({exc})"
            ) from None

    def signer(self, name: str) -> bytes:
        """The public half of signing key `name` (which must exist here)."""
        return self.store().info(name).public_key

    def names(self) -> dict[str, str]:
        if self._names is None:
            try:
                self._names = {info.public_hex: info.name for info in self.store().list()}
            except RepoError:
                self._names = {}
        return self._names

    def label(self, key_hex: str) -> str:
        """`alice` for a key the keystore knows, else the first 16 hex digits."""
        name = self.names().get(key_hex)
        return name if name is not None else key_hex[:16] + "…"


# -- where the co-op is read and written ----------------------------------------------------


class _Coop:
    """The co-op as one command sees it: through the daemon's API when one runs (it
    owns the repo), else the repo itself. The genesis is read from the repo's files
    either way (node/coop.py takes no lock for that)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.data_dir: Path = args.data_dir
        self.api: _LedgerApi | None = _daemon(args)
        self._genesis: Genesis | None = None

    @property
    def genesis(self) -> Genesis:
        if self._genesis is None:
            self._genesis = coop_views.require_genesis(self.data_dir)
        return self._genesis

    def tally(self, epoch: int | None = None) -> dict[str, Any]:
        if self.api is not None:
            return self.api.get("/tally", {"epoch": epoch})
        genesis = self.genesis
        with Repo.open(self.data_dir) as repo:
            result = coop_views.tally_store(repo.ledger, genesis)
        return coop_views.tally_json(result, genesis, epoch)

    def wallet(self, key: bytes) -> dict[str, Any]:
        if self.api is not None:
            return self.api.get("/wallets/" + key.hex())
        genesis = self.genesis
        with Repo.open(self.data_dir) as repo:
            return coop_views.wallet_json(coop_views.tally_store(repo.ledger, genesis), key)

    def entry(self, text: str) -> dict[str, Any]:
        if self.api is not None:
            return self.api.get("/ledger/entries/" + quote(text, safe=""))
        with Repo.open(self.data_dir) as repo:
            return views.entry_json(repo.ledger, text)

    def write(self, name: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """Sign `body` with key `name` and append it, as `chorus ledger append` does."""
        _ = self.genesis  # a co-op entry belongs in a co-op's ledger: refuse early
        if self.api is not None:
            request = {"key": name, "kind": kind, "body": body_to_json(body)}
            return self.api.post("/ledger/entries", value=request)
        key = Keystore(self.data_dir).get(name)
        with Repo.open(self.data_dir) as repo:
            store = repo.ledger
            views.check_writable(store, kind)
            views.check_feed_open(store, bytes(key.verify_key))
            decision = store.write(key, kind, body, _now_ms())
            return views.written_json(store, decision.entry)


class Refused(CoopError):
    """A write the tally would not count, refused before anything is signed."""


def _refuse(message: str) -> Refused:
    return Refused(f"{message} (--force writes it anyway; the tally will list it as an anomaly)")


def _write(
    coop: _Coop, args: argparse.Namespace, kind: str, body: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Write the entry, then ask the tally whether it counts: (written, tally after,
    the anomalies the tally reports for the new entry)."""
    written = coop.write(args.as_name, kind, body)
    after = coop.tally()
    refused = [a for a in after["anomalies"] if a["entry"] == written["id"]]
    return written, after, refused


def _finish(
    args: argparse.Namespace,
    written: dict[str, Any],
    kind: str,
    refused: list[dict[str, Any]],
    done: str,
    extra: dict[str, Any] | None = None,
) -> int:
    """Print what was written (a line, or JSON) and exit 1 if the tally ignores it."""
    if args.json:
        emit_json(
            {**written, "kind": kind, "counted": not refused, "anomalies": refused,
             **(extra or {})}
        )
    elif not refused:
        print(f"{done} ({written['id']})")
    if refused:
        first = refused[0]
        return fail(
            f"entry {written['id']} was written, but the tally does not count it: "
            f"{first['code']}: {first['message']}"
        )
    return 0


# -- registration ----------------------------------------------------------------------------


def _command(
    verbs: argparse._SubParsersAction, name: str, help_text: str, example: str
) -> argparse.ArgumentParser:
    return verbs.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog="example:\n  " + example.replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _signer_args(parser: argparse.ArgumentParser, role: str) -> None:
    parser.add_argument(
        "--as", dest="as_name", required=True, metavar="NAME",
        help=f"the key that signs: {role} (a key name, `chorus key list`)",
    )
    parser.add_argument(
        "--force", action="store_true",
        help="write the entry even if the tally will not count it",
    )
    parser.add_argument("--json", action="store_true")


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser(
        "coop", help="the co-op: create its genesis, show its rules, join it",
        description="The co-op this node belongs to: its signed genesis (name, board, "
        "treasury, parameters) names it and fixes every rule its tallies follow.",
    )
    verbs = group.add_subparsers(dest="coop_command", metavar="SUBCOMMAND", required=True)
    create = _command(
        verbs, "create", "write and sign a new co-op's genesis with every founding board key",
        "chorus coop create --name 'Riverside Music' --board ann --board ben \\\n"
        "    --treasury till --param play_price=2500 -o riverside.genesis",
    )
    create.add_argument("--name", required=True, help="the co-op's name (1..128 characters)")
    create.add_argument(
        "--board", action="extend", nargs="+", required=True, metavar="KEYNAME",
        help="founding board keys (they admit members): key names in this repo, each signs",
    )
    create.add_argument(
        "--treasury", action="extend", nargs="+", required=True, metavar="KEY",
        help="treasury keys (they top up wallets): key names or 64-hex public keys",
    )
    create.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="override a parameter (docs/economics.md; integers): " + ", ".join(Params().as_dict()),
    )
    create.add_argument(
        "-o", "--output", type=Path, default=None, metavar="FILE",
        help="where to write the genesis (default: NAME.genesis, from the co-op's name)",
    )
    create.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    create.add_argument(
        "--no-join", action="store_true",
        help="only write the file; do not make this repo a node of the new co-op",
    )
    create.add_argument("--json", action="store_true")
    create.set_defaults(run=run_coop_create)

    show = _command(
        verbs, "show", "the co-op's name, board, treasury, parameters and CID",
        "chorus coop show\nchorus coop show --genesis riverside.genesis --json",
    )
    show.add_argument(
        "--genesis", type=Path, default=None, metavar="FILE",
        help="show this genesis file instead of the repo's co-op",
    )
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=run_coop_show)

    join = _command(
        verbs, "join",
        "make this repo a node of the co-op of a genesis file or CID (daemon stopped)",
        "chorus coop join riverside.genesis && chorus daemon\n"
        "chorus coop join bafkrei... --from http://node.example:8080",
    )
    join.add_argument(
        "source", metavar="FILE|CID",
        help="the genesis file (`coop create` -o), or the co-op's CID with --from",
    )
    join.add_argument(
        "--from", dest="from_url", default=None, metavar="URL",
        help="fetch the genesis of CID from this node of the co-op (its HTTP address, API "
        "or public gateway); kept only if its CID is the one given",
    )
    join.add_argument("--json", action="store_true")
    join.set_defaults(run=run_coop_join)

    member = commands.add_parser(
        "member", help="admit members, let them leave, list them",
        description="Membership: member.admit entries by board keys; member.leave by the "
        "board or the member. Votes count members admitted before a vote opens.",
    )
    verbs = member.add_subparsers(dest="member_command", metavar="SUBCOMMAND", required=True)
    admit = _command(
        verbs, "admit", "admit KEY as a member of a class (signed by a board key)",
        "chorus member admit bob --class worker --as ann\n"
        "chorus member admit 3f2a...e1 --class listener --as ann",
    )
    admit.add_argument("key", metavar="KEY", help="key name or 64-hex public key")
    admit.add_argument("--class", dest="member_class", required=True, choices=CLASSES)
    _signer_args(admit, "a board key")
    admit.set_defaults(run=run_member_admit)
    leave = _command(
        verbs, "leave", "end KEY's membership (signed by a board key or the member)",
        "chorus member leave bob --as bob",
    )
    leave.add_argument("key", metavar="KEY", help="key name or 64-hex public key")
    _signer_args(leave, "a board key, or the member itself")
    leave.set_defaults(run=run_member_leave)
    ls = _command(verbs, "ls", "the members now, with their classes", "chorus member ls --json")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=run_member_ls)

    wallet = commands.add_parser(
        "wallet", help="credit: top-ups, balances, plays toward ownership, transfers",
        description="Wallets hold micro-credits (µc): the treasury tops them up, plays "
        "spend them (stream to own), a listener moves them to a new key with a transfer.",
    )
    verbs = wallet.add_subparsers(dest="wallet_command", metavar="SUBCOMMAND", required=True)
    topup = _command(
        verbs, "topup", "credit a wallet (signed by a treasury key)",
        "chorus wallet topup bob 5c --as till\nchorus wallet topup 3f2a...e1 2500000 --as till",
    )
    topup.add_argument("wallet", metavar="WALLET", help="key name or 64-hex public key")
    topup.add_argument("amount", type=amount, metavar="AMOUNT", help="µc, or whole credits: 5c")
    _signer_args(topup, "a treasury key")
    topup.set_defaults(run=run_wallet_topup)
    wshow = _command(
        verbs, "show", "a wallet's balance, and per track its plays and next price",
        "chorus wallet show bob\nchorus wallet show --json",
    )
    wshow.add_argument(
        "key", nargs="?", default=SELF, metavar="KEY",
        help='key name or 64-hex public key (default "self", the node key)',
    )
    wshow.add_argument("--json", action="store_true")
    wshow.set_defaults(run=run_wallet_show)
    transfer = _command(
        verbs, "transfer", "move credit from the signer's wallet to another key",
        "chorus wallet transfer bob-new 1c --as bob",
    )
    transfer.add_argument("to", metavar="TO", help="key name or 64-hex public key")
    transfer.add_argument("amount", type=amount, metavar="AMOUNT", help="µc, or whole credits: 5c")
    _signer_args(transfer, "the wallet that pays")
    transfer.set_defaults(run=run_wallet_transfer)

    vote = commands.add_parser(
        "vote", help="proposals and ballots: one member, one vote",
        description="Votes: a member proposes options with an opening and a closing time "
        "and the classes that vote; each eligible member's last ballot in the window counts.",
    )
    verbs = vote.add_subparsers(dest="vote_command", metavar="SUBCOMMAND", required=True)
    propose = _command(
        verbs, "propose", "put a question to the members (signed by a member)",
        "chorus vote propose --title 'Hosting share' --text 'Raise it to 60%?' \\\n"
        "    --option yes --option no --opens now --closes +7d --class worker --as ann",
    )
    propose.add_argument("--title", required=True, help="1..256 characters")
    propose.add_argument("--text", default="", help="the proposal itself (up to 4096 characters)")
    propose.add_argument(
        "--option", dest="options", action="append", required=True, metavar="TEXT",
        help="an option (2..16, repeat the flag)",
    )
    propose.add_argument(
        "--opens", default="now", metavar="WHEN",
        help="now (default), +DURATION from now, an ISO time (UTC unless given) or ms",
    )
    propose.add_argument(
        "--closes", required=True, metavar="WHEN",
        help="+DURATION after the opening (+1h, +7d), an ISO time or ms",
    )
    propose.add_argument(
        "--class", dest="classes", action="append", choices=CLASSES, default=None,
        help="a class that votes (repeat; default: all three)",
    )
    _signer_args(propose, "a member")
    propose.set_defaults(run=run_vote_propose)
    cast = _command(
        verbs, "cast", "cast (or change) a ballot: an option's number or its text",
        "chorus vote cast bafkrei... yes --as bob\nchorus vote cast bafkrei... 0 --as bob",
    )
    cast.add_argument("proposal", metavar="PROPOSAL_ID", help="the proposal entry's id")
    cast.add_argument("option", metavar="OPTION", help="the option's text, or its number from 0")
    _signer_args(cast, "an eligible member")
    cast.set_defaults(run=run_vote_cast)
    vshow = _command(
        verbs, "show", "a proposal: its text, options, window and the vote so far",
        "chorus vote show bafkrei...",
    )
    vshow.add_argument("proposal", metavar="PROPOSAL_ID")
    vshow.add_argument("--json", action="store_true")
    vshow.set_defaults(run=run_vote_show)
    vtally = _command(
        verbs, "tally", "the results: totals per option and class, quorum, winner",
        "chorus vote tally\nchorus vote tally bafkrei... --json",
    )
    vtally.add_argument("proposal", nargs="?", default=None, metavar="PROPOSAL_ID",
                        help="one proposal (default: every one)")
    vtally.add_argument("--json", action="store_true")
    vtally.set_defaults(run=run_vote_tally)


# -- coop ---------------------------------------------------------------------------------


def _genesis_file_name(name: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.") or "coop"
    return f"{slug}.genesis"


def _parse_params(items: list[str]) -> Params:
    overrides: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidGenesis(f"--param {item!r} must be NAME=VALUE (e.g. play_price=2500)")
        if name in overrides:
            raise InvalidGenesis(f"--param {name} is given twice")
        overrides[name] = value
    return Params.from_overrides(overrides)


def run_coop_create(args: argparse.Namespace) -> int:
    keys = _Keys(args.data_dir)
    store = keys.store()
    params = _parse_params(args.param)
    board = [store.get(name) for name in args.board]
    treasury = [keys.public(text) for text in args.treasury]
    genesis = create_genesis(args.name, board, treasury, params, _now_ms())
    output = args.output or Path(_genesis_file_name(args.name))
    if output.exists() and not args.overwrite:
        raise CoopError(f"{output} exists; choose another -o FILE or pass --overwrite")
    with atomic_writer(output) as out:
        out.write(genesis.encoded)
    joined = False
    if not args.no_join:
        current = coop_views.repo_coop_id(args.data_dir)
        if current is None:
            try:
                coop_views.join_coop(args.data_dir, genesis.encoded)
            except RepoError as exc:
                raise CoopError(
                    f"wrote {output}, but this repo did not join the co-op: {exc}; "
                    f"stop the daemon, then `chorus coop join {output}`"
                ) from None
            joined = True
    if args.json:
        emit_json({**coop_views.genesis_json(genesis), "file": str(output), "joined": joined})
        return 0
    print(f"created co-op {genesis.name!r}: {genesis.id_text}")
    print(f"wrote the signed genesis to {output} (members join with `chorus init --coop "
          f"{output}` or `chorus coop join {output}`)")
    if joined:
        print(f"this repo is now a node of the co-op ({args.data_dir}); once its daemon "
              f"runs, members can also join by CID: `chorus init --coop {genesis.id_text} "
              "--from URL` (URL: this node's HTTP address)")
    elif not args.no_join:
        print(f"this repo stays a node of co-op {coop_views.repo_coop_id(args.data_dir)}")
    return 0


def run_coop_show(args: argparse.Namespace) -> int:
    if args.genesis is not None:
        genesis = coop_views.read_genesis(args.genesis)
    else:
        genesis = coop_views.require_genesis(args.data_dir)
    value = coop_views.genesis_json(genesis)
    if args.json:
        emit_json(value)
        return 0
    keys = _Keys(args.data_dir)
    rows = [("name", genesis.name), ("co-op", genesis.id_text), ("created", _when(genesis.time))]
    for role in ("board", "treasury"):
        lines = [
            key + ("" if keys.names().get(key) is None else f"  ({keys.names()[key]})")
            for key in value[role]
        ]
        rows.append((role, "\n".join(lines)))
    _print_fields(rows)
    console = _console()
    table = Table("parameter", "value", box=box.SIMPLE, title="parameters")
    table.columns[1].justify = "right"
    for name, number in value["params"].items():
        table.add_row(name, f"{number:,}")
    console.print(table)
    return 0


def run_coop_join(args: argparse.Namespace) -> int:
    # A clear error before touching the repo.
    genesis = coop_views.find_genesis(args.source, args.from_url)
    if find_daemon(args.data_dir) is not None:
        raise CoopError(
            "a daemon is running on this repo; it reads the co-op when it starts: stop it, "
            "join, then start it again"
        )
    coop_views.join_coop(args.data_dir, genesis.encoded)
    if args.json:
        emit_json(coop_views.genesis_json(genesis))
    else:
        print(f"this repo is a node of co-op {genesis.name!r} ({genesis.id_text})")
    return 0


# -- member -------------------------------------------------------------------------------


def run_member_admit(args: argparse.Namespace) -> int:
    coop, keys = _Coop(args), _Keys(args.data_dir)
    member = keys.public(args.key)
    author = keys.signer(args.as_name)
    if not args.force:
        if author not in coop.genesis.board:
            raise _refuse(f"key {args.as_name!r} is not on the board of co-op "
                          f"{coop.genesis.name!r}; only board keys admit members")
        current = coop.tally()["members"].get(member.hex())
        if current == args.member_class:
            raise _refuse(f"{keys.label(member.hex())} is already a {current} member")
    body = {"member": member, "class": args.member_class}
    written, _, refused = _write(coop, args, "member.admit", body)
    done = f"admitted {keys.label(member.hex())} as a {args.member_class} member"
    return _finish(args, written, "member.admit", refused, done)


def run_member_leave(args: argparse.Namespace) -> int:
    coop, keys = _Coop(args), _Keys(args.data_dir)
    member = keys.public(args.key)
    author = keys.signer(args.as_name)
    if not args.force:
        if author not in coop.genesis.board and author != member:
            raise _refuse(f"key {args.as_name!r} is neither on the board nor the member")
        if member.hex() not in coop.tally()["members"]:
            raise _refuse(f"{keys.label(member.hex())} is not a member")
    written, _, refused = _write(coop, args, "member.leave", {"member": member})
    return _finish(args, written, "member.leave", refused,
                   f"{keys.label(member.hex())} is no longer a member")


def run_member_ls(args: argparse.Namespace) -> int:
    coop, keys = _Coop(args), _Keys(args.data_dir)
    members = [
        {"key": key, "class": cls, "name": keys.names().get(key)}
        for key, cls in coop.tally()["members"].items()
    ]
    if args.json:
        emit_json({"members": members})
        return 0
    table = Table("member", "class", "name", box=box.SIMPLE)
    for item in members:
        table.add_row(item["key"], item["class"], item["name"] or "")
    _print_wide(table)
    print(f"{len(members)} member{'s' if len(members) != 1 else ''}")
    return 0


# -- wallet -------------------------------------------------------------------------------


def run_wallet_topup(args: argparse.Namespace) -> int:
    coop, keys = _Coop(args), _Keys(args.data_dir)
    wallet = keys.public(args.wallet)
    author = keys.signer(args.as_name)
    if not args.force and author not in coop.genesis.treasury:
        raise _refuse(f"key {args.as_name!r} is not in the treasury of co-op "
                      f"{coop.genesis.name!r}; only treasury keys top up wallets")
    body = {"wallet": wallet, "amount": args.amount}
    written, after, refused = _write(coop, args, "topup", body)
    balance = after["balances"].get(wallet.hex(), 0)
    done = (f"topped up {keys.label(wallet.hex())} with {_money(args.amount)}; "
            f"balance {_money(balance)}")
    return _finish(args, written, "topup", refused, done, {"balance": balance})


def run_wallet_transfer(args: argparse.Namespace) -> int:
    coop, keys = _Coop(args), _Keys(args.data_dir)
    target = keys.public(args.to)
    author = keys.signer(args.as_name)
    if not args.force:
        if target == author:
            raise _refuse("a transfer goes to another key, not to its own author")
        have = coop.wallet(author)["balance"]
        if args.amount > have:
            raise _refuse(f"wallet {args.as_name!r} holds {_money(have)}, "
                          f"less than {_money(args.amount)}")
    body = {"to": target, "amount": args.amount}
    written, after, refused = _write(coop, args, "transfer", body)
    balance = after["balances"].get(author.hex(), 0)
    done = (f"moved {_money(args.amount)} from {args.as_name} to "
            f"{keys.label(target.hex())}; {args.as_name} holds {_money(balance)}")
    return _finish(args, written, "transfer", refused, done, {"balance": balance})


def run_wallet_show(args: argparse.Namespace) -> int:
    coop, keys = _Coop(args), _Keys(args.data_dir)
    key = keys.public(args.key)
    value = coop.wallet(key)
    if args.json:
        emit_json(value)
        return 0
    name = keys.names().get(value["wallet"])
    _print_fields([
        ("wallet", value["wallet"] + ("" if name is None else f"  ({name})")),
        ("balance", _money(value["balance"])),
        ("topped up", _money(value["topped_up"])),
        ("earned", _money(value["earned"]) + "  (as a payee of releases)"),
        ("member", value["member"] or "no"),
    ])
    if not value["tracks"]:
        print("no counted plays yet")
        return 0
    own = value["plays_to_own"]
    table = Table("track", "paid", "unpaid", "free", "spent", "next play", box=box.SIMPLE)
    for column in table.columns[1:]:
        column.justify = "right"
    for track in value["tracks"]:
        next_play = "owned" if track["owned"] else _money(track["next_price"])
        table.add_row(track["track"], f"{track['paid']}/{own}", str(track["unpaid"]),
                      str(track["free"]), _money(track["spent"]), next_play)
    _print_wide(table)
    return 0


# -- vote ---------------------------------------------------------------------------------


def _proposal_result(coop: _Coop, text: str, value: dict[str, Any]) -> dict[str, Any]:
    """The tally's result of proposal `text`, or a CoopError saying why there is none."""
    proposal_id = views.parse_entry_id(text)  # LedgerRequestError for a non-id
    canonical = id_text(proposal_id)
    if canonical in value["votes"]:
        return value["votes"][canonical]
    entry = coop.entry(canonical)  # UnknownEntry if the ledger does not hold it
    if entry["kind"] != "proposal":
        raise CoopError(f"entry {canonical} is a {entry['kind']}, not a proposal")
    reasons = [a["message"] for a in value["anomalies"] if a["entry"] == canonical]
    raise CoopError(
        f"proposal {canonical} does not count"
        + (f": {reasons[0]}" if reasons else "")
    )


def _option_index(options: list[str], text: str) -> int:
    if text in options:
        return options.index(text)
    if text.isdigit() and int(text) < len(options):
        return int(text)
    folded = [i for i, option in enumerate(options) if option.casefold() == text.casefold()]
    if len(folded) == 1:
        return folded[0]
    listed = ", ".join(f"{i}: {option!r}" for i, option in enumerate(options))
    raise ValueError(f"{text!r} is not an option of this proposal ({listed})")


def run_vote_propose(args: argparse.Namespace) -> int:
    coop, keys = _Coop(args), _Keys(args.data_dir)
    now = _now_ms()
    opens = parse_time(args.opens, now=now, base=now)
    closes = parse_time(args.closes, now=now, base=opens)
    if closes <= opens:
        raise ValueError(f"--closes ({_when(closes)}) must be after --opens ({_when(opens)})")
    classes = sorted(set(args.classes or CLASSES), key=CLASSES.index)
    author = keys.signer(args.as_name)
    if not args.force and author.hex() not in coop.tally()["members"]:
        raise _refuse(f"key {args.as_name!r} is not a member; only members propose")
    body = {"title": args.title, "text": args.text, "options": list(args.options),
            "opens": opens, "closes": closes, "classes": classes}
    written, _, refused = _write(coop, args, "proposal", body)
    done = (f"proposed {args.title!r} to {', '.join(classes)} members, open "
            f"{_when(opens)} to {_when(closes)}: vote with `chorus vote cast {written['id']} "
            "OPTION --as NAME`")
    return _finish(args, written, "proposal", refused, done)


def run_vote_cast(args: argparse.Namespace) -> int:
    coop, keys = _Coop(args), _Keys(args.data_dir)
    author = keys.signer(args.as_name)
    value = coop.tally()
    result = _proposal_result(coop, args.proposal, value)
    option = _option_index(result["options"], args.option)
    if not args.force:
        now = _now_ms()
        if now < result["opens"]:
            raise _refuse(f"the vote opens at {_when(result['opens'])}")
        if now >= result["closes"]:
            raise _refuse(f"the vote closed at {_when(result['closes'])}")
        cls = value["members"].get(author.hex())
        if cls is None or cls not in result["classes"]:
            raise _refuse(
                f"key {args.as_name!r} is not a member of a voting class "
                f"({', '.join(result['classes'])})"
            )
    proposal_id = views.parse_entry_id(args.proposal)
    written, _, refused = _write(coop, args, "ballot", {"proposal": proposal_id,
                                                       "option": option})
    done = f"{args.as_name} votes {result['options'][option]!r} on {result['title']!r}"
    return _finish(args, written, "ballot", refused, done)


def _print_vote(result: dict[str, Any], keys: _Keys, proposal_id: str) -> None:
    by_class = ", ".join(f"{c} {n}" for c, n in result["eligible_by_class"].items())
    winner = result["winner"]
    _print_fields([
        ("proposal", f"{result['title']}  ({proposal_id})"),
        ("by", keys.label(result["author"])),
        ("window", f"{_when(result['opens'])} to {_when(result['closes'])}"),
        ("classes", ", ".join(result["classes"])),
        ("eligible", f"{result['eligible']} ({by_class})"),
        ("counted", str(result["counted"])),
        ("quorum", "met" if result["quorum_met"] else "not met"),
        ("winner", "-" if winner is None else f"{winner}: {result['options'][winner]}"),
    ])
    console = _console()
    table = Table("#", "option", "votes", *result["classes"], box=box.SIMPLE)
    for i, option in enumerate(result["options"]):
        per_class = [str(result["by_class"][c][i]) for c in result["classes"]]
        table.add_row(str(i), option, str(result["totals"][i]), *per_class)
    console.print(table)


def run_vote_show(args: argparse.Namespace) -> int:
    coop, keys = _Coop(args), _Keys(args.data_dir)
    value = coop.tally()
    entry = coop.entry(args.proposal)
    if entry["kind"] != "proposal":
        raise CoopError(f"entry {entry['id']} is a {entry['kind']}, not a proposal")
    result = value["votes"].get(entry["id"])
    anomalies = [a for a in value["anomalies"] if a["entry"] == entry["id"]]
    if args.json:
        emit_json({"proposal": entry, "result": result, "anomalies": anomalies})
        return 0
    if result is None:
        reason = anomalies[0]["message"] if anomalies else "unknown reason"
        print(f"proposal {entry['id']} by {keys.label(entry['author'])} does not count: {reason}")
        return 0
    _print_vote(result, keys, entry["id"])
    if entry["body"]["text"]:
        print(entry["body"]["text"])
    return 0


def run_vote_tally(args: argparse.Namespace) -> int:
    coop, keys = _Coop(args), _Keys(args.data_dir)
    value = coop.tally()
    if args.proposal is not None:
        result = _proposal_result(coop, args.proposal, value)
        chosen = [(id_text(views.parse_entry_id(args.proposal)), result)]
    else:
        chosen = sorted(value["votes"].items(), key=lambda item: (item[1]["opens"], item[0]))
    if args.json:
        emit_json({"proposals": [{"id": pid, **result} for pid, result in chosen]})
        return 0
    if not chosen:
        print("no proposals yet")
    for pid, result in chosen:
        _print_vote(result, keys, pid)
    return 0


# -- chorus ledger tally | audit (registered in cli/ledger.py) -------------------------------


def _print_tally(value: dict[str, Any], keys: _Keys) -> None:
    """The tally as tables: summary, wallets, plays, payees, epochs and hosts, votes,
    anomalies (one plain line each, greppable)."""
    totals = value["totals"]
    _print_fields([
        ("co-op", value["coop"]),
        ("entries", str(value["entries"])),
        ("members", str(len(value["members"]))),
        ("topped up", _money(totals["topups"])),
        ("balances", _money(totals["balances"])),
        ("paid plays", f"{totals['plays_paid']} for {_money(totals['paid_plays'])}"),
        ("unpaid plays", str(value["unpaid_plays"])),
        ("free plays", str(totals["plays_free"])),
        ("to payees", _money(totals["payees"])),
        ("co-op share", f"{_money(totals['coop'])} (hosting pool "
         f"{_money(totals['hosting_pool'])}, host pay {_money(totals['host_pay'])}, "
         f"retained {_money(totals['coop_retained'])})"),
        ("anomalies", str(len(value["anomalies"]))),
    ])
    console = _console()
    if value["balances"] or value["topups"]:
        table = Table("wallet", "topped up", "balance", box=box.SIMPLE, title="wallets")
        for column in table.columns[1:]:
            column.justify = "right"
        for key in sorted(set(value["balances"]) | set(value["topups"])):
            table.add_row(keys.label(key), _money(value["topups"].get(key, 0)),
                          _money(value["balances"].get(key, 0)))
        console.print(table)
    if value["plays"]:
        table = Table("listener", "track", "counted", "paid", "unpaid", "free", "spent", "owned",
                      box=box.SIMPLE, title="plays")
        for column in table.columns[2:7]:
            column.justify = "right"
        for listener, tracks in value["plays"].items():
            for track, stats in tracks.items():
                table.add_row(keys.label(listener), track, str(stats["counted"]),
                              str(stats["paid"]), str(stats["unpaid"]), str(stats["free"]),
                              _money(stats["spent"]), "yes" if stats["owned"] else "")
        console.print(table)
    if value["earnings"]:
        table = Table("payee", "earned", box=box.SIMPLE, title="payees")
        table.columns[1].justify = "right"
        for key, earned in value["earnings"].items():
            table.add_row(keys.label(key), _money(earned))
        console.print(table)
    if value["epochs"]:
        table = Table("epoch", "paid plays", "payees", "co-op", "hosting pool", "host pay",
                      "retained", box=box.SIMPLE, title="epochs")
        for column in table.columns:
            column.justify = "right"
        hosts = Table("epoch", "host", "bytes", "pay", box=box.SIMPLE, title="hosting pay")
        for column in (hosts.columns[0], hosts.columns[2], hosts.columns[3]):
            column.justify = "right"
        for epoch, figures in value["epochs"].items():
            table.add_row(epoch, _money(figures["paid_plays"]), _money(figures["payees"]),
                          _money(figures["coop"]), _money(figures["hosting_pool"]),
                          _money(sum(figures["host_pay"].values())),
                          _money(figures["coop_retained"]))
            for host, count in figures["host_bytes"].items():
                hosts.add_row(epoch, host, f"{count:,}", _money(figures["host_pay"].get(host, 0)))
        console.print(table)
        if hosts.row_count:
            console.print(hosts)
    elif value["epoch"] is not None:
        print(f"epoch {value['epoch']}: nothing paid")
    if value["votes"]:
        table = Table("proposal", "title", "eligible", "counted", "quorum", "winner",
                      box=box.SIMPLE, title="votes")
        for pid, result in value["votes"].items():
            winner = result["winner"]
            table.add_row(pid, result["title"], str(result["eligible"]), str(result["counted"]),
                          "met" if result["quorum_met"] else "not met",
                          "-" if winner is None else result["options"][winner])
        console.print(table)
    for anomaly in value["anomalies"]:
        print(f"anomaly  {anomaly['entry'] or '-'}  {anomaly['code']}: {anomaly['message']}")


def run_ledger_tally(args: argparse.Namespace) -> int:
    if args.epoch is not None and args.epoch < 0:
        raise ValueError("--epoch must be 0 or more")
    coop = _Coop(args)
    value = coop.tally(args.epoch)
    if args.json:
        emit_json(value)
        return 0
    _print_tally(value, _Keys(args.data_dir))
    return 0


def run_ledger_audit(args: argparse.Namespace) -> int:
    workers = default_workers() if args.workers is None else args.workers
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    if args.genesis is not None:
        genesis = coop_views.read_genesis(args.genesis)
    else:
        genesis = coop_views.require_genesis(args.data_dir)
    problem = None
    tally_value = None
    if args.file is not None:
        manifest, result = verify_export(args.file, workers=workers)
        coop_views.check_export_coop(manifest, genesis, str(args.file))
        report = result.to_json()
        source = f"{args.file} (export)"
        try:
            _, counted = coop_views.tally_export(args.file, genesis)
            tally_value = coop_views.tally_json(counted, genesis)
        except TallyInvariantBroken as exc:
            problem = str(exc)
    else:
        api = _daemon(args)
        if api is not None:
            served = api.get("/coop")["id"]
            if served != genesis.id_text:
                raise CoopMismatch(f"the daemon tallies co-op {served}, not {genesis.id_text}")
            report = api.post("/ledger/verify")
            tally_value = api.get("/tally")
            source = "this node's database (through the daemon)"
        else:
            with Repo.open(args.data_dir) as repo:
                report = verify_store(repo.ledger, workers=workers).to_json()
                try:
                    counted = coop_views.tally_store(repo.ledger, genesis, trusted=False)
                    tally_value = coop_views.tally_json(counted, genesis)
                except TallyInvariantBroken as exc:
                    problem = str(exc)
            source = f"this node's database ({args.data_dir})"
    checks = [] if tally_value is None else coop_views.invariants(tally_value)
    books = problem is None and all(check["ok"] for check in checks)
    passed = report["ok"] and books
    audit = {
        "ok": passed,
        "coop": genesis.id_text,
        "verify": report,
        "tally": tally_value,
        "invariants": checks,
        "invariant_error": problem,
        "anomalies": [] if tally_value is None else tally_value["anomalies"],
    }
    if args.json:
        emit_json(audit)
        return 0 if passed else 1
    keys = _Keys(args.data_dir)
    _print_report(report, source)
    if tally_value is not None:
        print()
        _print_tally(tally_value, keys)
    print()
    for check in checks:
        print(f"{'ok ' if check['ok'] else 'BAD'}  {check['rule']}: {check['detail']}")
    if problem is not None:
        print(f"BAD  the tally's books do not balance: {problem}")
    if passed:
        print(f"ok: the log verifies and the books of co-op {genesis.name!r} balance"
              + (f" ({len(audit['anomalies'])} anomalies, listed above)"
                 if audit["anomalies"] else ""))
        return 0
    if not report["ok"]:
        return fail(f"the log does not verify: {report['errors']} errors")
    return fail("the books do not balance (a bug in chorus: please report it)")

