"""Examples for `--help` of the commands that do not set their own epilog.

Kept in one table so every command's help ends with something to type; commands
added later set theirs where they are defined (see cli/ledger.py `_command`).
"""

from __future__ import annotations

import argparse

__all__ = ["EXAMPLES", "add_examples"]

EXAMPLES: dict[tuple[str, ...], str] = {
    ("add",): (
        "chorus add track.flac\nchorus add -r album/\nchorus add -Q --cid-version 1 track.flac"
    ),
    ("cat",): "chorus cat QmXyz... --offset 1000000 --length 65536 > part.bin",
    ("get",): "chorus get QmAlbum.../02-track.flac -o track.flac",
    ("pin",): "chorus pin add QmXyz...\nchorus pin ls --type recursive",
    ("pin", "add"): "chorus pin add QmSomeoneElsesAlbum...",
    ("pin", "rm"): "chorus pin rm QmXyz... && chorus repo gc",
    ("pin", "ls"): "chorus pin ls --type recursive --json",
    ("repo",): "chorus repo verify\nchorus repo stat --json",
    ("repo", "gc"): "chorus repo gc",
    ("repo", "verify"): "chorus repo verify   # exit 1 and one line per corrupt block",
    ("repo", "stat"): "chorus repo stat --json",
    ("car",): "chorus car export QmAlbum... -o album.car\nchorus car import album.car",
    ("car", "export"): "chorus car export QmAlbum... -o album.car  # `ipfs dag import` reads it",
    ("car", "import"): "chorus car import album.car",
    ("daemon",): "chorus daemon --listen /ip4/0.0.0.0/tcp/4001 --http 127.0.0.1:8080",
    ("id",): "chorus id --json",
    ("swarm",): (
        "chorus swarm peers\nchorus swarm connect /ip4/198.51.100.4/tcp/4001/p2p/12D3KooW..."
    ),
    ("swarm", "peers"): "chorus swarm peers --json",
    ("swarm", "connect"): "chorus swarm connect /ip4/198.51.100.4/tcp/4001/p2p/12D3KooW...",
    ("swarm", "block"): "chorus swarm block 12D3KooWAbc... 12D3KooWDef...",
    ("swarm", "unblock"): (
        "chorus swarm unblock 12D3KooWAbc... && "
        "chorus swarm connect /ip4/198.51.100.4/tcp/4001/p2p/12D3KooWAbc..."
    ),
    ("swarm", "blocked"): "chorus swarm blocked --json",
    ("key",): "chorus key new alice\nchorus key list",
    ("key", "new"): "chorus key new alice --json",
    ("key", "list"): "chorus key list --json",
    ("key", "show"): "chorus key show self",
    ("release", "ls"): "chorus release ls --json",
    ("release", "show"): "chorus release show bafkrei...",
    ("release", "verify"): "chorus release verify bafkrei...   # every track's blocks, rehashed",
}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse offers no public walk
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def add_examples(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> None:
    """Give every (sub)command in EXAMPLES an example epilog, unless it has one."""
    example = EXAMPLES.get(path)
    if example is not None and not parser.epilog:
        parser.epilog = "example:\n  " + example.replace("\n", "\n  ")
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for name, child in _subparsers(parser).items():
        add_examples(child, (*path, name))
