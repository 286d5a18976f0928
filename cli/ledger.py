"""`chorus ledger ...`: the node's signed log from the command line.

While a daemon runs it owns the repo, so these commands go through its API
(`/api/chorus/v1/ledger`, node/ledger_api.py) — and then an appended entry is also
announced to the co-op. Without a daemon they open the repo and call the same
views (node/ledger_views.py) the API runs, so the output is the same either way.
`verify FILE` and `proof verify` need no node at all: they are what an auditor runs
on what a node handed out, and they trust nothing in it but signatures.

Exit codes: 0 when the command did what it says; 1 when it was refused, or when
`verify` or `proof verify` found the log or the proof wrong (`verify` also fails on
an equivocation unless `--allow-forks`). Errors are one `chorus: error: ...` line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode

from rich.console import Console
from rich.table import Table

from ledger.export import read_export
from ledger.jsonview import body_from_json, id_text
from ledger.merkle import MerkleError
from ledger.proofs import BundleError, VerifiedBundle, verify_bundle
from node import ledger_views as views
from node.atomic_file import atomic_writer
from node.audit import default_workers, export_ledger_file, verify_export, verify_store
from node.client import DaemonClient, DaemonError, find_daemon
from node.keystore import SELF, Keystore
from node.repo import Repo

from .console import count_bar, emit_json, fail

__all__ = ["register"]

_CHUNK = 1 << 20
_HEX_KEY = re.compile("[0-9a-fA-F]{64}")


def _command(
    commands: argparse._SubParsersAction, name: str, help_text: str, example: str
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog="example:\n  " + example.replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def register(commands: argparse._SubParsersAction) -> None:
    ledger = commands.add_parser(
        "ledger",
        help="the node's signed log: entries, tree heads, proofs, audits",
        description=(
            "The node's ledger: every entry it accepted, in log order, with signed tree "
            "heads over it. Goes through the daemon when one runs."
        ),
    )
    verbs = ledger.add_subparsers(dest="ledger_command", metavar="SUBCOMMAND", required=True)

    status = _command(
        verbs, "status", "size, root, feeds and newest tree head of the log",
        "chorus ledger status --json",
    )
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=run_status)

    heads = _command(
        verbs, "heads", "every feed: its author, last seq and head entry",
        "chorus ledger heads",
    )
    heads.add_argument("--json", action="store_true")
    heads.set_defaults(run=run_heads)

    show = _command(
        verbs, "show", "one entry, decoded, with its log index",
        "chorus ledger show bafkrei...",
    )
    show.add_argument("entry", metavar="ID", help="the entry's id (CID)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=run_show)

    log = _command(
        verbs, "log", "entries in log order, a page at a time",
        "chorus ledger log --start 100 --limit 20",
    )
    log.add_argument("--start", type=int, default=0, metavar="N", help="first log index")
    log.add_argument(
        "--limit", type=int, default=views.DEFAULT_LOG, metavar="N",
        help=f"entries to show (1..{views.MAX_LOG})",
    )
    log.add_argument("--json", action="store_true")
    log.set_defaults(run=run_log)

    append = _command(
        verbs, "append", "sign an entry with a member key and append it to the log",
        "chorus ledger append --key alice --text 'ballot 3 opens on Monday'\n"
        "chorus ledger append --key self --kind note --body '{\"text\": \"hello\"}'",
    )
    append.add_argument(
        "--key", default=SELF, metavar="NAME",
        help='the key to sign with (`chorus key list`; default "self", the node key)',
    )
    append.add_argument("--kind", default="note", metavar="KIND", help="entry kind (default note)")
    body = append.add_mutually_exclusive_group(required=True)
    body.add_argument(
        "--body", metavar="JSON",
        help='the body as a JSON object; bytes as {"/": {"bytes": base64}}, no floats',
    )
    body.add_argument("--text", metavar="TEXT", help='shorthand for --body \'{"text": TEXT}\'')
    append.add_argument("--json", action="store_true")
    append.set_defaults(run=run_append)

    tree_head = _command(
        verbs, "tree-head", "show the newest signed tree head, or sign one",
        "chorus ledger tree-head --sign",
    )
    tree_head.add_argument(
        "--sign", action="store_true", help="sign a tree head over the whole log now, if it grew"
    )
    tree_head.add_argument(
        "--force", action="store_true", help="sign even if nothing is new (implies --sign)"
    )
    tree_head.add_argument("--json", action="store_true")
    tree_head.set_defaults(run=run_tree_head)

    proof = _command(
        verbs, "proof", "make or check proofs that anyone can verify offline",
        "chorus ledger proof inclusion bafkrei... -o entry.proof\n"
        "chorus ledger proof verify entry.proof --node 12D3KooW...",
    )
    proofs = proof.add_subparsers(dest="proof_command", metavar="SUBCOMMAND", required=True)
    inclusion = _command(
        proofs, "inclusion", "prove that an entry is in the log, under a signed tree head",
        "chorus ledger proof inclusion bafkrei... -o entry.proof",
    )
    inclusion.add_argument("entry", metavar="ENTRY", help="the entry's id (CID)")
    inclusion.add_argument(
        "--size", type=int, default=None, metavar="N",
        help="prove against the tree head of this size (default: the newest)",
    )
    inclusion.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                           help="write the bundle here (default: stdout)")
    inclusion.set_defaults(run=run_proof_inclusion)
    consistency = _command(
        proofs, "consistency", "prove that the log of one signed size is a prefix of another",
        "chorus ledger proof consistency 120 -o grew.proof",
    )
    consistency.add_argument("old", type=int, metavar="OLD", help="the older tree size")
    consistency.add_argument(
        "new", type=int, nargs="?", default=None, metavar="NEW",
        help="the newer tree size (default: the newest tree head)",
    )
    consistency.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                             help="write the bundle here (default: stdout)")
    consistency.set_defaults(run=run_proof_consistency)
    check = _command(
        proofs, "verify", "check a proof bundle, offline",
        "chorus ledger proof verify entry.proof --node 12D3KooW...",
    )
    check.add_argument("file", type=Path, metavar="FILE", help="the bundle (- = stdin)")
    check.add_argument(
        "--node", default=None, metavar="KEY",
        help="require tree heads signed by this node: its peer ID or 64-hex public key",
    )
    check.add_argument("--json", action="store_true")
    check.set_defaults(run=run_proof_verify)

    export = _command(
        verbs, "export", "write the whole log to a file an auditor can check",
        "chorus ledger export -o ledger.car && chorus ledger verify ledger.car",
    )
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    export.set_defaults(run=run_export)

    verify = _command(
        verbs, "verify",
        "replay a log and check every entry, feed and tree head (an export FILE, or this node's)",
        "chorus ledger verify ledger.car --workers 4\nchorus ledger verify --json",
    )
    verify.add_argument("file", type=Path, nargs="?", default=None, metavar="FILE",
                        help="an export (`chorus ledger export`); none: this node's database")
    verify.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help=f"processes checking signatures (default {default_workers()}); "
        "the daemon's own audit uses one",
    )
    verify.add_argument(
        "--allow-forks", action="store_true",
        help="exit 0 even if an author equivocated (the log itself is still sound)",
    )
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(run=run_verify)

    tally = _command(
        verbs, "tally",
        "the co-op's figures from the ledger: balances, plays, earnings, hosting pay, votes",
        "chorus ledger tally\nchorus ledger tally --epoch 2931 --json",
    )
    tally.add_argument(
        "--epoch", type=int, default=None, metavar="N",
        help="show only this epoch's money (time // epoch_ms); balances stay the whole log's",
    )
    tally.add_argument("--json", action="store_true")
    tally.set_defaults(run=run_tally)

    audit = _command(
        verbs, "audit",
        "verify a log, recompute every figure of the co-op and check that the books balance",
        "chorus ledger audit ledger.car --genesis riverside.genesis\n"
        "chorus ledger audit --json",
    )
    audit.add_argument("file", type=Path, nargs="?", default=None, metavar="FILE",
                       help="an export (`chorus ledger export`); none: this node's database")
    audit.add_argument(
        "--genesis", type=Path, default=None, metavar="FILE",
        help="the co-op's genesis file (default: the genesis of the co-op this repo joined)",
    )
    audit.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help=f"processes checking signatures (default {default_workers()})",
    )
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(run=run_audit)

    sync = _command(
        verbs, "sync", "pull what a co-op peer has and this node lacks (needs the daemon)",
        "chorus ledger sync 12D3KooW...",
    )
    sync.add_argument("peer", metavar="PEER", help="the peer's ID")
    sync.add_argument("--json", action="store_true")
    sync.set_defaults(run=run_sync)


# -- the daemon's ledger API ------------------------------------------------------------------


class _LedgerApi:
    """Requests to the chorus JSON API of a running daemon (the CLI's other client,
    node/client.py, speaks the Kubo RPC), with the same token."""

    def __init__(self, client: DaemonClient) -> None:
        from node.chorus_api import API_PREFIX  # starlette: not for every CLI start

        self.prefix = API_PREFIX
        self.host = client.host
        self.port = client.port
        self.token = client.token

    def _send(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> http.client.HTTPResponse:
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        url = self.prefix + path + (f"?{query}" if query else "")
        headers = {}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type is not None:
            headers["Content-Type"] = content_type
        conn = http.client.HTTPConnection(self.host, self.port)
        conn.request(method, url, body=body, headers=headers)
        response = conn.getresponse()
        if response.status != 200:
            raw = response.read()
            try:
                message = json.loads(raw)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode("utf-8", "replace").strip() or f"HTTP {response.status}"
            raise DaemonError(message)
        return response

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        with self._send("GET", path, params) as response:
            return json.loads(response.read())

    def post(self, path: str, params: dict[str, Any] | None = None, value: Any = None) -> Any:
        body = None if value is None else json.dumps(value).encode("utf-8")
        content_type = None if value is None else "application/json"
        with self._send("POST", path, params, body=body, content_type=content_type) as response:
            return json.loads(response.read())

    def download(self, path: str, out: BinaryIO) -> None:
        with self._send("GET", path) as response:
            while piece := response.read(_CHUNK):
                out.write(piece)


def _daemon(args: argparse.Namespace) -> _LedgerApi | None:
    client = find_daemon(args.data_dir)
    return None if client is None else _LedgerApi(client)


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- printing -----------------------------------------------------------------------------------


def _when(ms: int) -> str:
    try:
        moment = datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else words or word + 's'}"


def _print_fields(rows: list[tuple[str, str]]) -> None:
    """`label  value` lines, values aligned (continuation lines too)."""
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label.ljust(width)}  " + value.replace("\n", "\n" + " " * (width + 2)))


def _tree_head_text(head: dict[str, Any] | None) -> str:
    if head is None:
        return "none signed yet (`chorus ledger tree-head --sign`)"
    return f"size {head['size']}, root {head['root']}, signed {_when(head['time'])} ({head['id']})"


def _write_bundle(bundle: dict[str, Any], output: Path | None) -> None:
    text = json.dumps(bundle, indent=2, sort_keys=True) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    with atomic_writer(output) as out:
        out.write(text.encode("utf-8"))
    size = bundle["size"] if bundle["type"] == "inclusion" else bundle["new_size"]
    print(f"wrote {bundle['type']} proof (tree size {size}) to {output}")


# -- commands -----------------------------------------------------------------------------------


def run_status(args: argparse.Namespace) -> int:
    api = _daemon(args)
    if api is not None:
        answer = api.get("/ledger")
    else:
        with Repo.open(args.data_dir) as repo:
            answer = views.status(repo.ledger)
        # Counters count what a running daemon did; without one there are none.
        answer.update(pending=0, counters=None, sync=None, replication=None)
    if args.json:
        emit_json(answer)
        return 0
    head = answer["tree_head"]
    rows = [
        ("log", _plural(answer["size"], "entry", "entries")),
        ("root", answer["root"]),
        ("feeds", str(answer["feeds"])),
        ("owner", answer["owner"]),
        ("tree head", _tree_head_text(head)),
    ]
    if head is not None:
        rows.append(("uncovered", f"{answer['size'] - head['index'] - 1} after the tree head"))
    if answer["counters"] is not None:
        rows.append(("pending", str(answer["pending"])))
        rows.append(("counters", ", ".join(f"{k} {v}" for k, v in answer["counters"].items())))
    for name in ("sync", "replication"):
        if answer.get(name) is not None:
            rows.append((name, ", ".join(f"{k} {v}" for k, v in answer[name].items())))
    if answer["counters"] is None:
        rows.append(("daemon", "not running"))
    _print_fields(rows)
    return 0


def _all_heads(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    api = _daemon(args)
    after = None
    if api is not None:
        while True:
            page = api.get("/ledger/heads", {"after": after, "limit": views.MAX_HEADS})
            yield from page["feeds"]
            if not page["more"]:
                return
            after = page["feeds"][-1]["author"]
    with Repo.open(args.data_dir) as repo:
        while True:
            page = views.heads_page(repo.ledger, after, views.MAX_HEADS)
            yield from page["feeds"]
            if not page["more"]:
                return
            after = page["feeds"][-1]["author"]


def run_heads(args: argparse.Namespace) -> int:
    feeds = list(_all_heads(args))
    if args.json:
        emit_json({"feeds": feeds})
        return 0
    for feed in feeds:
        frozen = feed["frozen_after"]
        note = "" if frozen is None else f"  FROZEN after seq {frozen} (equivocation)"
        print(f"{feed['author']}  seq {feed['seq']:<6} {feed['head']}{note}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    api = _daemon(args)
    if api is not None:
        entry = api.get("/ledger/entries/" + quote(args.entry, safe=""))
    else:
        with Repo.open(args.data_dir) as repo:
            entry = views.entry_json(repo.ledger, args.entry)
    if args.json:
        emit_json(entry)
        return 0
    _print_fields(
        [
            ("id", entry["id"]),
            ("index", str(entry["index"])),
            ("author", entry["author"]),
            ("seq", str(entry["seq"])),
            ("prev", entry["prev"] or "-"),
            ("time", f"{_when(entry['time'])} ({entry['time']} ms)"),
            ("kind", entry["kind"]),
            ("body", json.dumps(entry["body"], indent=2, sort_keys=True)),
        ]
    )
    return 0


def run_log(args: argparse.Namespace) -> int:
    api = _daemon(args)
    if api is not None:
        page = api.get("/ledger/log", {"start": args.start, "limit": args.limit})
    else:
        with Repo.open(args.data_dir) as repo:
            page = views.log_page(repo.ledger, args.start, args.limit)
    if args.json:
        emit_json(page)
        return 0
    for entry in page["entries"]:
        print(
            f"{entry['index']:>6}  {entry['id']}  {entry['author'][:16]}…  "
            f"seq {entry['seq']:<5} {entry['kind']}"
        )
    shown = len(page["entries"])
    last = args.start + shown
    print(f"({_plural(shown, 'entry', 'entries')} of {page['size']}"
          + (f"; more with --start {last}" if last < page["size"] else "") + ")")
    return 0


def _body_of(args: argparse.Namespace) -> dict[str, Any]:
    if args.text is not None:
        return {"text": args.text}
    try:
        body = json.loads(args.body)
    except ValueError as exc:
        raise ValueError(f"--body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError(f"--body must be a JSON object, not {type(body).__name__}")
    return body


def run_append(args: argparse.Namespace) -> int:
    body = _body_of(args)
    api = _daemon(args)
    if api is not None:
        request = {"key": args.key, "kind": args.kind, "body": body}
        written = api.post("/ledger/entries", value=request)
    else:
        key = Keystore(args.data_dir).get(args.key)
        with Repo.open(args.data_dir) as repo:
            store = repo.ledger
            views.check_writable(store, args.kind)
            value = body_from_json(body)
            views.check_feed_open(store, bytes(key.verify_key))
            decision = store.write(key, args.kind, value, _now_ms())
            written = views.written_json(store, decision.entry)
    if args.json:
        emit_json(written)
    else:
        print(
            f"appended {written['id']} at log index {written['index']} "
            f"(seq {written['seq']} of {written['author'][:16]}…)"
        )
    return 0


def run_tree_head(args: argparse.Namespace) -> int:
    sign = args.sign or args.force
    api = _daemon(args)
    if api is not None:
        if sign:
            head = api.post("/ledger/tree-head", {"force": str(args.force).lower()})["tree_head"]
        else:
            head = api.get("/ledger")["tree_head"]
    else:
        with Repo.open(args.data_dir) as repo:
            store = repo.ledger
            if sign and (args.force or store.tree_head_due()):
                entry = store.sign_tree_head(repo.identity, _now_ms()).entry
                head = views.tree_head_json(entry, entry.body["size"])
            elif sign:
                head = None
            else:
                latest = views.latest_tree_head(store)
                head = None if latest is None else views.tree_head_json(latest, latest.body["size"])
    if args.json:
        emit_json({"tree_head": head})
    elif sign and head is None:
        print("nothing new since the last tree head; --force signs one anyway")
    elif sign:
        print(f"signed tree head: {_tree_head_text(head)}")
    else:
        print(f"tree head: {_tree_head_text(head)}")
    return 0


def run_proof_inclusion(args: argparse.Namespace) -> int:
    api = _daemon(args)
    if api is not None:
        path = "/ledger/proof/inclusion/" + quote(args.entry, safe="")
        bundle = api.get(path, {"size": args.size})
    else:
        with Repo.open(args.data_dir) as repo:
            bundle = views.inclusion(repo.ledger, args.entry, args.size)
    _write_bundle(bundle, args.output)
    return 0


def run_proof_consistency(args: argparse.Namespace) -> int:
    api = _daemon(args)
    if api is not None:
        bundle = api.get("/ledger/proof/consistency", {"old": args.old, "new": args.new})
    else:
        with Repo.open(args.data_dir) as repo:
            bundle = views.consistency(repo.ledger, args.old, args.new)
    _write_bundle(bundle, args.output)
    return 0


def _node_key(text: str) -> bytes:
    """A node's Ed25519 public key from 64 hex digits or from its libp2p peer ID."""
    if _HEX_KEY.fullmatch(text):
        return bytes.fromhex(text)
    from libp2p.crypto.keys import KeyType
    from libp2p.peer.id import ID

    try:
        public = ID.from_base58(text).extract_public_key()
    except ValueError:
        public = None
    if public is None or public.get_type() is not KeyType.Ed25519:
        raise ValueError(
            f"--node {text!r} is neither a 64-hex public key nor the peer ID of an "
            "Ed25519 key (12D3KooW...)"
        )
    return public.to_bytes()


def _proof_text(proved: VerifiedBundle) -> str:
    if proved.kind == "inclusion":
        assert proved.entry is not None
        return (
            f"entry {id_text(proved.entry.id_bytes)} is at index {proved.index} of the log "
            f"of size {proved.size} (root {proved.root.hex()})"
        )
    assert proved.old_root is not None
    return (
        f"the log of size {proved.old_size} (root {proved.old_root.hex()}) is a prefix of "
        f"the log of size {proved.size} (root {proved.root.hex()})"
    )


def run_proof_verify(args: argparse.Namespace) -> int:
    expected = None if args.node is None else _node_key(args.node)
    raw = sys.stdin.buffer.read() if str(args.file) == "-" else args.file.read_bytes()
    try:
        bundle = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{args.file} is not a JSON proof bundle: {exc}") from None
    try:
        proved = verify_bundle(bundle, node=expected)
    except (BundleError, MerkleError) as exc:
        if args.json:
            emit_json({"ok": False, "error": str(exc)})
            return 1
        return fail(f"the proof does not hold: {exc}")
    if args.json:
        emit_json(
            {
                "ok": True,
                "type": proved.kind,
                "node": proved.node.hex(),
                "node_checked": expected is not None,
                "size": proved.size,
                "root": proved.root.hex(),
                "index": proved.index,
                "entry": None if proved.entry is None else id_text(proved.entry.id_bytes),
                "old_size": proved.old_size,
                "old_root": None if proved.old_root is None else proved.old_root.hex(),
            }
        )
        return 0
    print(f"ok: {_proof_text(proved)}")
    signer = f"signed by node {proved.node.hex()}"
    if expected is None:
        signer += " (not checked: pass --node to require that node's key)"
    print(signer)
    return 0


def _read_chunks(handle: BinaryIO) -> Iterator[bytes]:
    while piece := handle.read(_CHUNK):
        yield piece


def run_export(args: argparse.Namespace) -> int:
    api = _daemon(args)
    if api is not None:
        with atomic_writer(args.output) as out:
            api.download("/ledger/export", out)
        with args.output.open("rb") as handle:
            manifest, _ = read_export(_read_chunks(handle))
    else:
        from .daemon_cmds import repo_coop

        with Repo.open(args.data_dir) as repo:
            manifest = export_ledger_file(repo.ledger, args.output, coop=repo_coop(args.data_dir))
    print(
        f"exported {_plural(manifest.size, 'entry', 'entries')} of the log "
        f"of node {manifest.node.hex()[:16]}… to {args.output}"
    )
    return 0


def _print_report(report: dict[str, Any], source: str) -> None:
    """A rich summary of an audit, then one plain line per finding (greppable, never
    wrapped)."""
    heads = report["tree_heads"]
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("log", source)
    summary.add_row("entries", str(report["entries"]))
    summary.add_row("feeds", str(report["feeds"]))
    summary.add_row("root", report["root"])
    summary.add_row("node", report["log_owner"] or "-")
    kinds = ", ".join(f"{kind} {count}" for kind, count in report["kinds"].items())
    summary.add_row("kinds", kinds or "-")
    last = f" (last: size {heads[-1]['size']}, {_when(heads[-1]['time'])})" if heads else ""
    summary.add_row("tree heads", f"{len(heads)}{last}")
    uncovered = _plural(report["uncovered"], "entry", "entries")
    where = "after the last tree head" if heads else "(no tree head yet)"
    summary.add_row("uncovered", f"{uncovered} {where}")
    summary.add_row("forks", str(len(report["forks"])))
    summary.add_row("errors", str(report["errors"]))
    Console(highlight=False, soft_wrap=True).print(summary)
    for fork in report["forks"]:
        print(f"fork  {fork['author'][:16]}…  seq {fork['seq']}: {', '.join(fork['entries'])}")
    for finding in report["findings"]:
        index = "-" if finding["index"] is None else finding["index"]
        print(f"index {index}  {finding['entry'] or '-'}  {finding['rule']}: {finding['message']}")
    listed = len(report["findings"])
    total = report["errors"] + report["anomalies"]
    if total > listed:
        print(f"(and {total - listed} more findings not listed)")


def run_verify(args: argparse.Namespace) -> int:
    workers = default_workers() if args.workers is None else args.workers
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    if args.file is not None:
        with count_bar("verifying entries") as done:
            manifest, result = verify_export(args.file, workers=workers, progress=done)
        report = {**result.to_json(), "coop": manifest.coop}
        source = f"{args.file} (export)"
    else:
        api = _daemon(args)
        if api is not None:
            report = api.post("/ledger/verify")
            source = "this node's database (through the daemon)"
        else:
            with Repo.open(args.data_dir) as repo, count_bar(
                "verifying entries", repo.ledger.size
            ) as done:
                report = verify_store(repo.ledger, workers=workers, progress=done).to_json()
            source = f"this node's database ({args.data_dir})"
    passed = report["ok"] and (args.allow_forks or not report["forks"])
    if args.json:
        emit_json(report)
        return 0 if passed else 1
    _print_report(report, source)
    if passed:
        print("ok: the log is sound" + ("" if not report["forks"] else " (with forks, allowed)"))
        return 0
    if report["ok"]:
        return fail("an author equivocated (see the forks above); --allow-forks accepts that")
    return fail(f"the log does not verify: {_plural(report['errors'], 'error')}")


def run_tally(args: argparse.Namespace) -> int:
    from .coop import run_ledger_tally  # cli/coop.py builds on this module

    return run_ledger_tally(args)


def run_audit(args: argparse.Namespace) -> int:
    from .coop import run_ledger_audit  # cli/coop.py builds on this module

    return run_ledger_audit(args)


def run_sync(args: argparse.Namespace) -> int:
    api = _daemon(args)
    if api is None:
        return fail(
            "`chorus ledger sync` needs the running daemon (start it with "
            "`chorus daemon --coop GENESIS_CID`)"
        )
    result = api.post("/ledger/sync", {"peer": args.peer})
    if args.json:
        emit_json(result)
    else:
        print(
            f"synced with {result['peer']}: {result['feeds']} feeds compared, "
            f"{result['ranges']} ranges asked for, {result['fetched']} entries fetched, "
            f"{result['stored']} stored"
        )
    return 0
