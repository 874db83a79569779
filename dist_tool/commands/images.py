"""dist images: ls, rm, tag, label, inspect, check, import, export; and dist rmi."""


from typing import Annotated

import typer

from dist_tool.commands import (
    DefaultLsGroup,
    FiltersArg,
    JsonOpt,
    ProgressOpt,
    QuietOpt,
    one_platform_choice,
    registry,
    report_collection,
    session,
)
from dist_tool.errors import DataError, InvalidArgument

app = typer.Typer(cls=DefaultLsGroup, no_args_is_help=False, help="Manage images.")
rmi_app = typer.Typer(help="Remove images by name; collect what nothing else uses.")
# pull and push live in commands/registry.py (typer only at module level, like this module).
app.command("pull")(registry.pull)
app.command("push")(registry.push)


def _columns():
    from dist_tool.render import Col, iec, labels_text, short_digest

    return (Col("REF", "name"), Col("TYPE", "target.mediaType", max_width=44),
            Col("DIGEST", "target.digest", fmt=short_digest), Col("SIZE", "size", fmt=iec),
            Col("PLATFORMS", "platforms"), Col("LABELS", "labels", fmt=labels_text))


@app.command("ls")
def ls(ctx: typer.Context,
       filters: FiltersArg = None,
       json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """List images: REF, TYPE, DIGEST, SIZE (packed), PLATFORMS, LABELS."""
    from dist_tool import images

    s = session(ctx)
    if quiet and not json_:  # names only: no walk needed
        s.render.records([{"name": i.name} for i in s.images.list(*(filters or ()))], (), quiet=True)
        return
    views = images.list_images(s, filters or ())
    s.render.records([v.to_json() for v in views], _columns(), as_json=json_, quiet=quiet)


def _remove(ctx: typer.Context, names: list[str], force: bool) -> None:
    from dist_tool import images

    s = session(ctx)
    removed, result, error = images.remove(s, names, force=force)
    for name in removed:
        s.render.line(f"deleted {name}")
    report_collection(s, result)
    if error is not None:
        raise error


@app.command("rm")
def rm(ctx: typer.Context, names: Annotated[list[str], typer.Argument(help="Image names.")],
       force: Annotated[bool, typer.Option("-f", "--force", help="A missing name is not an error.")] = False
       ) -> None:
    """Remove images by name; content nothing else uses is collected before returning."""
    _remove(ctx, names, force)


@rmi_app.command("rmi")
def rmi(ctx: typer.Context, names: Annotated[list[str], typer.Argument(help="Image names.")],
        force: Annotated[bool, typer.Option("-f", "--force", help="A missing name is not an error.")] = False
        ) -> None:
    """Remove images by name (= images rm)."""
    _remove(ctx, names, force)


@app.command("tag")
def tag(ctx: typer.Context, source: Annotated[str, typer.Argument(help="Existing image name.")],
        targets: Annotated[list[str], typer.Argument(help="New names.")],
        force: Annotated[bool, typer.Option("--force", help="Move an existing name.")] = False) -> None:
    """New names for the same target."""
    from dist_tool import images

    s = session(ctx)
    s.render.lines(images.tag(s, source, targets, force=force))


@app.command("label")
def label(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Image name.")],
          labels: Annotated[list[str] | None, typer.Argument(help="KEY=VALUE; KEY= removes.")] = None,
          json_: JsonOpt = False) -> None:
    """Set or remove labels; prints the resulting labels."""
    from dist_tool import images

    s = session(ctx)
    result = images.label(s, name, labels or [])
    s.render.labels(result, json_)


@app.command("inspect")
def inspect(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Image name.")],
            json_: JsonOpt = False) -> None:
    """The descriptor tree: index → manifests → config, layers; size and presence of each."""
    from dist_tool import images, oci
    from dist_tool.render import iec

    s = session(ctx)
    tree = images.inspect(s, name)
    if json_:
        s.render.json(tree)
        return

    def label_of(node: dict) -> str:
        platform = f" {node['platform']}" if node.get("platform") else ""
        state = "" if node["present"] else "  (missing)"
        if node.get("problem"):
            state = f"  ({node['problem']})"
        return (f"{oci.kind_of(node['mediaType'])}{platform} {node['digest']} {iec(node['size'])}"
                f" {node['mediaType']}{state}")

    s.render.tree(tree, label_of)


@app.command("check")
def check(ctx: typer.Context,
          names: Annotated[list[str] | None, typer.Argument(help="Image names (default: all).")] = None,
          verify: Annotated[bool, typer.Option("--verify", help="Re-hash every blob.")] = False,
          json_: JsonOpt = False) -> None:
    """Complete or incomplete per image, and the missing blobs; exit 1 if any is incomplete,
    else 3 if a name does not exist (the others are still checked)."""
    from dist_tool import images
    from dist_tool.render import Col

    s = session(ctx)
    results, missing = images.check(s, names or [], verify=verify)
    if json_:
        s.render.json(results)
    else:
        cols = [Col("REF", "name"), Col("STATUS", "complete", fmt=lambda c: "complete" if c else "incomplete"),
                Col("PRESENT", "present"), Col("REQUIRED", "required"), Col("MISSING", "missing")]
        if verify:
            cols.append(Col("CORRUPT", "corrupt", fmt=lambda c: ",".join(x["digest"] for x in c) or "-"))
        s.render.records(results, cols)
    bad = [r for r in results if not r["complete"] or r.get("corrupt")]
    if bad:
        raise DataError("image", bad[0]["name"], "incomplete" if not bad[0]["complete"] else "corrupt")
    if missing is not None:
        raise missing


@app.command("import")
def import_(ctx: typer.Context,
            file: Annotated[str | None, typer.Argument(help="Archive path, or - for stdin.")] = None,
            name: Annotated[str | None, typer.Option("--name", help="Name for the image.")] = None,
            rootfs: Annotated[str | None, typer.Option("--rootfs", help="Root filesystem TAR or DIR.")] = None,
            config_cmd: Annotated[list[str] | None, typer.Option("--config-cmd", help="Cmd of a --rootfs image.")]
            = None,
            all_platforms: Annotated[bool, typer.Option("--all-platforms", help="Require every platform.")]
            = False,
            platform: Annotated[str | None, typer.Option("--platform", help="Require and unpack os/arch[/variant].")]
            = None,
            no_unpack: Annotated[bool, typer.Option("--no-unpack", help="Store content only.")] = False,
            progress: ProgressOpt = "auto") -> None:
    """Import an OCI image-layout or docker-save archive (tar; plain, gzip, zstd, xz or bzip2), or a rootfs."""
    from dist_tool import archive
    from dist_tool.render import Progress

    if (file is None) == (rootfs is None):  # SPEC: FILE|- or --rootfs, one source
        raise InvalidArgument("import", file or "", "needs an archive (FILE, or - for stdin) or --rootfs, "
                              + ("not both" if file is not None else "and got neither"))
    if file == "":
        raise InvalidArgument("archive", "", "must not be empty (- reads stdin)")
    if rootfs == "":
        raise InvalidArgument("--rootfs", "", "must not be empty")
    # Options that would be silently ignored: a script that passes them expects them to act.
    if rootfs is None and config_cmd:
        raise InvalidArgument("--config-cmd", " ".join(config_cmd), "applies to --rootfs images only")
    if rootfs is not None and (platform is not None or all_platforms):
        raise InvalidArgument("--platform" if platform is not None else "--all-platforms", platform or "",
                              "does not apply to --rootfs (the image is the host's platform)")
    one_platform_choice(platform, all_platforms)
    s = session(ctx)
    with Progress(progress) as bar:
        if rootfs is not None:
            names = archive.import_rootfs(s, rootfs, name, config_cmd or [], progress=bar, unpack=not no_unpack)
        else:
            names = archive.import_archive(s, file, name=name, platform=platform, all_platforms=all_platforms,
                                           unpack=not no_unpack, progress=bar)
    s.render.lines(names)


@app.command("export")
def export(ctx: typer.Context, file: Annotated[str, typer.Argument(help="Output path, or - for stdout.")],
           names: Annotated[list[str], typer.Argument(help="Image names.")],
           platform: Annotated[str | None, typer.Option("--platform", help="Only this platform.")] = None,
           all_platforms: Annotated[bool, typer.Option("--all-platforms", help="The whole image (the default).")]
           = False,
           progress: ProgressOpt = "auto") -> None:
    """Write an OCI image-layout tar that skopeo, podman load and docker load read."""
    from dist_tool import export as exporter
    from dist_tool.render import Progress

    one_platform_choice(platform, all_platforms)
    s = session(ctx)
    with Progress(progress) as bar:
        exporter.export_archive(s, file, names, platform=platform, progress=bar)
