"""`chorus add`, `cat`, `get`: content in and out, with `ipfs add`'s flags and output."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from node.adder import Added, add_paths, add_stream, total_input_bytes
from node.client import DaemonClient, DaemonError, find_daemon
from node.pieces import PieceReader
from node.repo import Repo
from node.unpack import cat_to, get_to_path
from protocol.cid import cid_to_text, parse_cid
from protocol.importer import ImportOptions
from protocol.path import parse_content_path
from protocol.reader import resolve_path

from .console import emit_json, progress_bar

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    add = commands.add_parser("add", help="import files as UnixFS, CIDs identical to `ipfs add`")
    add.add_argument("paths", nargs="*", metavar="PATH", help="files to add; none or - reads stdin")
    add.add_argument("-r", "--recursive", action="store_true", help="add directories")
    add.add_argument("-H", "--hidden", action="store_true", help="include files starting with .")
    add.add_argument("--cid-version", type=int, choices=(0, 1), default=0)
    add.add_argument(
        "--raw-leaves",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="store chunks as raw blocks (default: on with --cid-version 1, as in Kubo)",
    )
    add.add_argument("-n", "--only-hash", action="store_true", help="compute CIDs, store nothing")
    add.add_argument("-Q", "--quieter", action="store_true", help="print only the root CID")
    add.add_argument("-q", "--quiet", action="store_true", help="print only CIDs")
    add.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True)
    add.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    add.add_argument("--json", action="store_true", help="NDJSON {Name, Hash, Size} per entry")
    add.set_defaults(run=run_add)

    cat = commands.add_parser("cat", help="write a file's bytes to stdout")
    cat.add_argument("path", metavar="CID[/PATH]")
    cat.add_argument("--offset", type=int, default=0, help="first byte to write")
    cat.add_argument("--length", type=int, default=None, help="how many bytes to write")
    cat.set_defaults(run=run_cat)

    get = commands.add_parser("get", help="write a file or directory to disk")
    get.add_argument("path", metavar="CID[/PATH]")
    get.add_argument("-o", "--output", type=Path, default=None, help="where (default: ./CID)")
    get.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    get.set_defaults(run=run_get)


def _options(args: argparse.Namespace) -> ImportOptions:
    raw = args.raw_leaves if args.raw_leaves is not None else args.cid_version == 1
    return ImportOptions(cid_version=args.cid_version, raw_leaves=raw)


def _print_added(args: argparse.Namespace, added: list[Added]) -> None:
    if args.quieter:
        print(cid_to_text(added[-1].cid))
        return
    for item in added:
        text = cid_to_text(item.cid)
        if args.json:
            emit_json({"Name": item.name, "Hash": text, "Size": str(item.size)})
        elif args.quiet:
            print(text)
        else:
            print(f"added {text} {item.name}")


def run_add(args: argparse.Namespace) -> int:
    options = _options(args)
    paths = [Path(p) for p in args.paths if p != "-"]
    use_stdin = not args.paths or "-" in args.paths
    if use_stdin and paths:
        raise ValueError("cannot add stdin (-) together with paths")
    for path in paths:
        if not path.exists() and not path.is_symlink():
            raise FileNotFoundError(2, "no such file or directory", str(path))
        if path.is_dir() and not path.is_symlink() and not args.recursive:
            raise IsADirectoryError(f"{path} is a directory; use -r to add directories")
    daemon = None if args.only_hash else find_daemon(args.data_dir)
    if daemon is not None:
        _print_added(args, _add_via_daemon(daemon, args, paths, use_stdin))
        return 0
    repo = None if args.only_hash else Repo.open(args.data_dir)
    try:
        store = None if repo is None else repo.blockstore
        if use_stdin:
            with progress_bar("adding", None, enabled=args.progress) as advance:
                entry = add_stream(sys.stdin.buffer, store, options, pin=args.pin, progress=advance)
            name = cid_to_text(entry.cid)
            added = [Added(name, entry.cid, entry.tsize)]
        else:
            total = total_input_bytes(paths, recursive=args.recursive, hidden=args.hidden)
            with progress_bar("adding", total, enabled=args.progress) as advance:
                result = add_paths(
                    paths,
                    store,
                    options,
                    recursive=args.recursive,
                    hidden=args.hidden,
                    pin=args.pin,
                    progress=advance,
                )
            added = result.added
    finally:
        if repo is not None:
            repo.close()
    _print_added(args, added)
    return 0


def _add_via_daemon(
    daemon: DaemonClient, args: argparse.Namespace, paths: list[Path], use_stdin: bool
) -> list[Added]:
    params = {
        "cid-version": args.cid_version,
        "pin": str(args.pin).lower(),
        "hidden": str(args.hidden).lower(),
    }
    if args.raw_leaves is not None:
        params["raw-leaves"] = str(args.raw_leaves).lower()
    if use_stdin:
        with tempfile.TemporaryDirectory(prefix="chorus-stdin-") as tmp:
            spooled = Path(tmp) / "-"
            with spooled.open("wb") as out:
                shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
            lines = list(daemon.upload("add", params, [spooled], hidden=True))
        cid = parse_cid(lines[-1]["Hash"])
        return [Added(cid_to_text(cid), cid, int(lines[-1]["Size"]))]
    lines = list(daemon.upload("add", params, paths, hidden=args.hidden))
    return [Added(line["Name"], parse_cid(line["Hash"]), int(line["Size"])) for line in lines]


def run_cat(args: argparse.Namespace) -> int:
    root, subpath = parse_content_path(args.path)
    if args.offset < 0 or (args.length is not None and args.length < 0):
        raise ValueError("--offset and --length must not be negative")
    daemon = find_daemon(args.data_dir)
    if daemon is not None:
        params = {"arg": args.path, "offset": args.offset}
        if args.length is not None:
            params["length"] = args.length
        out = sys.stdout.buffer
        for piece in daemon.stream("cat", params):
            out.write(piece)
        out.flush()
        return 0
    with Repo.open(args.data_dir) as repo:
        get_block = repo.blockstore.get
        cid = resolve_path(root, subpath, get_block)
        out = sys.stdout.buffer
        cat_to(cid, get_block, out, offset=args.offset, length=args.length)
        out.flush()
    return 0


def run_get(args: argparse.Namespace) -> int:
    root, subpath = parse_content_path(args.path)
    dest = args.output or Path(cid_to_text(root) if not subpath else subpath.split("/")[-1])
    daemon = find_daemon(args.data_dir)
    if daemon is not None:
        with progress_bar("getting", None, enabled=args.progress) as advance:
            _get_via_daemon(daemon, args.path, dest, advance)
        print(f"saving file(s) to {dest}", file=sys.stderr)
        return 0
    with Repo.open(args.data_dir) as repo:
        get_block = repo.blockstore.get
        cid = resolve_path(root, subpath, get_block)
        with progress_bar("getting", None, enabled=args.progress) as advance:
            get_to_path(cid, get_block, dest, progress=advance)
    print(f"saving file(s) to {dest}", file=sys.stderr)
    return 0


def _get_via_daemon(daemon: DaemonClient, path: str, dest: Path, advance) -> None:
    """Unpack the daemon's tar stream next to `dest`, then rename it into place."""
    if dest.exists() or dest.is_symlink():
        raise FileExistsError(f"{dest} already exists; refusing to overwrite it")
    parent = dest.parent if str(dest.parent) else Path(".")
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=parent))
    try:
        stream = PieceReader(daemon.stream("get", {"arg": path}), advance)
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                top = None
                for member in tar:
                    top = top or member.name.split("/")[0]
                    tar.extract(member, staging, filter="data")
        except tarfile.TarError as exc:  # the daemon died mid-answer, or sent garbage
            raise DaemonError(f"the daemon's archive of {path} is incomplete: {exc}") from None
        if top is None:
            raise ValueError(f"the daemon sent nothing for {path}")
        os.replace(staging / top, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
