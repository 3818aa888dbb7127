"""`reconcile import`: write prefect.yaml and work-pools.yaml from what a store already holds
(or from Prefect 2 deployment.yaml files). The work is in reconciler/onboard/."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.cli.output import user_errors
from reconciler.core.errors import UserError
from reconciler.onboard.secrets import Needed


@click.command("import")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path), metavar="[FILE]...")
@click.option(
    "--from",
    "source_url",
    metavar="URL",
    help="Store or Prefect server to import from (sqlite, postgresql, prefect+http(s)://).",
)
@click.option(
    "--from-prefect2",
    "prefect2",
    is_flag=True,
    help="FILEs are Prefect 2 deployment.yaml files: translate them to Prefect 3.",
)
@click.option(
    "--blocks",
    "blocks_files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="With --from-prefect2: JSON or YAML file of block documents (infrastructure, storage).",
)
@click.option(
    "--blocks-from",
    "blocks_from",
    metavar="URL",
    help="With --from-prefect2: Prefect server (prefect+http(s)://HOST/api) to read the named "
    "blocks no --blocks file gives from.",
)
@click.option(
    "--out",
    "out",
    default=".",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Directory to write prefect.yaml and work-pools.yaml into.",
)
@click.option("--pool", "pools", multiple=True, help="Only deployments of this pool (repeatable).")
@click.option("--tag", "tags", multiple=True, help="Only deployments with this tag (repeatable).")
@click.option("--deployment", "globs", multiple=True, help="Only deployments matching GLOB.")
@click.option("--force", is_flag=True, help="Overwrite prefect.yaml / work-pools.yaml in --out.")
@user_errors
def import_command(
    files: tuple[Path, ...],
    source_url: str | None,
    prefect2: bool,
    blocks_files: tuple[Path, ...],
    blocks_from: str | None,
    out: Path,
    pools: tuple[str, ...],
    tags: tuple[str, ...],
    globs: tuple[str, ...],
    force: bool,
) -> None:
    """Write prefect.yaml and work-pools.yaml for objects that already exist.

    \b
    reconcile import --from sqlite:///state.db --out repo/
    reconcile import --from prefect+http://127.0.0.1:4200/api --out repo/
    reconcile import --from-prefect2 deployment.yaml [--blocks blocks.json]
        [--blocks-from prefect+http://127.0.0.1:4200/api]

    Secrets are written as placeholders; the values to provide are listed.
    Plan the result with `reconcile --dry-run --adopt` to see what would be adopted."""
    from reconciler.onboard.export import ImportFilters, export_state
    from reconciler.onboard.sources import masked_url, observe_source
    from reconciler.onboard.write import write_files

    if prefect2 == bool(source_url):
        raise UserError("give either --from URL or --from-prefect2 FILE...", "see --help")
    if source_url and (files or blocks_files or blocks_from):
        raise UserError("FILE arguments, --blocks and --blocks-from go with --from-prefect2 only")
    if prefect2:
        _import_prefect2(files, blocks_files, blocks_from, out, force)
        return
    assert source_url is not None
    filters = ImportFilters(pools=pools, tags=tags, deployments=globs)
    filters.check()
    observed = observe_source(source_url)
    result = export_state(observed, masked_url(source_url), filters)
    if not result.prefect_files and result.pools_yaml is None:
        filtered = bool(pools or tags or globs)
        raise UserError(
            f"nothing to import from {masked_url(source_url)}"
            + (" with these filters" if filtered else ": it holds no deployment and no pool"),
            "check the filters (--pool, --tag, --deployment)"
            if filtered
            else "check the URL: is it the store your deployments were applied to?",
        )
    texts = dict(result.prefect_files)
    if result.pools_yaml is not None:
        texts["work-pools.yaml"] = result.pools_yaml
    written = write_files(out, texts, force=force)
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(
        f"imported {len(result.deployments)} deployment(s), {len(result.pools)} work pool(s), "
        f"{len(result.queues)} queue(s)"
    )
    _echo_needed(result.needed)
    for note in result.notes:
        click.secho(f"note: {note}", fg="yellow", err=True)
    missing = [path for path in result.entry_files if not (out / path).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        click.secho(
            f"note: the flows' code is not beside the imported files ({shown}); the plan reads "
            "flow names and parameters from it: put the files in the repository that holds "
            "the flows",
            fg="yellow",
            err=True,
        )


def _echo_needed(needed: list[Needed]) -> None:
    if not needed:
        return
    click.echo("values to provide (written as placeholders, never in clear):")
    seen: set[tuple[str, str]] = set()
    for item in needed:
        if (item.kind, item.name) in seen:
            continue
        seen.add((item.kind, item.name))
        users = sorted({n.where for n in needed if (n.kind, n.name) == (item.kind, item.name)})
        how = (
            f"environment variable {item.name} when planning"
            if item.kind == "env"
            else f"block {item.name} (`reconcile secret set {item.name.replace('.', '/', 1)}`)"
        )
        click.echo(f"  {item.placeholder}: {how}; used by {', '.join(users)}")


def _import_prefect2(
    files: tuple[Path, ...],
    blocks_files: tuple[Path, ...],
    blocks_from: str | None,
    out: Path,
    force: bool,
) -> None:
    from reconciler.onboard.prefect2 import translate_files
    from reconciler.onboard.write import write_files

    if not files:
        raise UserError("--from-prefect2 needs at least one deployment.yaml FILE")
    if blocks_from is None:
        result = translate_files(files, blocks_files)
    else:
        from reconciler.prefect_target.blocks import BlockReader

        with BlockReader(blocks_from) as reader:

            def read_block(
                slug: str, name: str
            ) -> tuple[dict[str, object], tuple[str, ...]] | None:
                found = reader.read(slug, name)
                return None if found is None else (found.data, found.secret_fields)

            result = translate_files(files, blocks_files, read_block, reader.api_url)
    texts = {"prefect.yaml": result.prefect_yaml}
    if result.pools_yaml is not None:
        texts["work-pools.yaml"] = result.pools_yaml
    written = write_files(out, texts, force=force)
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"translated {len(result.deployments)} deployment(s)")
    _echo_needed(result.needed)
    if result.untranslated:
        click.echo("not translated (do these by hand):")
        for line in result.untranslated:
            click.echo(f"  - {line}")
