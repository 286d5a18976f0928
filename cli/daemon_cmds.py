"""`chorus daemon`, `chorus id`, `chorus swarm`, `chorus web`: running the node and
looking at it."""

from __future__ import annotations

import argparse
import logging
import sys

from node.client import find_daemon
from node.gossip import DEFAULT_FLUSH_INTERVAL
from node.repo import Repo

from .console import emit_json

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    daemon = commands.add_parser("daemon", help="run the node: join the swarm, serve blocks")
    daemon.add_argument(
        "--listen",
        action="append",
        metavar="MADDR",
        help="swarm listen address (repeatable; default /ip4/0.0.0.0/tcp/4001)",
    )
    daemon.add_argument(
        "--http",
        "--api",
        dest="http",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="local HTTP listener: RPC API, gateway, web app (port 0 = any)",
    )
    daemon.add_argument(
        "--gateway",
        default=None,
        metavar="HOST:PORT",
        help="also serve a public, read-only gateway here (e.g. 0.0.0.0:8081)",
    )
    daemon.add_argument(
        "--bootstrap", action="append", default=[], metavar="MADDR", help="also dial this peer"
    )
    daemon.add_argument("--no-dht", action="store_true", help="do not run the Kademlia DHT")
    daemon.add_argument(
        "--coop", metavar="GENESIS_CID", help="join this co-op's gossip topic (its genesis CID)"
    )
    daemon.add_argument(
        "--tree-head-interval", type=float, default=60.0, metavar="SECONDS",
        help="sign a tree head of the ledger log this often, when it grew (0 = never; "
        "default 60)",
    )
    daemon.add_argument(
        "--sync-interval", type=float, default=30.0, metavar="SECONDS",
        help="pull-sync the ledger with a few random peers this often (default 30)",
    )
    daemon.add_argument(
        "--gossip-interval", type=_interval, default=DEFAULT_FLUSH_INTERVAL, metavar="SECONDS",
        help="when busy, send at most one ledger gossip message this often, batching what "
        f"came in between (default {DEFAULT_FLUSH_INTERVAL}; an idle node sends at once). "
        "Longer means fewer, bigger messages: less CPU per entry, more latency",
    )
    daemon.add_argument(
        "--gossip-drop", type=float, default=0.0, metavar="SHARE",
        help="fault injection for tests: throw away this share (0..1) of received ledger "
        "gossip, to show that sync repairs it",
    )
    daemon.add_argument("-v", "--verbose", action="store_true", help="log what the node does")
    daemon.set_defaults(run=run_daemon)

    ident = commands.add_parser("id", help="this node's peer ID and addresses")
    ident.add_argument("--json", action="store_true")
    ident.set_defaults(run=run_id)

    swarm = commands.add_parser(
        "swarm", help="the peers this node is connected to, and the ones it blocks"
    )
    swarms = swarm.add_subparsers(dest="swarm_command", metavar="SUBCOMMAND", required=True)
    peers = swarms.add_parser("peers", help="list connected peers")
    peers.add_argument("--json", action="store_true")
    peers.set_defaults(run=run_swarm_peers)
    connect = swarms.add_parser("connect", help="dial a peer (/ip4/.../tcp/N/p2p/ID)")
    connect.add_argument("addrs", nargs="+", metavar="MADDR")
    connect.set_defaults(run=run_swarm_connect)
    block = swarms.add_parser(
        "block", help="close every connection to peers and refuse them until unblocked",
        description="Block peers (like Kubo's `swarm filters`, by peer ID): their "
        "connections close now, and neither side can connect again (dials, bootstrap "
        "redials, sync, gossip) until `chorus swarm unblock`. The list lives in the "
        "running daemon only: it is empty again when the daemon restarts.",
    )
    block.add_argument("peers", nargs="+", metavar="PEER", help="peer ID (12D3KooW...)")
    block.add_argument("--json", action="store_true")
    block.set_defaults(run=run_swarm_block)
    unblock = swarms.add_parser(
        "unblock", help="let blocked peers connect again",
        description="Unblock peers. Nothing dials them at once: `chorus swarm connect`, "
        "or wait for the bootstrap redial if they are bootstrap peers.",
    )
    unblock.add_argument("peers", nargs="+", metavar="PEER", help="peer ID (12D3KooW...)")
    unblock.add_argument("--json", action="store_true")
    unblock.set_defaults(run=run_swarm_unblock)
    blocked = swarms.add_parser("blocked", help="list the peers this node blocks")
    blocked.add_argument("--json", action="store_true")
    blocked.set_defaults(run=run_swarm_blocked)

    web = commands.add_parser(
        "web", help="the web app's address, with this node's API token",
        description="Print the address of the running daemon's web app (player, artist, "
        "vote, node and audit views) with the node's API token in it, so the page can "
        "record plays and cast ballots. The page keeps the token for its tab and removes "
        "it from the address bar; whoever has the URL can write to the node, as with the "
        "token file itself.",
        epilog="example:\n  chorus web --as listener --open",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    web.add_argument("--as", dest="as_name", default=None, metavar="KEYNAME",
                     help="the key the page acts as at first (it can switch)")
    web.add_argument("--open", action="store_true", help="also open it in the default browser")
    web.set_defaults(run=run_web)


def _interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 10.0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds in 0..10")
    return value


def run_daemon(args: argparse.Namespace) -> int:
    import trio

    from node.daemon import Daemon, DaemonOptions, run_until_signalled

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    options = DaemonOptions(
        listen=tuple(args.listen or ("/ip4/0.0.0.0/tcp/4001",)),
        http=args.http,
        gateway=args.gateway,
        bootstrap=tuple(args.bootstrap),
        dht=not args.no_dht,
        coop=args.coop or repo_coop(args.data_dir),
        tree_head_interval=args.tree_head_interval,
        sync_interval=args.sync_interval,
        gossip_drop=args.gossip_drop,
        gossip_interval=args.gossip_interval,
    )
    with Repo.open(args.data_dir) as repo:
        daemon = Daemon(repo, options)

        def ready(running: Daemon) -> None:
            print(f"peer ID {running.peer_id}", flush=True)
            for addr in running.listen_addrs:
                print(f"swarm listening on {addr}", flush=True)
            print(f"API server listening on {running.api_url}", flush=True)
            if running.gateway_url:
                print(f"public gateway listening on {running.gateway_url}", flush=True)
            print(f"web app at {running.api_url}/ (`chorus web` prints it with the API "
                  "token, for writes)", flush=True)
            print("daemon is ready", flush=True)

        trio.run(run_until_signalled, daemon, ready)
    print("daemon stopped", flush=True)
    return 0


def repo_coop(data_dir) -> str | None:
    """The co-op this repo joined (`chorus init --coop`), if any."""
    import json

    try:
        config = json.loads((data_dir / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    coop = config.get("coop") if isinstance(config, dict) else None
    return coop if isinstance(coop, str) else None


def run_id(args: argparse.Namespace) -> int:
    daemon = find_daemon(args.data_dir)
    if daemon is not None:
        info = daemon.call("id")
    else:
        import base64

        from node.host import keypair_of
        from node.identity import peer_id_of

        with Repo.open(args.data_dir) as repo:
            public = keypair_of(repo.identity).public_key.serialize()
            info = {
                "ID": peer_id_of(repo.identity),
                "PublicKey": base64.b64encode(public).decode("ascii"),
                "Addresses": [],
            }
    if args.json:
        emit_json(info)
    else:
        print(f"peer ID    {info['ID']}")
        print(f"public key {info['PublicKey']}")
        for addr in info.get("Addresses", []):
            print(f"address    {addr}")
    return 0


def _require_daemon(args: argparse.Namespace):
    daemon = find_daemon(args.data_dir)
    if daemon is None:
        raise ValueError(f"no daemon is running for {args.data_dir} (start `chorus daemon`)")
    return daemon


def run_swarm_peers(args: argparse.Namespace) -> int:
    peers = _require_daemon(args).call("swarm/peers")["Peers"]
    if args.json:
        emit_json({"Peers": peers})
    for peer in peers if not args.json else []:
        print(f"{peer['Addr']}/p2p/{peer['Peer']}" if peer["Addr"] else peer["Peer"])
    return 0


def run_swarm_connect(args: argparse.Namespace) -> int:
    result = _require_daemon(args).call("swarm/connect", {"arg": args.addrs})
    for line in result["Strings"]:
        print(line)
    return 0


def _chorus_api(args: argparse.Namespace):
    """The running daemon's chorus JSON API (the block list lives there, not in the
    Kubo RPC), with the same token."""
    from .ledger import _LedgerApi

    return _LedgerApi(_require_daemon(args))


def _answer(response) -> dict:
    import json

    with response:
        return json.loads(response.read())


def run_swarm_block(args: argparse.Namespace) -> int:
    answer = _chorus_api(args).post("/swarm/blocked", value={"peers": args.peers})
    if args.json:
        emit_json(answer)
        return 0
    added, closed = set(answer["added"]), set(answer["disconnected"])
    for peer in dict.fromkeys(args.peers):
        note = "blocked" if peer in added else "already blocked"
        print(f"{note} {peer}" + (" (connections closed)" if peer in closed else ""))
    return 0


def run_swarm_unblock(args: argparse.Namespace) -> int:
    from urllib.parse import urlencode

    query = urlencode([("peer", peer) for peer in args.peers])
    answer = _answer(_chorus_api(args)._send("DELETE", f"/swarm/blocked?{query}"))
    if args.json:
        emit_json(answer)
        return 0
    removed = set(answer["removed"])
    for peer in dict.fromkeys(args.peers):
        print(f"unblocked {peer}" if peer in removed else f"{peer} was not blocked")
    return 0


def run_swarm_blocked(args: argparse.Namespace) -> int:
    from .ledger import _when

    answer = _chorus_api(args).get("/swarm/blocked")
    if args.json:
        emit_json(answer)
        return 0
    for entry in answer["peers"]:
        print(f"{entry['peer_id']}  since {_when(entry['since'])}")
    return 0


def run_web(args: argparse.Namespace) -> int:
    import webbrowser
    from urllib.parse import urlencode

    from node.api_token import read_api_token
    from node.keystore import Keystore

    daemon = _require_daemon(args)
    token = read_api_token(args.data_dir)
    if token is None:
        raise ValueError(f"no API token in {args.data_dir} (restart the daemon: it makes one)")
    query = {"token": token}
    if args.as_name is not None:
        Keystore(args.data_dir).info(args.as_name)  # an unknown key is refused by name
        query["as"] = args.as_name
    url = f"http://{daemon.host}:{daemon.port}/?{urlencode(query)}"
    print(url)
    if args.open:
        webbrowser.open(url)
    return 0
