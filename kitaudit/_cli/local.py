"""Commands on the local store: pack, unpack, list, inspect, info, tag, remove, diff,
init, version."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kitaudit._cli._output import emit, output_option, print_json, print_table
from kitaudit._cli.registry import NetCommand, net_kwargs, network_options
from kitaudit._cli.sign import sign_after, signer_options


def _store():
    from kitaudit.store import default_store

    return default_store()


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _remote_option():
    return click.option("-r", "--remote", is_flag=True,
                        help="Work on the registry instead of the local store.")


def _is_remote_registry(ref: str) -> bool:
    from kitaudit.reference import parse

    return parse(ref.split("@", 1)[0])[0].registry != "localhost" if not ref.startswith(
        "sha256:") else False


def _filter_option():
    return click.option("--filter", "-filter", "filters", multiple=True, metavar="FILTER",
                        help="kit filter: TYPE[,TYPE][:NAME[,NAME]] with types kitfile "
                             "(config), model, datasets (dataset), code, docs, prompts, "
                             "mcpservers. Repeat for OR.")


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("-f", "--file", "kitfile_path", type=click.Path(dir_okay=False),
              help="Kitfile to use (default: DIRECTORY/Kitfile).")
@click.option("-t", "--tag", "tags", multiple=True,
              help="Reference to tag the ModelKit with: [registry/]repository[:tag[,tag2]].")
@click.option("--compression", type=click.Choice(["none", "gzip", "gzip-fastest", "zstd"]),
              default="none", show_default=True)
@click.option("--layer-format", type=click.Choice(["tar", "raw"]), default="tar",
              show_default=True, help="raw stores single-file entries as the file itself.")
@click.option("--use-model-pack", is_flag=True, help="Write a CNCF ModelPack artifact.")
@click.option("--no-sbom", is_flag=True, help="Do not write the CycloneDX ML-BOM.")
@click.option("--sbom-spec", type=click.Choice(["1.6", "1.7"]), default="1.6",
              show_default=True)
@click.option("--model-card", type=click.Path(dir_okay=False, exists=True),
              help="Hugging Face-style model card with facts for the ML-BOM.")
@signer_options()
@output_option(default="text", choices=("text", "json"))
def pack(directory, kitfile_path, tags, compression, layer_format, use_model_pack, no_sbom,
         sbom_spec, model_card, sign, sign_key, identity_token, staging, trust_config,
         output):
    """Pack DIRECTORY (with its Kitfile) into a ModelKit in the local store.

    With --sign the ModelKit and its ML-BOM are signed right away (--key for a key,
    keyless otherwise), as `kitaudit sign` does."""
    from kitaudit import pack as packmod

    if (sign_key or identity_token or staging or trust_config) and not sign:
        raise click.UsageError("signing options need --sign")

    def on_layer(kind: str, path: str) -> None:
        if output != "json":
            click.echo(f"Saving {kind} layer: {path}", err=True)

    from kitaudit.registry.transfer import fetch_kitfile

    result = packmod.pack(directory, kitfile_path=kitfile_path, tags=tags,
                          remote=fetch_kitfile,
                          compression=compression, layer_format=layer_format,
                          use_model_pack=use_model_pack, sbom=not no_sbom,
                          sbom_spec=sbom_spec, model_card=model_card, store=_store(),
                          on_layer=on_layer)

    signed = None
    if sign:
        store = _store()
        signed = sign_after(store, result.tags[0] if result.tags else result.digest,
                            sign_key, identity_token, staging, trust_config)
    data = result.to_dict()
    if signed is not None:
        data["signed"] = signed.to_dict()

    def human():
        if signed is not None:
            click.echo(f"Signed {result.digest} as {signed.signer} "
                       f"({len(signed.attached)} bundles)", err=True)
        if result.sbom_digest:
            click.echo(f"Saved ML-BOM: {result.sbom_digest}", err=True)
        for name in result.tags:
            click.echo(f"Tagged {name}", err=True)
        click.echo(f"Model saved: {result.digest}")

    emit(output, data, human)


@click.command()
@click.argument("ref")
@click.option("-d", "--dir", "directory", default=".", show_default=True,
              type=click.Path(file_okay=False), help="Directory to unpack into.")
@_filter_option()
@click.option("-o", "--overwrite", is_flag=True, help="Overwrite existing files.")
@click.option("-i", "--ignore-existing", is_flag=True, help="Keep existing files, skip them.")
@output_option(default="text", choices=("text", "json"))
def unpack(ref, directory, filters, overwrite, ignore_existing, output):
    """Unpack REF from the local store into a directory."""
    from kitaudit import unpack as unpackmod
    from kitaudit.local import full_ref

    result = unpackmod.unpack(_store(), full_ref(ref), directory, filters=filters,
                              overwrite=overwrite, ignore_existing=ignore_existing)

    def human():
        for f in result.files:
            click.echo(f"Unpacked {f}", err=True)
        for f in result.skipped:
            click.echo(f"Skipped existing {f}", err=True)
        click.echo(f"Unpacked {len(result.files)} files"
                   f"{' and the Kitfile' if result.kitfile else ''} into {result.target}")

    emit(output, result.to_dict(), human)


@click.command(name="list", cls=NetCommand)
@click.argument("repository", required=False)
@_remote_option()
@click.option("--local", "local_only", is_flag=True,
              help="Only the local store, even for a repository on a registry.")
@network_options
@output_option()
def list_(repository, remote, local_only, output, **params):
    """List ModelKits in the local store, or the tags of REPOSITORY.

    As with kit, a REPOSITORY on a registry other than localhost is listed from the
    registry (use --local for the local store's copies)."""
    from kitaudit import local

    net = net_kwargs(params)
    if repository and not local_only and (remote or _is_remote_registry(repository)):
        from kitaudit.registry.transfer import remote_list_tags

        tags = remote_list_tags(repository, **net)
        rows = [{"repository": n.rsplit(":", 1)[0], "tag": n.rsplit(":", 1)[1],
                 "digest": d["digest"], "mediaType": d.get("mediaType", "")} for n, d in tags]
        emit(output, rows, lambda: print_table(
            ["REPOSITORY", "TAG", "DIGEST"],
            [[r["repository"], r["tag"], r["digest"]] for r in rows]))
        return
    rows = local.list_modelkits(_store(), repository)
    emit(output, rows, lambda: print_table(
        ["REPOSITORY", "TAG", "MAINTAINER", "NAME", "SIZE", "DIGEST"],
        [[r["repository"], r["tag"], r["maintainer"], r["name"], _human_size(r["size"]),
          r["digest"]] for r in rows]))


@click.command(cls=NetCommand)
@click.argument("ref")
@_remote_option()
@network_options
@output_option(default="json", choices=("json",))
def inspect(ref, remote, output, **params):
    """Print the manifest, digest and Kitfile of REF (JSON)."""
    from kitaudit import local

    net = net_kwargs(params)
    print_json(local.inspect_remote(ref, **net) if remote else local.inspect(_store(), ref))


@click.command(cls=NetCommand)
@click.argument("ref")
@_filter_option()
@_remote_option()
@network_options
@output_option(default="yaml", choices=("yaml", "json"))
def info(ref, filters, remote, output, **params):
    """Print the Kitfile of REF (--filter keeps only the matching sections)."""
    from kitaudit import local

    net = net_kwargs(params)
    kitfile = local.info_remote(ref, **net) if remote else local.info(_store(), ref)
    if filters:
        kitfile = local.filter_kitfile(kitfile, filters)
    if output == "json":
        print_json(kitfile.to_dict())
    else:
        click.echo(kitfile.to_yaml(), nl=False)


@click.command(cls=NetCommand)
@click.argument("source")
@click.argument("dest")
@_remote_option()
@network_options
def tag(source, dest, remote, **params):
    """Tag a ModelKit: `tag SRC DEST`, or the short form `tag NEWTAG REF` which adds
    NEWTAG to the repository of REF, pointing at what REF points at.

    Works on the local store when SRC is there; otherwise (or with -r) on the registry,
    by a manifest PUT alone (no blob is transferred)."""
    from kitaudit import local
    from kitaudit.errors import NotFound

    net = net_kwargs(params)
    if "/" not in source and ":" not in source and "@" not in source and (
            "/" in dest or ":" in dest):
        # short form: tag NEWTAG REF
        newtag, ref = source, dest
        base = ref.split("@", 1)[0]
        repo = base.rsplit(":", 1)[0] if ":" in base.rsplit("/", 1)[-1] else base
        source, dest = ref, f"{repo}:{newtag}"
    if not remote:
        try:
            digest = local.tag(_store(), source, dest)
            click.echo(f"Tagged {dest} → {digest}")
            return
        except NotFound:
            if not _is_remote_registry(source):
                raise
    from kitaudit.registry.transfer import remote_tag

    result = remote_tag(local.full_ref(source), local.full_ref(dest), **net)
    click.echo(f"Tagged {result['reference']} → {result['digest']} (on the registry)")


@click.command(cls=NetCommand)
@click.argument("ref", required=False)
@click.option("-a", "--all", "all_", is_flag=True,
              help="Remove all untagged ModelKits (with --force: every ModelKit).")
@click.option("-f", "--force", is_flag=True,
              help="Remove the ModelKit even if other tags point at it.")
@_remote_option()
@network_options
@output_option(default="text", choices=("text", "json"))
def remove(ref, all_, force, remote, output, **params):
    """Remove a ModelKit (by tag or digest) from the local store, or with -r from the
    registry (the manifest is deleted, with every tag pointing at it)."""
    from kitaudit import local

    net = net_kwargs(params)
    if remote:
        if not ref:
            raise click.UsageError("remove -r needs a reference")
        from kitaudit.registry.transfer import remote_remove

        removed = [remote_remove(local.full_ref(ref), **net)]
    else:
        removed = local.remove(_store(), ref, all_=all_, force=force)
    emit(output, {"removed": removed},
         lambda: [click.echo(f"Removed {r}") for r in removed] or None)


@click.command()
@click.argument("a")
@click.argument("b")
@output_option(default="text", choices=("text", "json"))
def diff(a, b, output):
    """Compare two ModelKits: config, annotations and layers. Exit 1 if they differ."""
    from kitaudit import local

    result = local.diff(_store(), a, b)

    def human():
        click.echo(f"Config:      {'same' if result['SameConfig'] else 'different'}")
        click.echo(f"Annotations: {'same' if result['AnnotationsMatch'] else 'different'}")
        for label, key in (("Shared", "SharedLayers"), (f"Only in {a}", "UniqueLayersA"),
                           (f"Only in {b}", "UniqueLayersB")):
            layers = result.get(key) or []
            click.echo(f"{label}: {len(layers)} layer(s)")
            for layer in layers:
                click.echo(f"  {layer.get('mediaType', '')} {layer.get('digest', '')}")

    emit(output, result, human)
    same = result["SameConfig"] and result["AnnotationsMatch"] and not (
        result.get("UniqueLayersA") or result.get("UniqueLayersB"))
    sys.exit(0 if same else 1)


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, exists=True))
@click.option("--name", help="Package and model name (default: the directory name).")
@click.option("--desc", "description", help="Package description.")
@click.option("--author", help="Package author.")
@click.option("--force", is_flag=True, help="Overwrite an existing Kitfile.")
def init(directory, name, description, author, force):
    """Write a Kitfile for DIRECTORY by detecting models, datasets, docs and code."""
    from kitaudit import generate

    kitfile = generate.generate_kitfile(directory, name=name or Path(directory).resolve().name,
                                        description=description, author=author)
    path = generate.write_kitfile(directory, kitfile, force=force)
    click.echo(f"Generated Kitfile: {path}")


@click.command()
@output_option(default="text", choices=("text", "json"))
def version(output):
    """Print the kitaudit version."""
    import platform

    from kitaudit import __version__
    from kitaudit.pack import CLI_VERSION

    data = {"version": __version__, "modelkitFormat": CLI_VERSION,
            "python": platform.python_version()}
    emit(output, data, lambda: click.echo(
        f"kitaudit {__version__} (ModelKit format {CLI_VERSION.split('+')[0]}, "
        f"Python {data['python']})"))


def register(main: click.Group) -> None:
    for cmd in (pack, unpack, list_, inspect, info, tag, remove, diff, init, version):
        main.add_command(cmd)
