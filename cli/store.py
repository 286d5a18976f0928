"""`chorus init`, `pin`, `repo` and `car`: looking after the node's store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from node.atomic_file import atomic_writer
from node.car import export_car, export_car_file, import_car
from node.client import DaemonError, find_daemon
from node.coop import find_genesis, join_coop
from node.repo import Repo
from protocol.cid import cid_to_text, parse_cid
from protocol.path import parse_content_path
from protocol.reader import resolve_path

from .console import emit_json, progress_bar
from .sizes import parse_size

__all__ = ["register", "register_init"]


def register_init(commands: argparse._SubParsersAction) -> None:
    init = commands.add_parser(
        "init",
        help="create the node's data directory",
        description="Create the node's data directory: its identity key, stores and config.",
        epilog="examples:\n  chorus init --quota 50GB\n  chorus init --coop riverside.genesis\n"
        "  chorus init --coop bafkrei... --from http://node.example:8080",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("--quota", type=parse_size, default=None, help="storage limit, e.g. 50GB")
    init.add_argument(
        "--coop", default=None, metavar="GENESIS_FILE|CID",
        help="join the co-op of this genesis file (`chorus coop create` writes one), or of "
        "this genesis CID with --from; it is checked before anything is created",
    )
    init.add_argument(
        "--from", dest="from_url", default=None, metavar="URL",
        help="with --coop CID: fetch the genesis from this node of the co-op (its HTTP "
        "address, API or public gateway); kept only if its CID is the one given",
    )
    init.add_argument("--json", action="store_true")
    init.set_defaults(run=run_init)


def register(commands: argparse._SubParsersAction) -> None:
    pin = commands.add_parser("pin", help="keep content from garbage collection")
    pins = pin.add_subparsers(dest="pin_command", metavar="SUBCOMMAND", required=True)
    add = pins.add_parser("add", help="pin CIDs (recursively by default)")
    add.add_argument("cids", nargs="+", metavar="CID")
    add.add_argument("--recursive", action=argparse.BooleanOptionalAction, default=True)
    add.set_defaults(run=run_pin_add)
    rm = pins.add_parser("rm", help="unpin CIDs")
    rm.add_argument("cids", nargs="+", metavar="CID")
    rm.add_argument("--recursive", action=argparse.BooleanOptionalAction, default=True)
    rm.set_defaults(run=run_pin_rm)
    ls = pins.add_parser("ls", help="list pins")
    ls.add_argument(
        "-t", "--type", default="all", choices=("all", "recursive", "direct", "indirect")
    )
    ls.add_argument("-q", "--quiet", action="store_true", help="print only CIDs")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=run_pin_ls)

    repo = commands.add_parser("repo", help="inspect and maintain the block store")
    repos = repo.add_subparsers(dest="repo_command", metavar="SUBCOMMAND", required=True)
    gc = repos.add_parser("gc", help="remove every block no pin reaches")
    gc.add_argument("-q", "--quiet", action="store_true")
    gc.add_argument("--json", action="store_true")
    gc.set_defaults(run=run_repo_gc)
    verify = repos.add_parser("verify", help="rehash every block and report corrupt ones")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(run=run_repo_verify)
    stat = repos.add_parser("stat", help="blocks, bytes and quota")
    stat.add_argument("--json", action="store_true")
    stat.set_defaults(run=run_repo_stat)

    car = commands.add_parser("car", help="CARv1 export and import, for other IPFS tools")
    cars = car.add_subparsers(dest="car_command", metavar="SUBCOMMAND", required=True)
    export = cars.add_parser("export", help="write a DAG to a .car file")
    export.add_argument("path", metavar="CID[/PATH]")
    export.add_argument("-o", "--output", type=Path, required=True, help="file, - = stdout")
    export.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    export.set_defaults(run=run_car_export)
    imp = cars.add_parser("import", help="verify and store every block of a .car file")
    imp.add_argument("file", type=Path, help="file to read, - = stdin")
    imp.add_argument("--pin-roots", action=argparse.BooleanOptionalAction, default=True)
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(run=run_car_import)


def run_init(args: argparse.Namespace) -> int:
    # The genesis is read and verified before the repo exists: a bad file must not
    # leave behind a repo that is in no co-op.
    if args.from_url is not None and args.coop is None:
        raise ValueError("--from URL needs --coop CID: the co-op to fetch the genesis of")
    genesis = None if args.coop is None else find_genesis(args.coop, args.from_url)
    repo = Repo.init(args.data_dir, quota=args.quota)
    repo.close()
    if genesis is not None:
        join_coop(args.data_dir, genesis.encoded)
    if args.json:
        answer = {"Path": str(args.data_dir), "Quota": args.quota}
        if genesis is not None:
            answer["Coop"] = genesis.id_text
        emit_json(answer)
    else:
        print(f"initialized chorus node in {args.data_dir}")
        if genesis is not None:
            print(f"joined co-op {genesis.name!r} ({genesis.id_text})")
    return 0


def run_pin_add(args: argparse.Namespace) -> int:
    cids = [parse_cid(text) for text in args.cids]
    daemon = find_daemon(args.data_dir)
    if daemon is not None:
        params = {
            "arg": [cid_to_text(c) for c in cids],
            "recursive": str(args.recursive).lower(),
            "progress": "true",
        }
        pinned = None
        with progress_bar("fetching", None) as advance:
            done = 0
            for event in daemon.lines("pin/add", params):
                if "Pins" in event:
                    pinned = event["Pins"]
                elif "Bytes" in event and advance is not None:
                    advance(event["Bytes"] - done)
                    done = event["Bytes"]
        if pinned is None:  # only the last line says the pins are stored
            raise DaemonError("the daemon stopped before it confirmed the pin")
        kind = "recursively" if args.recursive else "directly"
        for cid in cids:
            print(f"pinned {cid_to_text(cid)} {kind}")
        return 0
    with Repo.open(args.data_dir) as repo:
        for cid in cids:
            repo.blockstore.pin_add(cid, recursive=args.recursive)
            kind = "recursively" if args.recursive else "directly"
            print(f"pinned {cid_to_text(cid)} {kind}")
    return 0


def run_pin_rm(args: argparse.Namespace) -> int:
    cids = [parse_cid(text) for text in args.cids]
    daemon = find_daemon(args.data_dir)
    if daemon is not None:
        params = {"arg": [cid_to_text(c) for c in cids], "recursive": str(args.recursive).lower()}
        daemon.call("pin/rm", params)
        for cid in cids:
            print(f"unpinned {cid_to_text(cid)}")
        return 0
    with Repo.open(args.data_dir) as repo:
        for cid in cids:
            repo.blockstore.pin_rm(cid, recursive=args.recursive)
            print(f"unpinned {cid_to_text(cid)}")
    return 0


def run_pin_ls(args: argparse.Namespace) -> int:
    daemon = find_daemon(args.data_dir)
    if daemon is not None:
        keys = daemon.call("pin/ls", {"type": args.type})["Keys"]
        pins = [(parse_cid(text), value["Type"]) for text, value in keys.items()]
    else:
        with Repo.open(args.data_dir) as repo:
            pins = list(repo.blockstore.pin_ls(args.type))
    if args.json:
        emit_json({"Keys": {cid_to_text(cid): {"Type": kind} for cid, kind in pins}})
        return 0
    for cid, kind in pins:
        print(cid_to_text(cid) if args.quiet else f"{cid_to_text(cid)} {kind}")
    return 0


def run_repo_gc(args: argparse.Namespace) -> int:
    daemon = find_daemon(args.data_dir)
    if daemon is not None:
        removed = [parse_cid(line["Key"]["/"]) for line in daemon.lines("repo/gc")]
    else:
        with Repo.open(args.data_dir) as repo:
            removed = repo.blockstore.gc()
    for cid in removed:
        if args.json:
            emit_json({"Key": {"/": cid_to_text(cid)}})
        elif not args.quiet:
            print(f"removed {cid_to_text(cid)}")
    return 0


def run_repo_verify(args: argparse.Namespace) -> int:
    """Re-hash every block and run SQLite's integrity_check (through the daemon if one
    runs): after a crash or a disk fault this is what says the store is sound."""
    daemon = find_daemon(args.data_dir)
    if daemon is not None:
        body = daemon.call("repo/verify")
        checked, corrupt = body["Checked"], body["Corrupt"]
        problems = [p for p in body.get("Problems", []) if not _names_corrupt(p, corrupt)]
    else:
        with Repo.open(args.data_dir) as repo:
            report = repo.blockstore.verify(structure=True)
        checked = report.checked
        corrupt = [cid_to_text(cid) for cid in report.corrupt]
        problems = [p for p in report.problems if not _names_corrupt(p, corrupt)]
    ok = not corrupt and not problems
    if args.json:
        emit_json({"Checked": checked, "Corrupt": corrupt, "Problems": problems, "Ok": ok})
    else:
        for text in corrupt:
            print(f"block {text} is corrupt: its bytes no longer hash to its CID")
        for problem in problems:
            print(f"damage: {problem}")
        if ok:
            print(f"verified repo integrity: {checked} blocks")
    if corrupt:
        sys.stderr.write(f"chorus: error: {len(corrupt)} corrupt block(s) found\n")
    if problems:
        sys.stderr.write(f"chorus: error: {len(problems)} problem(s) in the block store\n")
    return 0 if ok else 1


def _names_corrupt(problem: str, corrupt: list[str]) -> bool:
    """Whether `problem` only explains a block already listed as corrupt."""
    return any(problem.startswith(f"{text}:") for text in corrupt)


def run_repo_stat(args: argparse.Namespace) -> int:
    daemon = find_daemon(args.data_dir)
    if daemon is not None:
        body = daemon.call("repo/stat")
        blocks, size, quota_value = body["NumObjects"], body["RepoSize"], body["StorageMax"]
    else:
        with Repo.open(args.data_dir) as repo:
            stat = repo.blockstore.stat()
        blocks, size, quota_value = stat.blocks, stat.bytes, stat.quota
    if args.json:
        emit_json(
            {
                "NumObjects": blocks,
                "RepoSize": size,
                "StorageMax": quota_value,
                "RepoPath": str(args.data_dir),
            }
        )
    else:
        quota = "unlimited" if quota_value is None else str(quota_value)
        print(f"NumObjects: {blocks}")
        print(f"RepoSize:   {size}")
        print(f"StorageMax: {quota}")
        print(f"RepoPath:   {args.data_dir}")
    return 0


def run_car_export(args: argparse.Namespace) -> int:
    root, subpath = parse_content_path(args.path)
    daemon = find_daemon(args.data_dir)
    if daemon is not None:
        pieces = daemon.stream("dag/export", {"arg": args.path})
        if str(args.output) == "-":
            for piece in pieces:
                sys.stdout.buffer.write(piece)
            sys.stdout.buffer.flush()
            return 0
        written = 0
        with atomic_writer(args.output) as out:
            for piece in pieces:
                out.write(piece)
                written += len(piece)
        print(f"exported {args.path} to {args.output} ({written} bytes)", file=sys.stderr)
        return 0
    with Repo.open(args.data_dir) as repo:
        cid = resolve_path(root, subpath, repo.blockstore.get)
        if str(args.output) == "-":
            export_car(repo.blockstore, cid, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return 0
        target = args.output
        with progress_bar("exporting", None, enabled=args.progress) as advance:
            written = export_car_file(repo.blockstore, cid, target, progress=advance)
    print(f"exported {cid_to_text(cid)} to {target} ({written} bytes)", file=sys.stderr)
    return 0


def run_car_import(args: argparse.Namespace) -> int:
    daemon = find_daemon(args.data_dir)
    if daemon is not None and str(args.file) != "-":
        if not args.file.is_file():
            raise FileNotFoundError(2, "No such file or directory", str(args.file))
        params = {"pin-roots": str(args.pin_roots).lower()}
        lines = list(daemon.upload("dag/import", params, [args.file], hidden=True))
        roots = [line["Root"]["Cid"]["/"] for line in lines if "Root" in line]
        stats = [line["Stats"] for line in lines if "Stats" in line]
        blocks = sum(s["BlockCount"] for s in stats)
        size = sum(s["BlockBytesCount"] for s in stats)
        _print_import(args, roots, blocks, size)
        return 0
    with Repo.open(args.data_dir) as repo:
        if str(args.file) == "-":
            result = import_car(repo.blockstore, sys.stdin.buffer, pin_roots=args.pin_roots)
        else:
            with args.file.open("rb") as src:
                result = import_car(repo.blockstore, src, pin_roots=args.pin_roots)
    _print_import(args, [cid_to_text(cid) for cid in result.roots], result.blocks, result.bytes)
    return 0


def _print_import(args: argparse.Namespace, roots: list[str], blocks: int, size: int) -> None:
    if args.json:
        emit_json({"Roots": roots, "Blocks": blocks, "Bytes": size})
        return
    for text in roots:
        state = "pinned" if args.pin_roots else "imported"
        print(f"{state} root {text}")
    print(f"imported {blocks} blocks ({size} bytes)")
