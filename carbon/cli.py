"""Command-line tasks: ``flask --app app:create_app <command>``."""
from __future__ import annotations

import click
from flask import Flask


def register(app: Flask) -> None:
    @app.cli.command("seed-demo")
    def seed_demo() -> None:
        """Create the demo data (idempotent: a second run changes nothing)."""
        from carbon.demo import seed

        for line in seed():
            click.echo(line)
