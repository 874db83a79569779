"""dist pull and dist push (also ``dist images pull|push``): the OCI distribution API."""


from typing import Annotated

import typer

from dist_tool.commands import ProgressOpt, one_platform_choice, session

pull_app = typer.Typer(help="Pull an image from a registry.")
push_app = typer.Typer(help="Push an image to a registry.")

PlatformOpt = Annotated[str | None, typer.Option("--platform", help="os/arch[/variant] (default: the host's).")]
PlainHttpOpt = Annotated[bool, typer.Option("--plain-http", help="Talk HTTP, not HTTPS, to the registry.")]
UserOpt = Annotated[str | None, typer.Option(
    "--user", "-u", help="USER[:PASS]; without :PASS, prompts on a terminal, else reads a line from stdin.")]


def _credentials(user: str | None):
    if user is None:
        return None
    from dist_tool.remote.auth import parse_user

    return parse_user(user, _read_password)


def _read_password(user: str) -> str:
    import sys

    if sys.stdin.isatty():
        import getpass

        try:
            return getpass.getpass(f"Password for {user}: ")
        except EOFError:  # ^D at the prompt: no password, as at the end of a pipe (^C is the interrupt)
            if sys.stderr.isatty():
                sys.stderr.write("\n")  # the error's line after the prompt's
            line = ""
    else:
        line = sys.stdin.readline()
    if not line:  # stdin ended before a line (</dev/null, a CI job): no password was given, not ""
        from dist_tool.errors import InvalidArgument

        raise InvalidArgument("--user", user, "no :PASS given and stdin ended before a password line")
    return line.rstrip("\r\n")


@pull_app.command("pull")
def pull(ctx: typer.Context, ref: Annotated[str, typer.Argument(help="Reference: NAME[:TAG] or NAME@DIGEST.")],
         platform: PlatformOpt = None,
         all_platforms: Annotated[bool, typer.Option("--all-platforms", help="Every platform's blobs.")] = False,
         plain_http: PlainHttpOpt = False, user: UserOpt = None,
         no_unpack: Annotated[bool, typer.Option("--no-unpack", help="Store content only.")] = False,
         progress: ProgressOpt = "auto") -> None:
    """Pull an image (OCI distribution API); blobs already present are not fetched. Prints its name."""
    from dist_tool.remote import pull as pulling
    from dist_tool.render import Progress

    one_platform_choice(platform, all_platforms)
    s = session(ctx)
    credentials = _credentials(user)
    with Progress(progress) as bar:
        result = pulling.pull(s, ref, platform=platform, all_platforms=all_platforms, plain_http=plain_http,
                              credentials=credentials, unpack=not no_unpack, progress=bar)
    s.render.line(result.name)


@push_app.command("push")
def push(ctx: typer.Context, ref: Annotated[str, typer.Argument(help="Where to push: NAME[:TAG].")],
         local: Annotated[str | None, typer.Argument(help="The local image (default: REF).")] = None,
         platform: Annotated[str | None, typer.Option("--platform", help="Push only this platform's manifest.")]
         = None,
         plain_http: PlainHttpOpt = False, user: UserOpt = None, progress: ProgressOpt = "auto") -> None:
    """Push an image: the blobs the registry lacks, then the manifests. Prints REF@DIGEST."""
    from dist_tool.remote import push as pushing
    from dist_tool.render import Progress

    one_platform_choice(platform)
    s = session(ctx)
    credentials = _credentials(user)
    with Progress(progress) as bar:
        result = pushing.push(s, ref, local, platform=platform, plain_http=plain_http, credentials=credentials,
                              progress=bar)
    s.render.line(result.pinned)
