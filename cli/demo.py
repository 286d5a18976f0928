"""`chorus demo`: show a newcomer a node working, in one command."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from rich.console import Console

from node.demo import DemoStep, run_content_demo

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run a throwaway local node and show it working")
    demo.add_argument(
        "--keep", action="store_true", help="keep the demo's data directory and print where"
    )
    demo.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="chorus-demo-"))
    console.print(f"[bold]chorus demo[/bold] — a throwaway node in {workdir}")

    def show(step: DemoStep) -> None:
        console.print(f"  [green]✓[/green] {step.title}: {step.detail}", soft_wrap=True)

    try:
        run_content_demo(workdir, show)
    finally:
        if args.keep:
            console.print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    console.print("[bold green]demo passed[/bold green]: every byte came back as it went in.")
    return 0
