"""Spec generation: the default spec, each option function, user resolution and reading the
image's files without leaving its root."""

from __future__ import annotations

import io
import os
import tarfile

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dist_tool import spec as S
from dist_tool.errors import DataError, InvalidArgument, NotFound
from dist_tool.spec import rootfs, users
from dist_tool.spec.defaults import DEFAULT_CAPABILITIES, DEFAULT_PATH, MASKED_PATHS, READONLY_PATHS

PASSWD = b"root:x:0:0:root:/root:/bin/sh\nwww:x:33:34:www:/var/www:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n"
GROUP = b"root:x:0:\nwww:x:34:\nstaff:x:50:bob,www\naudio:x:63:bob\nbob:x:1000:\n"


class FakeRoot:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.reads: list[str] = []

    def read(self, path: str, limit: int) -> bytes | None:
        self.reads.append(path)
        return self.files.get(path)


def ctx(files=None, cid="web") -> S.SpecContext:
    return S.SpecContext(cid, "default", FakeRoot(files if files is not None else
                                                  {"/etc/passwd": PASSWD, "/etc/group": GROUP}))


def build(*opts, context=None) -> dict:
    c = context or ctx()
    return S.apply(c, S.default_spec(c), opts)


# ---------------------------------------------------------------- the default spec


def test_default_spec_is_containerds_shape():
    spec = build()
    assert spec["ociVersion"] == "1.1.0"
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    p = spec["process"]
    assert (p["args"], p["env"], p["cwd"], p["user"], p["terminal"]) == ([], [DEFAULT_PATH], "/",
                                                                          {"uid": 0, "gid": 0}, False)
    assert p["noNewPrivileges"] is True
    for kind in ("bounding", "effective", "permitted"):
        assert p["capabilities"][kind] == list(DEFAULT_CAPABILITIES)
    assert "CAP_SYS_ADMIN" not in p["capabilities"]["bounding"]
    assert p["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert {m["destination"]: m["type"] for m in spec["mounts"]} == {
        "/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs", "/dev/mqueue": "mqueue",
        "/sys": "sysfs", "/sys/fs/cgroup": "cgroup", "/run": "tmpfs"}
    linux = spec["linux"]
    assert [n["type"] for n in linux["namespaces"]] == ["pid", "ipc", "uts", "mount", "network"]
    assert linux["maskedPaths"] == list(MASKED_PATHS) and "/proc/kcore" in linux["maskedPaths"]
    assert linux["readonlyPaths"] == list(READONLY_PATHS) and "/proc/sys" in linux["readonlyPaths"]
    assert linux["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    assert linux["cgroupsPath"] == "/dist/default/web"
    assert spec["hostname"] == "web"


def test_default_specs_share_nothing():
    a, b = build(), build()
    a["mounts"][0]["options"].append("x")
    a["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    assert "x" not in b["mounts"][0]["options"]
    assert "CAP_SYS_ADMIN" not in b["process"]["capabilities"]["bounding"]


# ---------------------------------------------------------------- process arguments (SPEC)

IMAGE = {"Entrypoint": ["/entry"], "Cmd": ["serve", "--port", "80"], "Env": ["PATH=/opt/bin", "A=1"],
         "WorkingDir": "/srv", "User": "www"}


@pytest.mark.parametrize("config, opts, args", [
    (IMAGE, [], ["/entry", "serve", "--port", "80"]),
    (IMAGE, [S.with_args(["sh", "-c", "echo hi"])], ["/entry", "sh", "-c", "echo hi"]),
    (IMAGE, [S.with_entrypoint(["/bin/sh"])], ["/bin/sh"]),
    (IMAGE, [S.with_entrypoint(["/bin/sh"]), S.with_args(["-c", "x"])], ["/bin/sh", "-c", "x"]),
    (IMAGE, [S.with_entrypoint([]), S.with_args(["ls"])], ["ls"]),
    ({"Cmd": ["/bin/sh"]}, [], ["/bin/sh"]),
    ({"Cmd": ["/bin/sh"]}, [S.with_args(["echo", "a b"])], ["echo", "a b"]),
    ({"Entrypoint": ["/e"], "Cmd": None}, [], ["/e"]),
], ids=["image", "args-keep-entrypoint", "entrypoint-drops-cmd", "entrypoint-and-args", "entrypoint-cleared",
        "cmd-only", "args-replace-cmd", "null-cmd"])
def test_process_arguments(config, opts, args):
    assert build(S.with_image_config(config), *opts, S.require_args())["process"]["args"] == args


@pytest.mark.parametrize("config, opts", [
    ({}, []),
    ({"Cmd": ["/bin/sh"]}, [S.with_entrypoint([])]),
    (None, []),
], ids=["no-config", "entrypoint-cleared-no-args", "null-config"])
def test_no_command_is_a_usage_error(config, opts):
    with pytest.raises(InvalidArgument, match="no command"):
        build(S.with_image_config(config), *opts, S.require_args())


# ---------------------------------------------------------------- env, cwd


@pytest.mark.parametrize("image_env, pairs, expected", [
    (None, [], [DEFAULT_PATH]),
    (["A=1"], [], [DEFAULT_PATH, "A=1"]),
    (["PATH=/opt/bin", "A=1"], [], ["PATH=/opt/bin", "A=1"]),
    (["A=1", "B=2"], [("A", "9")], [DEFAULT_PATH, "A=9", "B=2"]),
    (["A=1"], [("C", "3"), ("C", "4")], [DEFAULT_PATH, "A=1", "C=4"]),
    (["A=1", "A=2"], [], [DEFAULT_PATH, "A=2"]),
    ([], [("E", "")], [DEFAULT_PATH, "E="]),
    ([], [("X", "a=b")], [DEFAULT_PATH, "X=a=b"]),
    (["A=1", "PATH"], [], ["A=1"]),
    (["A=1", "A", "B=2"], [], [DEFAULT_PATH, "B=2"]),
], ids=["default", "image", "image-path", "replace", "twice", "image-dup", "empty-value", "value-with-eq",
        "image-unsets", "image-unsets-its-own"])
def test_env(image_env, pairs, expected):
    spec = build(S.with_image_config({"Env": image_env, "Cmd": ["x"]}), S.with_env(pairs))
    env = spec["process"]["env"]
    assert env == expected
    keys = [e.partition("=")[0] for e in env]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("config, field", [
    ({"Cmd": "/bin/echo hi"}, "Cmd"), ({"Cmd": ["x"], "Env": "FOO=1"}, "Env"), ({"Entrypoint": [1]}, "Entrypoint"),
    ({"Cmd": ["x"], "WorkingDir": 7}, "WorkingDir"), ({"Cmd": ["x"], "User": 0}, "User"),
    ({"Cmd": ["x"], "Env": ["=bad"]}, "Env"),
    ({"Cmd": ["/bin/echo", "a\0b"]}, "Cmd"), ({"Entrypoint": ["/bin/ec\0ho"]}, "Entrypoint"),
    ({"Cmd": ["x"], "WorkingDir": "/tmp\0x"}, "WorkingDir"), ({"Cmd": ["x"], "User": "ro\0ot"}, "User"),
], ids=["cmd-string", "env-string", "entrypoint-number", "workdir-number", "user-number", "env-no-name",
        "cmd-nul", "entrypoint-nul", "workdir-nul", "user-nul"])
def test_a_malformed_image_config_is_refused_not_mangled(config, field):
    """A Cmd that was a string became one argument per character; an Env entry with no name
    made runc fail at start."""
    with pytest.raises(DataError, match=f"image config {field}"):
        build(S.with_image_config(config))


@pytest.mark.parametrize("bad", ["NOEQ", "=v", ""], ids=["no-equals", "empty-key", "empty"])
def test_parse_env_refuses(bad):
    with pytest.raises(InvalidArgument):
        S.parse_env([bad])


def test_cwd_from_image_then_option():
    assert build(S.with_image_config(IMAGE))["process"]["cwd"] == "/srv"
    assert build(S.with_image_config({"Cmd": ["x"]}))["process"]["cwd"] == "/"
    assert build(S.with_image_config(IMAGE), S.with_cwd("/tmp"))["process"]["cwd"] == "/tmp"
    assert S.check_cwd("/a/../b/") == "/b"
    with pytest.raises(InvalidArgument):
        S.check_cwd("relative")


def test_a_relative_image_working_dir_is_refused_unless_replaced():
    relative = {"Cmd": ["x"], "WorkingDir": "work"}
    with pytest.raises(DataError, match=r"^image config WorkingDir: 'work' is not an absolute path \(give --cwd\)$"):
        build(S.with_image_config(relative), S.require_absolute_cwd())
    assert build(S.with_image_config(relative), S.with_cwd("/w"), S.require_absolute_cwd())["process"]["cwd"] == "/w"


# ---------------------------------------------------------------- users


@pytest.mark.parametrize("user, expected", [
    ("0", {"uid": 0, "gid": 0, "additionalGids": [0]}),
    ("www", {"uid": 33, "gid": 34, "additionalGids": [34, 50]}),
    ("bob", {"uid": 1000, "gid": 1000, "additionalGids": [1000, 50, 63]}),
    ("1000", {"uid": 1000, "gid": 1000, "additionalGids": [1000, 50, 63]}),
    ("4242", {"uid": 4242, "gid": 0, "additionalGids": [0]}),
    ("4242:77", {"uid": 4242, "gid": 77, "additionalGids": [77]}),
    ("bob:audio", {"uid": 1000, "gid": 63, "additionalGids": [63]}),
    ("bob:7", {"uid": 1000, "gid": 7, "additionalGids": [7]}),
    ("33:staff", {"uid": 33, "gid": 50, "additionalGids": [50]}),
], ids=["root-uid", "name", "name-groups", "uid-in-passwd", "uid-unknown", "uid-gid", "name-group",
        "name-gid", "uid-group"])
def test_user_resolution(user, expected):
    """The gid always leads additionalGids (containerd's ensureAdditionalGids, CVE-2023-25173):
    without it, a process could setgroups its primary group away past a deny-by-group. A group
    given is the only one: ``bob:audio`` and ``1000:63`` mean the same (docker's, runc's and
    containerd's rule), and naming a group is how a user drops the others."""
    assert build(S.with_user(user))["process"]["user"] == expected


@pytest.mark.parametrize("user", ["", None])
def test_no_user_is_the_images_user_or_root_with_roots_groups(user):
    assert build(S.with_user(user))["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    image = S.with_image_config({"Cmd": ["x"], "User": "www"})
    assert build(image, S.with_user(user))["process"]["user"]["uid"] == 33  # ctr's and docker's --user ''
    wheel = {"/etc/passwd": PASSWD, "/etc/group": b"root:x:0:\nwheel:x:10:root\n"}
    assert build(S.with_user(user), context=ctx(files=wheel))["process"]["user"]["additionalGids"] == [0, 10]


def test_a_malformed_image_user_is_the_images_fault():
    with pytest.raises(DataError, match="image config User"):
        build(S.with_image_config({"Cmd": ["x"], "User": "bob:"}), S.with_user())


def test_numeric_user_and_group_read_no_file():
    c = ctx()
    build(S.with_user("12:34"), context=c)
    assert c.rootfs.reads == []


def test_image_user_applies_unless_overridden():
    assert build(S.with_image_config(IMAGE), S.with_user())["process"]["user"]["uid"] == 33
    assert build(S.with_image_config(IMAGE), S.with_user("0"))["process"]["user"] == {"uid": 0, "gid": 0,
                                                                                   "additionalGids": [0]}


@pytest.mark.parametrize("user, error", [
    ("nobody", NotFound), ("bob:wheel", NotFound), (":1", InvalidArgument), ("1:", InvalidArgument),
    ("a b", InvalidArgument), ("99999999999", InvalidArgument), ("2147483648", InvalidArgument),
], ids=["unknown-user", "unknown-group", "no-user", "no-group", "space", "out-of-range", "over-runc-range"])
def test_user_errors(user, error):
    with pytest.raises(error):
        build(S.with_user(user))


def test_names_need_an_etc_passwd():
    with pytest.raises(NotFound, match="/etc/passwd"):
        build(S.with_user("bob"), context=ctx(files={}))
    assert build(S.with_user("7"), context=ctx(files={}))["process"]["user"] == {"uid": 7, "gid": 0,
                                                                                 "additionalGids": [0]}


def test_passwd_parsing_skips_junk():
    entries = users.parse_passwd(b"# c\n\nbad\nx:x:notanumber:0::/:\n+nis\nok:x:5:6::/h:/bin/sh\n")
    assert entries == [users.PasswdEntry("ok", 5, 6, "/h")]


# ---------------------------------------------------------------- mounts, network, rootfs, tty


def test_mounts_add_and_replace_defaults(tmp_path):
    bind = S.parse_mount(f"type=bind,src={tmp_path},dst=/data,options=ro")
    assert bind == {"destination": "/data", "type": "bind", "source": str(tmp_path), "options": ["ro", "rbind"]}
    shm = S.parse_mount("type=tmpfs,dst=/dev/shm,options=size=1m")
    spec = build(S.with_mounts([bind, shm]))
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests.count("/dev/shm") == 1 and {"/data", "/dev/shm"} <= set(dests)
    assert next(m for m in spec["mounts"] if m["destination"] == "/dev/shm")["options"] == ["size=1m"]
    assert dests.index("/dev") < dests.index("/dev/shm")


def _parents_first(dests: list[str]) -> bool:
    return all(not b.startswith(a.rstrip("/") + "/") for i, b in enumerate(dests) for a in dests[i + 1:])


@pytest.mark.parametrize("dest", ["/dev", "/sys"])
def test_a_mount_above_default_mounts_takes_them_away(dest):
    """A /dev of the user's was mounted after the default /dev/pts, /dev/shm and /dev/mqueue and
    hid them (-t then failed: no /dev/ptmx); docker drops the defaults under a user's /dev."""
    spec = build(S.with_mounts([S.parse_mount(f"type=tmpfs,dst={dest},options=mode=755")]))
    dests = [m["destination"] for m in spec["mounts"]]
    assert [d for d in dests if d == dest or d.startswith(dest + "/")] == [dest]
    assert _parents_first(dests)


def test_mounts_are_ordered_parents_first(tmp_path):
    deep = S.parse_mount(f"type=bind,src={tmp_path},dst=/data/sub")
    top = S.parse_mount("type=tmpfs,dst=/data")
    dests = [m["destination"] for m in build(S.with_mounts([deep, top]))["mounts"]]
    assert _parents_first(dests) and dests.index("/data") < dests.index("/data/sub")


def test_two_mounts_at_one_destination_are_refused(tmp_path):
    with pytest.raises(InvalidArgument, match="two mounts"):
        S.parse_mounts(["type=tmpfs,dst=/x", f"type=bind,src={tmp_path},dst=/x/"])


def test_a_doubled_slash_is_the_same_path():
    assert S.parse_mount("type=proc,dst=//proc")["destination"] == "/proc"
    assert S.check_cwd("//srv//app") == "/srv/app"


def test_a_users_mount_at_a_host_file_wins_over_net_host(tmp_path):
    mine = tmp_path / "hosts"
    mine.write_text("1.2.3.4 mine\n")
    spec = build(S.with_mounts([S.parse_mount(f"type=bind,src={mine},dst=/etc/hosts,options=ro")]),
                 S.with_host_network(["/etc/hosts"]))
    assert [m["source"] for m in spec["mounts"] if m["destination"] == "/etc/hosts"] == [str(mine)]


@pytest.mark.parametrize("text", ["type=bind,src=rel,dst=/x", "type=bind,dst=/x", "src=/,dst=relative",
                                  "src=/,dst=/", "type=bind,src=/,dst=/x,bogus=1", "garbage",
                                  "src=/,src=/tmp,dst=/x", "type=bind,src=/tmp,dst=/mnt/../proc",
                                  "type=tmpfs,dst=/proc/"],
                         ids=["relative-src", "no-src", "relative-dst", "root-dst", "unknown-key", "garbage",
                              "twice", "bind-at-proc", "tmpfs-at-proc"])
def test_parse_mount_refuses(text):
    with pytest.raises(InvalidArgument):
        S.parse_mount(text)


def test_parse_mount_missing_source_is_not_found(tmp_path):
    with pytest.raises(NotFound):
        S.parse_mount(f"type=bind,src={tmp_path}/nope,dst=/x")


def test_host_network_drops_the_namespace_and_shares_host_files(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    spec = build(S.with_host_network([str(hosts), str(tmp_path / "absent")]))
    assert "network" not in [n["type"] for n in spec["linux"]["namespaces"]]
    assert spec["mounts"][-1] == {"destination": str(hosts), "type": "bind", "source": str(hosts),
                                  "options": ["rbind", "ro"]}
    assert "network" in [n["type"] for n in build()["linux"]["namespaces"]]


def test_readonly_and_tty():
    spec = build(S.with_readonly_rootfs(), S.with_tty())
    assert spec["root"]["readonly"] is True
    assert spec["process"]["terminal"] is True and "TERM=xterm" in spec["process"]["env"]
    spec = build(S.with_env([("TERM", "vt100")]), S.with_tty())
    assert [e for e in spec["process"]["env"] if e.startswith("TERM=")] == ["TERM=vt100"]


# ---------------------------------------------------------------- reading the image's files


def _tar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, value in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, value
                tar.addfile(info)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, value
                tar.addfile(info)
    return buf.getvalue()


class Blobs:
    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs

    def open_blob(self, digest):
        return io.BytesIO(self.blobs[digest])

    def info(self, digest):
        if digest not in self.blobs:
            raise NotFound("blob", digest, "not found")


def tar_reader(*layers) -> rootfs.RootfsReader:
    blobs = Blobs({f"sha256:{i}": _tar(entries) for i, entries in enumerate(layers)})
    return rootfs.RootfsReader(rootfs.tar_layers(blobs, [f"sha256:{i}" for i in range(len(layers))],
                                                 want=["/etc/passwd"]))


@pytest.mark.parametrize("layers, path, expected", [
    ([[("etc/passwd", "file", b"low")]], "/etc/passwd", b"low"),
    ([[("etc/passwd", "file", b"low")], [("./etc/passwd", "file", b"high")]], "/etc/passwd", b"high"),
    ([[("etc/passwd", "file", b"low")], [("etc/.wh.passwd", "file", b"")]], "/etc/passwd", None),
    ([[("etc/passwd", "file", b"low")], [("etc/", "dir", None), ("etc/.wh..wh..opq", "file", b"")]],
     "/etc/passwd", None),
    ([[("etc/passwd", "file", b"low")], [("etc", "dir", None), ("etc/other", "file", b"")]], "/etc/passwd",
     b"low"),
    ([[("etc/passwd", "file", b"low")], [(".wh.etc", "file", b"")]], "/etc/passwd", None),
    ([[("etc/real", "file", b"r"), ("etc/passwd", "sym", "real")]], "/etc/passwd", b"r"),
    ([[("etc/real", "file", b"r"), ("etc/passwd", "sym", "../../../../etc/real")]], "/etc/passwd", b"r"),
    ([[("etc/passwd", "sym", "/../../../etc/nothere")]], "/etc/passwd", None),
    ([[("other/passwd", "file", b"o"), ("etc", "sym", "/other")]], "/etc/passwd", b"o"),
    ([[("etc/real", "file", b"h"), ("etc/passwd", "hard", "etc/real")]], "/etc/passwd", b"h"),
    ([[("etc/passwd", "dir", None)]], "/etc/passwd", None),
    ([[("etc/x", "file", b"first"), ("etc/x", "file", b"second"), ("etc/passwd", "hard", "etc/x")]],
     "/etc/passwd", b"second"),
    ([[("etc/x", "file", b"first"), ("etc/passwd", "hard", "etc/x"), ("etc/x", "file", b"second")]],
     "/etc/passwd", b"first"),
    ([[("etc/passwd", "file", b"itself"), ("etc/passwd", "hard", "etc/passwd")]], "/etc/passwd", b"itself"),
], ids=["one", "upper-wins", "whiteout", "opaque", "merged-dirs", "parent-whiteout", "symlink", "symlink-dotdot",
        "symlink-out", "dir-symlink", "hardlink", "is-dir", "hardlink-to-a-path-named-twice",
        "hardlink-keeps-its-targets-bytes", "hardlink-to-itself"])
def test_tar_layers(layers, path, expected):
    assert tar_reader(*layers).read(path, 1024) == expected


def test_a_path_named_twice_in_a_layer_is_its_last_member_as_unpacking_makes_it():
    """The first member's bytes were kept (a wanted file) and the second's, too large to keep,
    was never read: a create before unpacking resolved users from the passwd file it replaced."""
    big = b"bob:x:7:7::/:\n" + b"#" * (2 << 20) + b"\n"
    reader = tar_reader([("etc/passwd", "file", b"bob:x:1:1::/:\n"), ("etc/passwd", "file", big)])
    assert reader.read("/etc/passwd", 4 << 20) == big


def test_symlink_loop_is_an_error():
    reader = tar_reader([("etc/a", "sym", "b"), ("etc/b", "sym", "a")])
    with pytest.raises(DataError, match="symbolic links"):
        reader.read("/etc/a", 1024)


def test_dir_layers_never_follow_symlinks_out(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_bytes(b"secret")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink(str(outside / "passwd"), root / "etc" / "passwd")  # absolute: re-rooted, not followed
    os.symlink("../../../../outside", root / "etc" / "up")
    os.symlink(str(outside), root / "lnk")
    reader = rootfs.RootfsReader([rootfs.DirLayer(str(root))])
    assert reader.read("/etc/passwd", 100) is None
    assert reader.read("/etc/up/passwd", 100) is None
    assert reader.read("/lnk/passwd", 100) is None
    (root / "etc" / "group").write_bytes(b"g" * 200)
    with pytest.raises(DataError, match="limit"):
        reader.read("/etc/group", 100)


def test_a_file_over_the_limit_is_one_error_from_layers_and_directories(tmp_path):
    big = b"x" * (2 << 20)  # above what a layer's first pass keeps, so its second pass judges it
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_bytes(big)
    from_dir = rootfs.RootfsReader([rootfs.DirLayer(str(tmp_path))])
    for reader in (tar_reader([("etc/passwd", "file", big)]), from_dir):
        with pytest.raises(DataError, match=r"^file /etc/passwd: larger than the 1500000-byte limit$"):
            reader.read("/etc/passwd", 1_500_000)


def test_an_etc_passwd_of_200000_users_resolves(tmp_path):
    """containerd reads these with no bound; dist's is far above any real one (this is ~9 MB)."""
    lines = ["root:x:0:0:root:/root:/bin/sh"] + [f"u{i}:x:{10000 + i}:{10000 + i}::/home/u{i}:/bin/sh"
                                                 for i in range(200_000)]
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("\n".join(lines) + "\n")
    context = S.SpecContext("web", "default", rootfs.RootfsReader([rootfs.DirLayer(str(tmp_path))]))
    assert users.resolve("u199999", context.read_file).uid == 209_999


@pytest.mark.skipif(os.geteuid() != 0, reason="whiteout devices and trusted.* xattrs need root")
def test_dir_layers_follow_overlay_rules(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for d in (lower, upper):
        (d / "etc").mkdir(parents=True)
    (lower / "etc" / "passwd").write_bytes(b"low")
    (lower / "etc" / "group").write_bytes(b"lowgroup")
    (lower / "etc" / "hosts").write_bytes(b"lowhosts")
    os.mknod(upper / "etc" / "group", 0o600 | 0o020000, os.makedev(0, 0))  # a whiteout
    reader = rootfs.RootfsReader(rootfs.dir_layers([
        type("M", (), {"type": "overlay", "source": "overlay",
                       "options": (f"lowerdir={lower}", f"upperdir={upper}", "workdir=/w")})()]))
    assert reader.read("/etc/passwd", 100) == b"low"
    assert reader.read("/etc/group", 100) is None
    os.setxattr(upper / "etc", "trusted.overlay.opaque", b"y")
    assert reader.read("/etc/hosts", 100) is None


# ---------------------------------------------------------------- properties of the option parsers

_env_keys = st.text(st.characters(blacklist_characters="=\0", blacklist_categories=("Cs",)), min_size=1, max_size=10)
_env_values = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=10)


@given(st.lists(st.tuples(_env_keys, _env_values), max_size=4))
def test_env_pairs_parse_back_to_their_key_and_value(pairs):
    assert S.parse_env([f"{k}={v}" for k, v in pairs]) == pairs


@example(["\udcff=1"])  # a non-UTF-8 argument: the spec held a surrogate, runc other bytes
@example(["K=\udcff"])
@given(st.lists(st.text(max_size=12), max_size=3))
def test_parse_env_gives_utf8_pairs_or_invalid_argument(pairs):
    try:
        parsed = S.parse_env(pairs)
    except InvalidArgument:
        return
    for (key, value), pair in zip(parsed, pairs, strict=True):
        assert key and f"{key}={value}" == pair and "\0" not in pair
        pair.encode()


_mount_keys = st.sampled_from(["type", "src", "source", "dst", "destination", "target", "options", "bogus", ""])
_mount_texts = st.one_of(
    st.text(max_size=40),
    st.lists(st.tuples(_mount_keys, st.sampled_from(["=", "", "=="]),
                       st.one_of(st.sampled_from(["/", "/tmp", "/proc", "bind", "tmpfs", "proc", "ro:rbind", "//x",
                                                  "/a/../proc", "rel", "/x\0", "/x\udcff"]),
                                 st.text(max_size=6))),
             min_size=1, max_size=5).map(lambda items: ",".join(k + e + v for k, e, v in items)),
)


@example("type=tmpfs,dst=/x\udcff")  # a non-UTF-8 destination was kept as a surrogate
@example("type=tmpfs,dst=/x\0")  # runc refuses a NUL at start, long after create said yes
@given(_mount_texts)
def test_parse_mount_gives_a_whole_mount_or_a_dist_error(text: str):
    try:
        mount = S.parse_mount(text)
    except (InvalidArgument, NotFound):
        return
    assert set(mount) == {"type", "source", "destination", "options"}
    assert mount["type"] and mount["source"]
    assert mount["destination"].startswith("/") and mount["destination"] != "/"
    assert mount["destination"] == S.clean_path(mount["destination"])
    assert (mount["destination"] == "/proc") <= (mount["type"] == "proc")
    if mount["type"] == "bind":
        assert mount["source"].startswith("/") and {"bind", "rbind"} & set(mount["options"])
    for value in [mount["type"], mount["source"], mount["destination"], *mount["options"]]:
        assert "\0" not in value
        value.encode()


_segments = st.from_regex(r"[a-z0-9_.-]{1,6}", fullmatch=True).filter(lambda s: s not in (".", ".."))


@given(st.sampled_from(["tmpfs", "proc", "sysfs", "mqueue"]), st.lists(_segments, min_size=1, max_size=3),
       st.lists(st.from_regex(r"[a-z0-9=]{1,6}", fullmatch=True), max_size=3), st.booleans())
def test_a_mount_formatted_parses_back(mount_type: str, path: list[str], options: list[str], with_source: bool):
    dest = "/" + "/".join(path)
    if dest == "/proc" and mount_type != "proc":
        return
    text = f"type={mount_type},dst={dest}" + (",src=none" if with_source else "")
    text += f",options={':'.join(options)}" if options else ""
    assert S.parse_mount(text) == {"destination": dest, "type": mount_type,
                                   "source": "none" if with_source else mount_type, "options": options}


@given(st.lists(_mount_texts, max_size=3))
def test_parse_mounts_destinations_are_unique(texts):
    try:
        mounts = S.parse_mounts(texts)
    except (InvalidArgument, NotFound):
        return
    destinations = [m["destination"] for m in mounts]
    assert len(destinations) == len(set(destinations))


@given(st.none() | st.text(max_size=10))
def test_parse_entrypoint_is_one_executable_none_or_cleared(value):
    assert S.parse_entrypoint(value) == (None if value is None else [value] if value else [])
