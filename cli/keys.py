"""`chorus key new|list|show`: the member keys of node/keystore.py, as Kubo's `ipfs key`.

These commands read and write the key files themselves rather than asking the
daemon: they take no repo lock, so they work the same whether or not a daemon runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from node.identity import peer_id_of
from node.keystore import SELF, KeyInfo, Keystore

from .console import emit_json

__all__ = ["register"]

#: Columns a table row needs beyond the name and the 64 hex digits (padding, edges).
_TABLE_CHROME = 8


def register(commands: argparse._SubParsersAction) -> None:
    key = commands.add_parser("key", help='member signing keys ("self" is the node\'s own)')
    keys = key.add_subparsers(dest="key_command", metavar="SUBCOMMAND", required=True)
    new = keys.add_parser("new", help="generate a new Ed25519 key and print its public key")
    new.add_argument("name", metavar="NAME")
    new.add_argument("--json", action="store_true")
    new.set_defaults(run=run_key_new)
    ls = keys.add_parser("list", help="every key: name and public key")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=run_key_list)
    show = keys.add_parser("show", help="one key's public key (and peer ID, for self)")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=run_key_show)


def run_key_new(args: argparse.Namespace) -> int:
    info = Keystore(args.data_dir).new(args.name)
    if args.json:
        emit_json(_as_json(info))
    else:
        print(info.public_hex)
    return 0


def run_key_list(args: argparse.Namespace) -> int:
    infos = Keystore(args.data_dir).list()
    if args.json:
        emit_json([_as_json(info) for info in infos])
        return 0
    table = Table("name", "public key", box=box.SIMPLE)
    for info in infos:
        table.add_row(info.name, info.public_hex)
    # Never crop a public key: a table wider than the terminal wraps, which is readable.
    needed = max(len(info.name) for info in infos) + 64 + _TABLE_CHROME
    console = Console()
    if console.width < needed:
        console = Console(width=needed)
    console.print(table)
    return 0


def run_key_show(args: argparse.Namespace) -> int:
    store = Keystore(args.data_dir)
    key = store.get(args.name)
    info = KeyInfo(args.name, bytes(key.verify_key))
    body = _as_json(info)
    if args.name == SELF:
        body["peer_id"] = peer_id_of(key)
    if args.json:
        emit_json(body)
        return 0
    print(f"Name:       {info.name}")
    print(f"PublicKey:  {info.public_hex}")
    if "peer_id" in body:
        print(f"PeerID:     {body['peer_id']}")
    return 0


def _as_json(info: KeyInfo) -> dict[str, Any]:
    return {"name": info.name, "public_key": info.public_hex}
