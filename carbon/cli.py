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

    @app.cli.command("create-organizer")
    @click.option("--organization", required=True, help="the organization's name")
    @click.option("--email", required=True)
    @click.option("--name", "display_name", required=True, help="the owner's display name")
    @click.password_option()
    def create_organizer(organization: str, email: str, display_name: str, password: str) -> None:
        """Create an organization and its first owner."""
        from carbon.organizers.service import create_organization

        member = create_organization(organization, owner_email=email, owner_password=password,
                                     owner_name=display_name)
        click.echo(f"organizer {member.email} ({member.public_id}) owns {member.organization.public_id}")
