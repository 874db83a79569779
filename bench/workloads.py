"""The workloads: one function each, registered with `@workload`, returning a Plan.

A Plan is the commands to time side by side (dist first, then its anchors) and the targets to
judge them by. To add a workload (unpack, container create, run, push/pull), write one more
function: build its commands from `Context` (private dist stores, ctr in a namespace of the
run's containerd, private podman stores, the fixtures) with `prepare` (once), `setup` (before
each run) and `verify` (after each run) steps, and name its targets from SPEC or the issue.

Every dist command gets its own `--root` and `--state` under the run's scratch directory.
Anchors run on warm page caches as dist does: fixtures are read many times per run.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.anchors import (
    Fixtures,
    Services,
    ensure_huge,
    ensure_tagged_store,
    podman,
    podman_runroot,
    remove_tree,
    tagged_store_dir,
)
from bench.harness import (
    Command,
    Headroom,
    Log,
    PeakRss,
    Ratio,
    Seconds,
    Step,
    StepError,
    Target,
    error_line,
    sh,
)

MB = 1_000_000


@dataclass
class Context:
    """What workloads build commands from. One per bench run; `begin()` gives each workload its
    own scratch directory, `end()` runs its clean-ups."""

    dist: str                      # the dist executable
    python: str                    # the venv's python: the start-up floor
    fixtures: Fixtures
    services: Services
    work: Path                     # the run's scratch directory
    env: dict[str, str]            # the environment of dist commands
    log: Log
    keep: bool = False
    here: Path = Path()
    cleanups: list[Step] = field(default_factory=list)

    def begin(self, name: str) -> None:
        self.here = self.work / name
        self.here.mkdir(parents=True, exist_ok=True)
        self.cleanups = []

    def end(self) -> None:
        for step in reversed(self.cleanups):
            try:
                step()
            except StepError as e:
                self.log(f"clean-up: {e}")
        if not self.keep:
            try:
                remove_tree(self.here, self.log)
            except StepError as e:
                self.log(f"clean-up: {e}")

    def tmp(self, name: str) -> Path:
        """A path in this workload's scratch directory (not created)."""
        return self.here / name

    # dist -------------------------------------------------------------------------------

    def dist_argv(self, store: Path, *args: str) -> list[str]:
        return [self.dist, "--root", str(store / "root"), "--state", str(store / "state"), *args]

    def dist_cmd(self, key: str, label: str, store: Path, *args: str, **steps: Step | None
                 ) -> Command:
        return Command(key, label, self.dist_argv(store, *args), role="dist", env=self.env,
                       **steps)

    def run_dist(self, store: Path, *args: str) -> str:
        """An untimed dist command (preparation, verification); its stdout."""
        return sh(self.dist_argv(store, *args), "dist " + " ".join(args[:2]), env=self.env)

    # ctr --------------------------------------------------------------------------------

    def ctr_cmd(self, key: str, label: str, ns: str, *args: str, **steps: Step | None) -> Command:
        return Command(key, label, self.services.ctr(ns, *args), **steps)

    def ctr_namespace(self, ns: str) -> Step:
        """A prepare step: start the services and make NS empty now and after the workload
        (containerd's content is shared by namespaces: leftovers would speed up later imports)."""
        def prepare() -> None:
            self.services.start()
            self.services.ctr_clear(ns)
            self.cleanups.append(lambda: self.services.ctr_clear(ns))
        return prepare

    def run_ctr(self, ns: str, *args: str) -> str:
        return sh(self.services.ctr(ns, *args), "ctr " + " ".join(args[:2]))


@dataclass(frozen=True)
class Plan:
    description: str
    commands: list[Command]
    targets: list[Target]


@dataclass(frozen=True)
class Workload:
    name: str
    summary: str
    build: Callable[[Context], Plan]
    runs: int                      # default number of timed runs
    warmup: int                    # untimed rounds first


WORKLOADS: dict[str, Workload] = {}


def _private_podman(ctx, pm_dir: Path) -> tuple[list[str], Callable[[], None]]:
    """podman on a store private to PM_DIR: its argv and a reset to an empty store. The runroot
    (under /run, for podman's path-length limit) is removed when the workload ends."""
    ctx.cleanups.append(lambda: remove_tree(podman_runroot(pm_dir)))

    def fresh() -> None:
        remove_tree(pm_dir)
        remove_tree(podman_runroot(pm_dir))

    return podman(pm_dir), fresh


def workload(name: str, summary: str, *, runs: int, warmup: int = 0):
    def register(build: Callable[[Context], Plan]) -> Callable[[Context], Plan]:
        WORKLOADS[name] = Workload(name, summary, build, runs, warmup)
        return build
    return register


def once(step: Step) -> Step:
    """STEP shared by several commands (one store timed two ways): runs at most once; a failure
    is raised again to every caller."""
    state: list[StepError | None] = []

    def run() -> None:
        if not state:
            try:
                step()
                state.append(None)
            except StepError as e:
                state.append(e)
        if state[0] is not None:
            raise state[0]
    return run


def steps(*fns: Step) -> Step:
    def run() -> None:
        for fn in fns:
            fn()
    return run


def blobs_present(content: Path, digests: list[str], want: bool) -> Step:
    """A verify step: every one of DIGESTS is (want=True) or is not (False) under CONTENT."""
    def verify() -> None:
        wrong = [d for d in digests if (content / "blobs" / "sha256" / d).exists() != want]
        if wrong:
            state = "missing" if want else "still present"
            raise StepError(f"{len(wrong)} of {len(digests)} blobs {state} in {content}, "
                            f"e.g. sha256:{wrong[0][:12]}")
    return verify


def file_at_least(path: Path, size: int) -> Step:
    def verify() -> None:
        got = path.stat().st_size if path.exists() else None
        if got is None or got < size:
            raise StepError(f"{path}: {'missing' if got is None else f'{got} bytes'}, "
                            f"expected at least {size}")
    return verify


# ------------------------------------------------------------------------------ workloads

@workload("startup", "dist images on an empty store vs ctr images ls, podman images; "
          "python -c pass is the floor", runs=20, warmup=2)
def startup(ctx: Context) -> Plan:
    store, ns, pm = ctx.tmp("dist"), "bench-startup", ctx.tmp("podman")
    ctx.cleanups.append(lambda: remove_tree(podman_runroot(pm)))
    return Plan("list an empty store: what starting up costs", [
        ctx.dist_cmd("dist", "dist images", store, "images"),
        ctx.dist_cmd("dist-json", "dist images --json", store, "images", "--json"),
        ctx.ctr_cmd("ctr", "ctr images ls", ns, "images", "ls", prepare=ctx.ctr_namespace(ns)),
        Command("podman", "podman images", [*podman(pm), "images"]),
        Command("python", "python -c pass", [ctx.python, "-c", "pass"], role="floor"),
        # The 0.060 s assumes `import typer` costs 0.045-0.053 s; on a slower machine this
        # floor shows what is left for dist itself (reference: 0.060 / 0.053 = 1.13 x).
        import_floor(ctx),
    ], [Seconds("dist", 0.060), Ratio("dist", "ctr"), Ratio("dist", "podman"),
        Ratio("dist", "python"), Ratio("dist", "typer"), Headroom("dist", "typer", 0.060)])


N_TAGS = 1000


@workload("list-1001", "dist images (table, --json) with 1,001 names of busybox vs "
          "ctr images ls, podman images (table, --format json)", runs=10, warmup=1)
def list_1001(ctx: Context) -> Plan:
    fx, store, ns = ctx.fixtures, ctx.tmp("dist"), "bench-list"
    source = fx.env["BUSYBOX_REF"]
    names = [f"docker.io/library/busybox:t{i:04d}" for i in range(1, N_TAGS + 1)]
    archive = str(fx.path("BUSYBOX_OCI_ARCHIVE"))

    # Imported with unpacking, each tool's default: the store a user would list.
    def dist_prepare() -> None:
        ctx.run_dist(store, "images", "import", archive)
        ctx.run_dist(store, "images", "tag", source, *names)
        got = len(ctx.run_dist(store, "images", "-q").split())
        if got != N_TAGS + 1:
            raise StepError(f"dist images -q lists {got} names, expected {N_TAGS + 1}")

    def ctr_prepare() -> None:
        ctx.ctr_namespace(ns)()
        ctx.run_ctr(ns, "images", "import", archive)
        ctx.run_ctr(ns, "images", "tag", source, *names)

    pm_store = tagged_store_dir(fx, N_TAGS + 1)
    pm = podman(pm_store)
    # The runroot (lock files) is re-created by podman when missing: no state is kept in /run.
    ctx.cleanups.append(lambda: remove_tree(podman_runroot(pm_store)))
    podman_prepare = once(lambda: ensure_tagged_store(fx, source, names, ctx.log))

    dist_once = once(dist_prepare)
    return Plan(f"list a store of {N_TAGS + 1:,} names of one image (busybox)", [
        ctx.dist_cmd("dist", "dist images", store, "images", prepare=dist_once),
        ctx.dist_cmd("dist-json", "dist images --json", store, "images", "--json",
                     prepare=dist_once),
        ctx.ctr_cmd("ctr", "ctr images ls", ns, "images", "ls", prepare=ctr_prepare),
        Command("podman", "podman images", [*pm, "images"], prepare=podman_prepare),
        Command("podman-json", "podman images --format json", [*pm, "images", "--format", "json"],
                prepare=podman_prepare),
        import_floor(ctx),
    ], [Ratio("dist", "ctr", 0.1), Ratio("dist", "podman", 2.0),
        Ratio("dist-json", "podman-json", 0.1), Headroom("dist-json", "typer", 0.1, "podman-json")])


@workload("list-1001-remote", "dist images --json with 1,001 names of busybox: the local store vs "
          "the same store through dist serve (--address unix://)", runs=10, warmup=1)
def list_1001_remote(ctx: Context) -> Plan:
    fx, store = ctx.fixtures, ctx.tmp("dist")
    source = fx.env["BUSYBOX_REF"]
    names = [f"docker.io/library/busybox:t{i:04d}" for i in range(1, N_TAGS + 1)]
    address = f"unix://{ctx.tmp('dist.sock')}"
    served: list[subprocess.Popen] = []

    def stop() -> None:
        for proc in served:
            proc.terminate()
            proc.wait(timeout=10)
            proc.stderr.close()

    def prepare() -> None:
        ctx.run_dist(store, "images", "import", str(fx.path("BUSYBOX_OCI_ARCHIVE")))  # unpacked, as list-1001
        ctx.run_dist(store, "images", "tag", source, *names)
        proc = subprocess.Popen(ctx.dist_argv(store, "serve", "--address", address), env=ctx.env,
                                stderr=subprocess.PIPE)
        served.append(proc)
        if b"listening" not in proc.stderr.readline():
            raise StepError("dist serve did not start")
        got = len(ctx.run_dist(store, "--address", address, "images", "-q").split())
        if got != N_TAGS + 1:
            raise StepError(f"dist images -q through --address lists {got} names, expected {N_TAGS + 1}")

    ctx.cleanups.append(stop)
    ready = once(prepare)
    return Plan(f"list a store of {N_TAGS + 1:,} names of one image, locally and through dist serve", [
        ctx.dist_cmd("dist-json", "dist images --json", store, "images", "--json", prepare=ready),
        ctx.dist_cmd("remote-json", "dist --address unix:// images --json", store, "--address", address,
                     "images", "--json", prepare=ready),
    ], [Ratio("remote-json", "dist-json", 1.5)])


def _import_commands(ctx: Context, archive: Path, blobs: list[str], ns: str) -> list[Command]:
    """dist, skopeo and ctr importing ARCHIVE without unpacking, each into an empty store."""
    store, layout = ctx.tmp("dist"), ctx.tmp("skopeo-layout")
    # ctr: the image is deleted with a synchronous GC before each run and the namespace is
    # checked to hold no content (ctr_clear), so every blob is really written again. A fresh
    # namespace per run would not ensure that: with containerd's default "shared" content
    # policy a blob already in the backing store is adopted by a new namespace without
    # being written.
    return [
        ctx.dist_cmd("dist", "dist images import --no-unpack", store,
                     "images", "import", "--no-unpack", str(archive),
                     setup=lambda: remove_tree(store),
                     verify=blobs_present(store / "root" / "content", blobs, True)),
        Command("skopeo", "skopeo copy oci-archive: oci:",
                ["skopeo", "copy", "-q", f"oci-archive:{archive}", f"oci:{layout}:latest"],
                setup=lambda: remove_tree(layout),
                verify=blobs_present(layout, blobs, True)),
        ctx.ctr_cmd("ctr", "ctr images import --no-unpack", ns,
                    "images", "import", "--no-unpack", str(archive),
                    prepare=ctx.ctr_namespace(ns), setup=lambda: ctx.services.ctr_clear(ns)),
    ]


@workload("import-large", "dist images import --no-unpack of large (108 MiB, 4 layers) into a "
          "fresh store vs skopeo copy and ctr images import --no-unpack", runs=5, warmup=1)
def import_large(ctx: Context) -> Plan:
    fx = ctx.fixtures
    archive = fx.path("LARGE_OCI_ARCHIVE")
    return Plan(f"import large-oci.tar ({fx.mib('LARGE_OCI_ARCHIVE')}) without unpacking, "
                "into an empty store each run",
                _import_commands(ctx, archive, fx.blobs("large"), "bench-import"),
                [Ratio("dist", "skopeo", 1.0), Ratio("dist", "ctr", 0.6),
                 PeakRss("dist", 100 * MB)])


@workload("import-1g", "dist images import --no-unpack of a 1 GiB archive (4 layers of random "
          "data); skopeo and ctr for reference", runs=3)
def import_1g(ctx: Context) -> Plan:
    archive, info = ensure_huge(ctx.fixtures, ctx.log)
    return Plan(f"import huge-oci.tar ({archive.stat().st_size / 2**30:.2f} GiB, "
                f"{info['layers']} layers of incompressible data) without unpacking",
                _import_commands(ctx, archive, info["blobs"], "bench-import-1g"),
                [PeakRss("dist", 100 * MB), Ratio("dist", "skopeo"), Ratio("dist", "ctr")])


@workload("export-large", "dist images export of large vs ctr images export", runs=5, warmup=1)
def export_large(ctx: Context) -> Plan:
    fx, store, ns = ctx.fixtures, ctx.tmp("dist"), "bench-export"
    ref, archive = fx.env["LARGE_REF"], str(fx.path("LARGE_OCI_ARCHIVE"))
    packed = int(fx.env["LARGE_PACKED"])
    out = {k: ctx.tmp(f"{k}-out.tar") for k in ("dist", "ctr")}

    def ctr_prepare() -> None:
        ctx.ctr_namespace(ns)()
        ctx.run_ctr(ns, "images", "import", "--no-unpack", archive)

    return Plan(f"export {ref} ({fx.mib('LARGE_OCI_ARCHIVE')}) to an OCI archive file", [
        ctx.dist_cmd("dist", "dist images export", store, "images", "export",
                     str(out["dist"]), ref,
                     prepare=lambda: ctx.run_dist(store, "images", "import", "--no-unpack",
                                                  archive),
                     setup=lambda: remove_tree(out["dist"]),
                     verify=file_at_least(out["dist"], packed)),
        ctx.ctr_cmd("ctr", "ctr images export", ns, "images", "export", str(out["ctr"]), ref,
                    prepare=ctr_prepare, setup=lambda: remove_tree(out["ctr"]),
                    verify=file_at_least(out["ctr"], packed)),
    ], [Ratio("dist", "ctr", 1.0)])


@workload("rmi-large", "dist rmi of large, unpacked, with its content and snapshots vs "
          "ctr images rm --sync (each after an untimed fresh import)", runs=5)
def rmi_large(ctx: Context) -> Plan:
    fx, store, ns = ctx.fixtures, ctx.tmp("dist"), "bench-rmi"
    ref, archive = fx.env["LARGE_REF"], str(fx.path("LARGE_OCI_ARCHIVE"))

    # Both imports unpack (each tool's default), so both deletes remove content and snapshots;
    # both verify that nothing of the image is left.
    def dist_setup() -> None:
        remove_tree(store)
        ctx.run_dist(store, "images", "import", archive)

    def dist_no_snapshots() -> None:
        argv = ctx.dist_argv(store, "snapshot", "ls", "--json")
        proc = subprocess.run(argv, capture_output=True, text=True, env=ctx.env)
        if proc.returncode == 2:       # no `snapshot` command yet: nothing was unpacked either
            rmi.note("dist has no `snapshot ls` yet, so its import did not unpack: this "
                     "times dist deleting content against ctr deleting content and snapshots "
                     f"({error_line(proc.stderr)})")
        elif proc.returncode != 0:
            raise StepError(f"dist snapshot ls: exit {proc.returncode}: "
                            f"{error_line(proc.stderr)}")
        elif json.loads(proc.stdout or "[]"):
            raise StepError(f"{len(json.loads(proc.stdout))} snapshots left after dist rmi")

    def ctr_setup() -> None:
        ctx.services.ctr_clear(ns)
        ctx.run_ctr(ns, "images", "import", archive)

    rmi = ctx.dist_cmd("dist", "dist rmi", store, "rmi", ref, setup=dist_setup,
                       verify=steps(blobs_present(store / "root" / "content",
                                                  fx.blobs("large"), False),
                                    dist_no_snapshots))
    return Plan(f"delete {ref} (unpacked) with its content and snapshots", [
        rmi,
        ctx.ctr_cmd("ctr", "ctr images rm --sync", ns, "images", "rm", "--sync", ref,
                    prepare=ctx.ctr_namespace(ns), setup=ctr_setup,
                    verify=lambda: ctx.services.ctr_empty(ns)),
    ], [Ratio("dist", "ctr", 1.0)])


@workload("unpack-large", "dist images import (with unpack, default snapshotter) of large into a "
          "fresh store vs ctr images import, podman load, umoci unpack and GNU tar -xzf of its "
          "layers", runs=3, warmup=1)
def unpack_large(ctx: Context) -> Plan:
    fx, store, ns, pm_dir = ctx.fixtures, ctx.tmp("dist"), "bench-unpack", ctx.tmp("podman")
    archive, layout = str(fx.path("LARGE_OCI_ARCHIVE")), fx.path("LARGE_LAYOUT")
    bundle, tar_dir = ctx.tmp("umoci-bundle"), ctx.tmp("tar-rootfs")
    layers = fx.env["LARGE_LAYERS"].split()
    pm, podman_fresh = _private_podman(ctx, pm_dir)


    def dist_unpacked() -> None:
        [image] = json.loads(ctx.run_dist(store, "images", "--json"))
        snapshots = json.loads(ctx.run_dist(store, "snapshot", "ls", "--json"))
        if image["unpackedSize"] is None or len(snapshots) != len(layers):
            raise StepError(f"dist import left unpackedSize={image['unpackedSize']} and "
                            f"{len(snapshots)} snapshots for {len(layers)} layers")

    def fresh_dir(path: Path) -> Callable[[], None]:
        def setup() -> None:
            remove_tree(path)
            path.mkdir(parents=True)
        return setup

    untar = " && ".join(f"tar -C {tar_dir} -xzf {layer}" for layer in layers)
    return Plan(f"import and unpack large ({fx.mib('LARGE_OCI_ARCHIVE')}, {len(layers)} layers, "
                f"{int(fx.env['LARGE_UNPACKED']) / 2**20:.0f} MiB unpacked) into an empty store", [
        ctx.dist_cmd("dist", "dist images import", store, "images", "import", "--progress", "none",
                     archive, setup=lambda: remove_tree(store), verify=dist_unpacked),
        ctx.ctr_cmd("ctr", "ctr images import", ns, "images", "import", archive,
                    prepare=ctx.ctr_namespace(ns), setup=lambda: ctx.services.ctr_clear(ns)),
        Command("podman", "podman load", [*pm, "load", "-q", "-i", archive], setup=podman_fresh),
        Command("umoci", "umoci unpack", ["umoci", "unpack", "--image", f"{layout}:latest", str(bundle)],
                setup=lambda: remove_tree(bundle)),
        Command("tar", "tar -xzf of each layer", ["sh", "-c", untar], setup=fresh_dir(tar_dir)),
    ], [Ratio("dist", "ctr", 0.8), Ratio("dist", "umoci", 0.5), PeakRss("dist", 100 * MB),
        Ratio("dist", "podman"), Ratio("dist", "tar")])


# ------------------------------------------------------------------------- containers (issue 4)

def import_floor(ctx: Context, parallel: int = 0, writes: bool = False) -> Command:
    """``python -c 'import typer'`` (``parallel`` of them at once): what any dist command pays
    before it does anything. Its Headroom shows what a target leaves dist beyond that floor.

    A command that writes the store also takes the metadata lock, so its floor (key ``deps``)
    imports filelock too (~20 ms: 4.2 loads logging, secrets and decimal) and leaves through
    ``os._exit`` as dist does: filelock's own teardown costs another ~20 ms that dist never pays,
    and a floor dist could beat would measure nothing."""
    if writes:
        key, code = "deps", "import os, typer, filelock; os._exit(0)"
    else:
        key, code = "typer", "import typer"
    argv = [ctx.python, "-c", code]
    if parallel:
        return Command(key, f"{parallel} × python -c '{code}'", _xargs(parallel, [*argv, "{}"]), role="floor")
    return Command(key, f"python -c '{code}'", argv, role="floor")


def _xargs(count: int, argv: list[str]) -> list[str]:
    """COUNT copies of ARGV at once, `{}` replaced by 01..COUNT; exits non-zero if any failed
    (xargs: 123), so "50 of 50 succeed" is checked by every run itself."""
    return ["sh", "-c", f'seq -w 1 {count} | xargs -P {count} -I{{}} "$@"', "xargs", *argv]


def _count(out: str, want: int, what: str) -> None:
    got = len(out.split())
    if got != want:
        raise StepError(f"{what}: {got} containers, expected {want}")


@workload("container-create", "one dist container create (+ rm) vs ctr containers create (+ rm) "
          "and podman create (+ rm), busybox unpacked", runs=20, warmup=2)
def container_create(ctx: Context) -> Plan:
    fx, store, ns, pm_dir = ctx.fixtures, ctx.tmp("dist"), "bench-ccreate", ctx.tmp("podman")
    ref, archive = fx.env["BUSYBOX_REF"], str(fx.path("BUSYBOX_OCI_ARCHIVE"))
    pm, _ = _private_podman(ctx, pm_dir)
    dist = ctx.dist_argv(store)

    def dist_prepare() -> None:
        ctx.run_dist(store, "images", "import", archive)
        ctx.run_dist(store, "container", "create", ref, "warm")   # unpacked once, as ctr and podman are

    def dist_absent() -> None:
        if "b1" in ctx.run_dist(store, "container", "ls", "-q").split():
            ctx.run_dist(store, "container", "rm", "b1")

    def dist_present() -> None:
        _count(ctx.run_dist(store, "container", "ls", "-q", "id==b1"), 1, "dist container ls")

    def ctr_prepare() -> None:
        ctx.ctr_namespace(ns)()
        ctx.run_ctr(ns, "images", "import", archive)              # unpacks into overlayfs
        ctx.cleanups.append(lambda: ctr_absent(all_=True))

    def ctr_absent(all_: bool = False) -> None:
        ids = ctx.run_ctr(ns, "containers", "ls", "-q").split()
        ids = ids if all_ else [i for i in ids if i == "b1"]
        if ids:
            ctx.run_ctr(ns, "containers", "rm", *ids)

    def podman_prepare() -> None:
        sh([*pm, "load", "-q", "-i", archive], "podman load")

    def podman_absent() -> None:
        sh([*pm, "rm", "-f", "--ignore", "b1"], "podman rm")

    one, ctr_once, pm_once = once(dist_prepare), once(ctr_prepare), once(podman_prepare)
    return Plan(f"create one container of {ref} (and remove it), image already unpacked", [
        Command("dist", "dist container create + rm",
                ["sh", "-c", '"$@" container create "$0" b1 >/dev/null && "$@" container rm b1', ref, *dist],
                role="dist", env=ctx.env, prepare=one, setup=dist_absent),
        Command("dist-create", "dist container create", [*dist, "container", "create", ref, "b1"], role="dist",
                env=ctx.env, prepare=one, setup=dist_absent, verify=dist_present),
        Command("ctr", "ctr containers create + rm",
                ["sh", "-c", '"$@" containers create "$0" b1 && "$@" containers rm b1', ref,
                 *ctx.services.ctr(ns)], prepare=ctr_once, setup=ctr_absent),
        Command("ctr-create", "ctr containers create", ctx.services.ctr(ns, "containers", "create", ref, "b1"),
                prepare=ctr_once, setup=ctr_absent),
        Command("podman", "podman create + rm",
                ["sh", "-c", '"$@" create --name b1 "$0" >/dev/null && "$@" rm b1 >/dev/null', ref, *pm],
                prepare=pm_once, setup=podman_absent),
        Command("podman-create", "podman create", [*pm, "create", "--name", "b1", ref],
                prepare=pm_once, setup=podman_absent),
        import_floor(ctx, writes=True),
    ], [Seconds("dist-create", 0.1), Ratio("dist", "ctr"), Ratio("dist", "podman"),
        Ratio("dist-create", "ctr-create"), Ratio("dist-create", "podman-create"),
        Headroom("dist-create", "deps", 0.1)])


N_PARALLEL = 50


@workload("container-create-50", f"{N_PARALLEL} parallel dist container creates on one root vs "
          f"{N_PARALLEL} parallel ctr containers create and podman create", runs=5, warmup=1)
def container_create_50(ctx: Context) -> Plan:
    fx, store, ns, pm_dir = ctx.fixtures, ctx.tmp("dist"), "bench-ccreate50", ctx.tmp("podman")
    ref, archive = fx.env["BUSYBOX_REF"], str(fx.path("BUSYBOX_OCI_ARCHIVE"))
    pm, _ = _private_podman(ctx, pm_dir)

    def dist_prepare() -> None:
        ctx.run_dist(store, "images", "import", archive)
        ctx.run_dist(store, "container", "create", ref, "warm")   # unpacked once, as ctr and podman are
        ctx.run_dist(store, "container", "rm", "warm")

    def dist_clear() -> None:
        ids = ctx.run_dist(store, "container", "ls", "-q").split()
        if ids:
            ctx.run_dist(store, "container", "rm", *ids)

    def ctr_prepare() -> None:
        ctx.ctr_namespace(ns)()
        ctx.run_ctr(ns, "images", "import", archive)
        ctx.cleanups.append(ctr_clear)

    def ctr_clear() -> None:
        ids = ctx.run_ctr(ns, "containers", "ls", "-q").split()
        if ids:
            ctx.run_ctr(ns, "containers", "rm", *ids)

    return Plan(f"create {N_PARALLEL} containers of {ref} at once in one store; every one must succeed", [
        Command("dist", f"{N_PARALLEL} × dist container create",
                _xargs(N_PARALLEL, [*ctx.dist_argv(store), "container", "create", ref, "c{}"]), role="dist",
                env=ctx.env, prepare=dist_prepare, setup=dist_clear,
                verify=lambda: _count(ctx.run_dist(store, "container", "ls", "-q"), N_PARALLEL, "dist")),
        Command("ctr", f"{N_PARALLEL} × ctr containers create",
                _xargs(N_PARALLEL, ctx.services.ctr(ns, "containers", "create", ref, "c{}")),
                prepare=ctr_prepare, setup=ctr_clear,
                verify=lambda: _count(ctx.run_ctr(ns, "containers", "ls", "-q"), N_PARALLEL, "ctr")),
        Command("podman", f"{N_PARALLEL} × podman create",
                _xargs(N_PARALLEL, [*pm, "create", "--name", "c{}", ref]),
                prepare=lambda: sh([*pm, "load", "-q", "-i", archive], "podman load"),
                setup=lambda: sh([*pm, "rm", "-a", "-f"], "podman rm -a"),
                verify=lambda: _count(sh([*pm, "ps", "-a", "-q"], "podman ps"), N_PARALLEL, "podman")),
        import_floor(ctx, N_PARALLEL, writes=True),
    ], [Ratio("dist", "podman", 1.0), Ratio("dist", "ctr"), Headroom("dist", "deps", 1.0, "podman")])


# ------------------------------------------------------------------------- registries (issue 6)

def _registry(ctx: Context) -> str:
    """The run's private registry (services.sh), started now: commands name its address."""
    ctx.services.start()
    assert ctx.services.env is not None
    return ctx.services.env["REG_ADDR"]


def _wipe_registry(ctx: Context) -> Step:
    """A setup step: an empty registry, so a push uploads every blob again (services.sh keeps no
    blob-descriptor cache, so deleting its storage between runs is safe)."""
    return lambda: remove_tree(Path(ctx.services.env["REG_DATA"]) / "docker")


def _manifest_digest(addr: str, repo: str, tag: str) -> str:
    import hashlib
    import urllib.request

    req = urllib.request.Request(f"http://{addr}/v2/{repo}/manifests/{tag}", headers={"Accept": ", ".join([
        "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json"])})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return "sha256:" + hashlib.sha256(resp.read()).hexdigest()
    except OSError as e:
        raise StepError(f"GET {repo}:{tag} from {addr}: {e}") from None


def _in_registry(addr: str, repo: str, tag: str, digest: str) -> Step:
    """A verify step: REPO:TAG is in the registry with DIGEST."""
    def verify() -> None:
        got = _manifest_digest(addr, repo, tag)
        if got != digest:
            raise StepError(f"{addr}/{repo}:{tag} is {got}, expected {digest}")
    return verify


def _large_in_registry(ctx: Context, addr: str, repo: str) -> Step:
    """A prepare step: the large fixture in REPO:1 of the registry, pushed by skopeo, unless there."""
    fx = ctx.fixtures

    def prepare() -> None:
        try:
            if _manifest_digest(addr, repo, "1") == fx.env["LARGE_MANIFEST"]:
                return
        except StepError:
            pass
        sh(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{fx.path('LARGE_LAYOUT')}:latest",
            f"docker://{addr}/{repo}:1"], "skopeo copy to the registry")
        _in_registry(addr, repo, "1", fx.env["LARGE_MANIFEST"])()
    return prepare


def _push_commands(ctx: Context, addr: str, ns: str, setup: Step | None) -> tuple[list[Command], Step, Step]:
    """dist, ctr (and skopeo) pushing large, each to its own repository; the prepare steps."""
    fx, store = ctx.fixtures, ctx.tmp("dist")
    ref, digest = fx.env["LARGE_REF"], fx.env["LARGE_MANIFEST"]
    archive = str(fx.path("LARGE_OCI_ARCHIVE"))
    dist_prepare = once(lambda: ctx.run_dist(store, "images", "import", "--no-unpack", archive))

    def ctr_prepare_() -> None:
        ctx.ctr_namespace(ns)()
        ctx.run_ctr(ns, "images", "import", "--no-unpack", archive)
    ctr_prepare = once(ctr_prepare_)
    return [
        ctx.dist_cmd("dist", "dist push", store, "push", "--plain-http", "--progress", "none",
                     f"{addr}/bench/dist-large:1", ref, prepare=dist_prepare, setup=setup,
                     verify=_in_registry(addr, "bench/dist-large", "1", digest)),
        ctx.ctr_cmd("ctr", "ctr images push", ns, "images", "push", "--plain-http",
                    f"{addr}/bench/ctr-large:1", ref, prepare=ctr_prepare, setup=setup,
                    verify=_in_registry(addr, "bench/ctr-large", "1", digest)),
    ], dist_prepare, ctr_prepare


@workload("push-large", "dist push of large (108 MiB, 4 layers) to an empty local registry vs "
          "ctr images push and skopeo copy", runs=5, warmup=1)
def push_large(ctx: Context) -> Plan:
    fx, addr = ctx.fixtures, _registry(ctx)
    wipe = _wipe_registry(ctx)
    commands, _, _ = _push_commands(ctx, addr, "bench-push", wipe)
    commands.append(Command("skopeo", "skopeo copy oci: docker://",
                            ["skopeo", "copy", "-q", "--dest-tls-verify=false",
                             f"oci:{fx.path('LARGE_LAYOUT')}:latest", f"docker://{addr}/bench/skopeo-large:1"],
                            setup=wipe,
                            verify=_in_registry(addr, "bench/skopeo-large", "1", fx.env["LARGE_MANIFEST"])))
    return Plan(f"push large ({fx.mib('LARGE_OCI_ARCHIVE')}) to a local registry emptied before each run",
                commands, [Ratio("dist", "ctr", 1.0), Ratio("dist", "skopeo")])


@workload("repush-large", "dist push of large again, nothing to upload, vs ctr images push again",
          runs=10, warmup=1)
def repush_large(ctx: Context) -> Plan:
    addr = _registry(ctx)
    commands, dist_prepare, ctr_prepare = _push_commands(ctx, addr, "bench-repush", None)
    dist, ctr = commands
    # The first push of each, untimed: the registry has everything when the timed ones start.
    dist.prepare = steps(dist_prepare, lambda: sh(dist.argv, "dist push", env=ctx.env))
    ctr.prepare = steps(ctr_prepare, lambda: sh(ctr.argv, "ctr images push"))
    return Plan("push large to a registry that already holds it: nothing to upload",
                [dist, ctr, import_floor(ctx, writes=True)],
                [Ratio("dist", "ctr", 1.0), Headroom("dist", "deps", 1.0, "ctr")])


@workload("pull-large-nounpack", "dist pull --no-unpack of large from the local registry into an empty "
          "store vs skopeo copy docker:// oci:", runs=5, warmup=1)
def pull_large_nounpack(ctx: Context) -> Plan:
    fx, addr, store, layout = ctx.fixtures, _registry(ctx), ctx.tmp("dist"), ctx.tmp("skopeo-layout")
    source = f"{addr}/bench/large:1"
    in_registry = once(_large_in_registry(ctx, addr, "bench/large"))
    blobs = fx.blobs("large")
    return Plan(f"pull large ({fx.mib('LARGE_OCI_ARCHIVE')}) from a local registry without unpacking", [
        ctx.dist_cmd("dist", "dist pull --no-unpack", store, "pull", "--plain-http", "--no-unpack",
                     "--progress", "none", source, prepare=in_registry, setup=lambda: remove_tree(store),
                     verify=blobs_present(store / "root" / "content", blobs, True)),
        Command("skopeo", "skopeo copy docker:// oci:",
                ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{source}", f"oci:{layout}:latest"],
                prepare=in_registry, setup=lambda: remove_tree(layout),
                verify=blobs_present(layout, blobs, True)),
    ], [Ratio("dist", "skopeo", 1.2)])


@workload("pull-large", "dist pull (with unpack) of large from the local registry into an empty store "
          "vs podman pull and ctr images pull", runs=3, warmup=1)
def pull_large(ctx: Context) -> Plan:
    fx, addr, store, ns, pm_dir = ctx.fixtures, _registry(ctx), ctx.tmp("dist"), "bench-pull", ctx.tmp("podman")
    source = f"{addr}/bench/large:1"
    in_registry = once(_large_in_registry(ctx, addr, "bench/large"))
    pm, podman_fresh = _private_podman(ctx, pm_dir)


    def dist_unpacked() -> None:
        [image] = json.loads(ctx.run_dist(store, "images", "--json"))
        if not image["complete"] or image["unpackedSize"] is None:
            raise StepError(f"dist pull left {image['name']} complete={image['complete']}, "
                            f"unpackedSize={image['unpackedSize']}")

    return Plan(f"pull and unpack large ({fx.mib('LARGE_OCI_ARCHIVE')}) from a local registry, empty store", [
        ctx.dist_cmd("dist", "dist pull", store, "pull", "--plain-http", "--progress", "none", source,
                     prepare=in_registry, setup=lambda: remove_tree(store), verify=dist_unpacked),
        Command("podman", "podman pull", [*pm, "pull", "-q", "--tls-verify=false", f"docker://{source}"],
                prepare=in_registry, setup=podman_fresh),
        ctx.ctr_cmd("ctr", "ctr images pull", ns, "images", "pull", "--plain-http", source,
                    prepare=steps(in_registry, ctx.ctr_namespace(ns)), setup=lambda: ctx.services.ctr_clear(ns)),
    ], [Ratio("dist", "podman", 1.0), Ratio("dist", "ctr")])


# ------------------------------------------------------------------------------ tasks (issue 5)

def _runc_bundle(base: Path, busybox: Path, args: list[str]) -> Path:
    """A bundle runc runs as it is: `runc spec`, no terminal, busybox as ROOTFS/bin/busybox."""
    import shutil

    bundle = base / "bundle"
    if not (bundle / "config.json").exists():
        (bundle / "rootfs" / "bin").mkdir(parents=True, exist_ok=True)
        shutil.copy2(busybox, bundle / "rootfs" / "bin" / "busybox")
        for applet in ("sh", "true", "sleep"):
            link = bundle / "rootfs" / "bin" / applet
            if not link.is_symlink():
                link.symlink_to("busybox")
        sh(["runc", "spec", "--bundle", str(bundle)], "runc spec")
        config = json.loads((bundle / "config.json").read_text())
        config["process"].update(terminal=False, args=args)
        (bundle / "config.json").write_text(json.dumps(config))
    return bundle


@workload("run-rm", "dist run --rm busybox -- true vs ctr run --rm, podman run --rm and bare runc run "
          "of a prepared bundle (the floor)", runs=20, warmup=2)
def run_rm(ctx: Context) -> Plan:
    fx, store, ns, pm_dir = ctx.fixtures, ctx.tmp("dist"), "bench-runrm", ctx.tmp("podman")
    ref, archive = fx.env["BUSYBOX_REF"], str(fx.path("BUSYBOX_OCI_ARCHIVE"))
    import shutil

    pm, _ = _private_podman(ctx, pm_dir)
    runc_root = ctx.tmp("runc-state")

    def dist_prepare() -> None:                                   # imported and unpacked once, as for ctr
        ctx.run_dist(store, "images", "import", archive)

    def dist_gone() -> None:
        left = ctx.run_dist(store, "container", "ls", "-q").split()
        if left:
            raise StepError(f"dist run --rm left containers: {left}")

    def ctr_prepare() -> None:
        ctx.ctr_namespace(ns)()
        ctx.run_ctr(ns, "images", "import", archive)

    def podman_prepare() -> None:
        sh([*pm, "load", "-q", "-i", archive], "podman load")

    bundle = _runc_bundle(ctx.tmp("runc"), Path(shutil.which("busybox") or "/bin/busybox"), ["true"])
    return Plan(f"run `true` in a container of {ref} and remove it; image already unpacked", [
        ctx.dist_cmd("dist", "dist run --rm", store, "run", "--rm", ref, "r1", "--", "true",
                     prepare=dist_prepare, verify=dist_gone),
        ctx.ctr_cmd("ctr", "ctr run --rm", ns, "run", "--rm", ref, "r1", "true", prepare=ctr_prepare),
        Command("podman", "podman run --rm", [*pm, "run", "--rm", "--network", "none", "--ulimit", "host", ref, "true"],
                prepare=podman_prepare),
        Command("runc", "runc run (prepared bundle)",
                ["runc", "--root", str(runc_root), "run", "--bundle", str(bundle), "r1"], role="floor"),
        import_floor(ctx, writes=True),
    ], [Ratio("dist", "ctr", 1.0), Ratio("dist", "podman"), Ratio("dist", "runc"),
        Headroom("dist", "deps", 1.0, "ctr")])


N_SHIMS = 10


@dataclass(frozen=True)
class ShimMemory:
    """RSS and PSS (/proc/PID/smaps_rollup) of one shim per running task, N_SHIMS tasks running:
    the median over the shims of the last run. With limits: a target; without: information."""

    subject: str
    rss: int | None = None
    pss: int | None = None

    def evaluate(self, results):
        from bench.harness import FAIL, INFO, PASS, SKIP, Verdict

        r = results[self.subject]
        name = f"{r.command.key} per shim RSS / PSS"
        limit = "" if self.rss is None else f"≤ {self.rss / MB:.1f} / {self.pss / MB:.1f} MB"
        got = SHIM_MEMORY.get(self.subject)
        if not r.ok or not got:
            why = r.skipped or "did not run: see above"
            return Verdict(name, SKIP if self.rss is None else FAIL, "—", limit, why)
        import statistics

        rss, pss = (statistics.median([m[i] for m in got]) for i in (0, 1))
        value = f"{rss / MB:.2f} / {pss / MB:.2f} MB"
        if self.rss is None:
            return Verdict(name, INFO, value, limit, f"{len(got)} shims")
        ok = rss <= self.rss and pss <= self.pss
        return Verdict(name, PASS if ok else FAIL, value, limit, f"{len(got)} shims")


SHIM_MEMORY: dict[str, list[tuple[int, int]]] = {}


def _smaps(pid: int) -> tuple[int, int]:
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return fields["Rss"], fields["Pss"]


def _pids_of(name: str, needle: str) -> list[int]:
    """Live processes called NAME whose command line contains NEEDLE."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if comm.startswith(name[:15]) and needle in cmdline:
            found.append(int(entry.name))
    return found


def _measure(key: str, pids: Callable[[], list[int]]) -> Step:
    def verify() -> None:
        got = pids()
        if len(got) != N_SHIMS:
            raise StepError(f"{key}: {len(got)} shims running, expected {N_SHIMS}")
        SHIM_MEMORY[key] = [_smaps(p) for p in got]
    return verify


@workload("shim-memory", f"RSS and PSS of one shim per task, {N_SHIMS} tasks running: dist's shim vs "
          "containerd-shim-runc-v2 (ctr run -d) and conmon (podman run -d)", runs=1)
def shim_memory(ctx: Context) -> Plan:
    fx, store, ns, pm_dir = ctx.fixtures, ctx.tmp("dist"), "bench-shims", ctx.tmp("podman")
    ref, archive = fx.env["BUSYBOX_REF"], str(fx.path("BUSYBOX_OCI_ARCHIVE"))
    pm, _ = _private_podman(ctx, pm_dir)
    ids = [f"s{i:02d}" for i in range(N_SHIMS)]
    dist = ctx.dist_argv(store)

    def dist_stop() -> None:
        left = ctx.run_dist(store, "container", "ls", "-q").split()
        if left:
            ctx.run_dist(store, "container", "rm", "-f", *left)

    def dist_pids() -> list[int]:
        return [t["shimPid"] for t in json.loads(ctx.run_dist(store, "task", "ls", "--json"))]

    def ctr_prepare() -> None:
        ctx.ctr_namespace(ns)()
        ctx.run_ctr(ns, "images", "import", archive)
        ctx.cleanups.append(ctr_stop)

    def ctr_stop() -> None:
        for cid in ctx.run_ctr(ns, "containers", "ls", "-q").split():
            subprocess.run(ctx.services.ctr(ns, "tasks", "kill", "-s", "SIGKILL", cid), capture_output=True)
            subprocess.run(ctx.services.ctr(ns, "tasks", "rm", "-f", cid), capture_output=True)
            ctx.run_ctr(ns, "containers", "rm", cid)

    def podman_stop() -> None:
        sh([*pm, "rm", "-f", "-t", "0", "--all"], "podman rm -f --all")

    def podman_prepare() -> None:
        sh([*pm, "load", "-q", "-i", archive], "podman load")
        ctx.cleanups.append(podman_stop)

    loop = 'for i in ' + " ".join(ids) + '; do "$@" "$i" -- sleep 600 || exit 1; done'
    return Plan(f"{N_SHIMS} tasks of {ref} running `sleep 600`: memory of the process that watches each", [
        Command("dist", f"dist run -d ×{N_SHIMS}", ["sh", "-c", loop, "sh", *dist, "run", "-d", ref],
                role="dist", env=ctx.env, prepare=lambda: ctx.run_dist(store, "images", "import", archive),
                setup=dist_stop, verify=steps(_measure("dist", dist_pids), dist_stop)),
        Command("ctr", f"ctr run -d ×{N_SHIMS}",
                ["sh", "-c", 'for i in ' + " ".join(ids) + '; do "$@" "$i" sleep 600 || exit 1; done', "sh",
                 *ctx.services.ctr(ns, "run", "-d", ref)],
                prepare=ctr_prepare, setup=ctr_stop,
                verify=steps(_measure("ctr", lambda: _pids_of("containerd-shim-runc-v2", f"-namespace {ns}")),
                                 ctr_stop)),
        Command("podman", f"podman run -d ×{N_SHIMS}",
                ["sh", "-c", 'for i in ' + " ".join(ids) + '; do "$@" sleep 600 >/dev/null || exit 1; done', "sh",
                 *pm, "run", "-d", "--network", "none", "--ulimit", "host", ref],
                prepare=podman_prepare, setup=podman_stop,
                verify=steps(_measure("podman", lambda: _pids_of("conmon", str(podman_runroot(pm_dir)))),
                                 podman_stop)),
    ], [ShimMemory("dist", 13 * MB, int(3.5 * MB)), ShimMemory("ctr"), ShimMemory("podman")])
