"""Registry auth: challenges, scopes, the Docker config and credential helpers, the token flow.
The end-to-end flows run against real registries in tests/interop/test_registry.py."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dist_tool.errors import DataError, InvalidArgument, Unavailable
from dist_tool.remote.auth import (
    Authorizer,
    Credentials,
    config_keys,
    from_docker_config,
    merge_scopes,
    parse_challenges,
    parse_user,
    shown_scope,
)


@pytest.mark.parametrize("header, expected", [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push"',
     [("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                  "scope": "repository:a/b:pull,push"})]),
    ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
    ('Bearer realm=https://x/t, error="insufficient_scope"',
     [("bearer", {"realm": "https://x/t", "error": "insufficient_scope"})]),
    ('Basic realm="a \\"quoted\\" realm"', [("basic", {"realm": 'a "quoted" realm'})]),
    ('Bearer realm="http://127.0.0.1:5091/token', [("bearer", {"realm": "http://127.0.0.1:5091/token"})]),
    ('Bearer ,realm="https://a/t", ,service=reg', [("bearer", {"realm": "https://a/t", "service": "reg"})]),
], ids=["bearer", "basic", "unquoted", "escaped", "unterminated-quote", "empty-list-elements"])
def test_challenges(header, expected):
    assert [(c.scheme, dict(c.params)) for c in parse_challenges([header])] == expected


def test_scopes_merge_actions_per_repository():
    assert merge_scopes(["repository:a:pull,push", "repository:a:pull", "repository:b:pull"]) == \
        ("repository:a:pull,push", "repository:b:pull")


@pytest.mark.parametrize("challenged", ["repository:theirs/app:pull,push", "repository:theirs/app:push,pull"])
def test_a_scope_is_shown_with_its_actions_in_one_order_whatever_the_registry_sent(challenged):
    assert shown_scope(challenged) == "repository:theirs/app:pull,push"
    assert shown_scope("registry:catalog:*") == "registry:catalog:*"


def test_user_option_and_secret_never_in_repr():
    creds = parse_user("alice:pa:ss", lambda user: pytest.fail("asked"))
    assert (creds.username, creds.secret) == ("alice", "pa:ss")
    assert "pa:ss" not in repr(creds)
    assert parse_user("bob", lambda user: f"{user}-pw").secret == "bob-pw"
    with pytest.raises(InvalidArgument):
        parse_user(":x", lambda user: "")


def test_docker_hub_keys():
    assert config_keys("registry-1.docker.io")[0] == "https://index.docker.io/v1/"
    assert config_keys("r.example:5000")[:2] == ["r.example:5000", "https://r.example:5000"]


def _config(tmp_path, doc) -> dict:
    (tmp_path / "config.json").write_text(json.dumps(doc))
    return {"DOCKER_CONFIG": str(tmp_path)}


def test_config_auths(tmp_path):
    env = _config(tmp_path, {"auths": {
        "https://r.example": {"auth": base64.b64encode(b"u:p").decode()},
        "t.example": {"identitytoken": "refresh"}}})
    assert from_docker_config("r.example", env) == Credentials("u", "p")
    assert from_docker_config("t.example", env) == Credentials("<token>", "refresh", identity=True)
    assert from_docker_config("other.example", env) is None
    assert from_docker_config("r.example", {"DOCKER_CONFIG": str(tmp_path / "none")}) is None


@pytest.mark.parametrize("key", ["https://r.example:5000/", "http://r.example:5000/v1/", "r.example:5000/v2/",
                                 "https://r.example:5000/v2/token"])
def test_config_auths_keyed_by_the_host_with_any_scheme_or_path(tmp_path, key):
    """docker finds these keys (ConvertToHostname: no scheme, nothing from the first "/")."""
    env = _config(tmp_path, {"auths": {
        "r.example:50000": {"auth": base64.b64encode(b"x:y").decode()},
        key: {"auth": base64.b64encode(b"u:p").decode()}}})
    assert from_docker_config("r.example:5000", env) == Credentials("u", "p")
    assert from_docker_config("r.example", env) is None


def test_config_auths_of_docker_hub_under_a_host_key(tmp_path):
    env = _config(tmp_path, {"auths": {"https://index.docker.io/v1": {"auth": base64.b64encode(b"u:p").decode()}}})
    assert from_docker_config("registry-1.docker.io", env) == Credentials("u", "p")


@pytest.mark.parametrize(("text", "why"), [
    ('{"auths": {"r.example": {"auth": "c2VjcmV0"}', r"not valid JSON \(line 1, column 45\)"),
    ('["auths"]', "is not a JSON object"),
    ('{"auths": {"r.example": {"auth": "!!not base64!!"}}}', r"auths\['r.example'\]\.auth is not the base64"),
    ('{"auths": {"r.example": {"auth": "c2VjcmV0"}}}', r"auths\['r.example'\]\.auth is not the base64"),
], ids=["truncated", "not-an-object", "not-base64", "no-colon"])
def test_a_broken_config_is_an_error_that_shows_no_secret(tmp_path, text, why):
    """A bare 401 would hide why no credentials were sent; "c2VjcmV0" is base64 of "secret"."""
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(DataError, match=f"^Docker config {tmp_path}/config.json: {why}") as caught:
        from_docker_config("r.example", {"DOCKER_CONFIG": str(tmp_path)})
    assert "c2VjcmV0" not in str(caught.value) and "secret" not in str(caught.value)


def test_an_auth_wrapped_with_line_breaks_is_read_as_go_reads_it(tmp_path):
    """base64 tools wrap at 76 columns; Go's decoder, which docker uses, skips CR and LF."""
    user, password = "robot$ci-builder", "p" * 80
    encoded = base64.encodebytes(f"{user}:{password}".encode()).decode()  # wrapped at 76, ends in "\n"
    assert "\n" in encoded.rstrip("\n")
    for auth in (encoded, encoded.replace("\n", "\r\n"), "\n" + encoded.replace("=", "\n=")):
        env = _config(tmp_path, {"auths": {"r.example": {"auth": auth}}})
        assert from_docker_config("r.example", env) == Credentials(user, password)


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40), st.lists(st.integers(0, 80), max_size=4),
       st.sampled_from(["\n", "\r\n", "\r"]))
def test_line_breaks_anywhere_in_an_auth_are_skipped(tmp_path_factory, password, cuts, br):
    encoded = base64.b64encode(f"u:{password}".encode()).decode()
    for cut in sorted({min(c, len(encoded)) for c in cuts}, reverse=True):
        encoded = encoded[:cut] + br + encoded[cut:]
    env = _config(tmp_path_factory.mktemp("cfg"), {"auths": {"r.example": {"auth": encoded}}})
    assert from_docker_config("r.example", env) == Credentials("u", password)


@pytest.mark.parametrize("auth", [" dTpw", "dTpw ", "dT\tpw", "dTp", "dTpw=", "dTpw==", "dT=p", "dTpw\x00"],
                         ids=["space-before", "space-after", "tab", "no-padding", "extra-padding", "extra-padding-2",
                              "padding-inside", "nul"])
def test_an_auth_is_not_read_more_loosely_than_go_reads_it(tmp_path, auth):
    """Only CR and LF are skipped ("dTpw" is base64 of "u:p")."""
    env = _config(tmp_path, {"auths": {"r.example": {"auth": auth}}})
    with pytest.raises(DataError, match=r"auth is not the base64 of USER:PASSWORD"):
        from_docker_config("r.example", env)


def test_an_unreadable_config_is_an_error(tmp_path):
    (tmp_path / "config.json").mkdir()
    with pytest.raises(Unavailable, match="^Docker config .*: Is a directory"):
        from_docker_config("r.example", {"DOCKER_CONFIG": str(tmp_path)})


def test_credential_helpers(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-fake"
    helper.write_text('#!/bin/sh\nread s\ncase "$s" in\n h.example) echo \'{"Username":"u","Secret":"s"}\';;\n'
                      ' *) echo "credentials not found in native keychain"; exit 1;;\nesac\n')
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    env = _config(tmp_path, {"credHelpers": {"h.example": "fake"}, "credsStore": "fake"})
    assert from_docker_config("h.example", env) == Credentials("u", "s")
    assert from_docker_config("nothing.example", env) is None
    env = _config(tmp_path, {"credsStore": "missing"})
    with pytest.raises(Unavailable, match="docker-credential-missing: not found"):
        from_docker_config("h.example", env)


class FakeTokenServer:
    def __init__(self, status=200, lifetime: object = 300):
        self.calls = []
        self.status = status
        self.lifetime = lifetime

    def __call__(self, method, url, params, headers, form):
        self.calls.append((method, url, params, headers.get("Authorization"), form))
        body = f'{{"token": "t{len(self.calls)}", "expires_in": {self.lifetime}}}'  # NaN is no JSON number
        return self.status, body.encode()


@pytest.mark.parametrize("lifetime", ["NaN", "Infinity"])
def test_a_token_whose_lifetime_is_not_a_number_is_renewed(lifetime, monkeypatch):
    import time

    from dist_tool.remote import auth as auth_module

    server = FakeTokenServer(lifetime=lifetime)
    auth = Authorizer("r.example", server, None, lookup=lambda host: None)
    auth.answer(parse_challenges(['Bearer realm="https://auth.example/token"']), ("s",))
    clock = time.monotonic() + auth_module.TOKEN_MIN_LIFETIME + 1
    monkeypatch.setattr(auth_module.time, "monotonic", lambda: clock)
    assert auth.header(("s",)) == {"Authorization": "Bearer t2"}  # the first one expired: fetched again


def test_bearer_tokens_per_scope_with_basic_credentials():
    server = FakeTokenServer()
    auth = Authorizer("r.example", server, Credentials("u", "p"))
    pull = ("repository:a:pull",)
    assert auth.header(pull) == {}  # anonymous until challenged
    challenge = parse_challenges(['Bearer realm="https://auth.example/token",service="reg"'])
    assert auth.answer(challenge, pull) is True
    assert auth.header(pull) == {"Authorization": "Bearer t1"}
    assert server.calls[0][:4] == ("GET", "https://auth.example/token",
                                   [("service", "reg"), ("scope", "repository:a:pull")],
                                   Credentials("u", "p").basic())
    assert auth.header(("repository:b:pull",)) == {"Authorization": "Bearer t2"}  # fetched up front
    assert auth.header(pull) == {"Authorization": "Bearer t1"}  # cached
    assert len(server.calls) == 2


def test_tokens_fetched_before_a_request_are_cached_until_they_expire(monkeypatch):
    """A scope first met after the 401 was answered (a push's mount, a second repository) gets its
    token in header(): it must be reused, not fetched again for every request."""
    import time

    from dist_tool.remote import auth as auth_module

    server = FakeTokenServer()
    auth = Authorizer("r.example", server, None, lookup=lambda host: None)
    auth.answer(parse_challenges(['Bearer realm="https://auth.example/token"']), ("a",))
    for _ in range(3):
        assert auth.header(("b",)) == {"Authorization": "Bearer t2"}
    assert auth.header(("a",)) == {"Authorization": "Bearer t1"}
    assert len(server.calls) == 2
    clock = time.monotonic() + 300
    monkeypatch.setattr(auth_module.time, "monotonic", lambda: clock)
    for _ in range(3):
        assert auth.header(("b",)) == {"Authorization": "Bearer t3"}  # expired: renewed once
    assert len(server.calls) == 3


def test_identity_tokens_use_the_oauth2_refresh_grant():
    server = FakeTokenServer()
    auth = Authorizer("r.example", server, Credentials("<token>", "refresh-me", identity=True))
    auth.answer(parse_challenges(['Bearer realm="https://auth.example/token",service="reg"']), ("s",))
    method, _, _, header, form = server.calls[0]
    assert (method, header) == ("POST", None)
    assert form == {"grant_type": "refresh_token", "refresh_token": "refresh-me", "client_id": "dist",
                    "scope": "s", "service": "reg"}


class NoPostTokenServer(FakeTokenServer):
    """A token server without the OAuth2 endpoint: a POST gets ``post_status``."""

    def __init__(self, post_status: int):
        super().__init__()
        self.post_status = post_status

    def __call__(self, method, url, params, headers, form):
        if method == "POST":
            self.calls.append((method, url, params, headers.get("Authorization"), form))
            return self.post_status, b""
        return super().__call__(method, url, params, headers, form)


@pytest.mark.parametrize(("status", "user"), [(404, "<token>"), (401, "<token>"), (400, "<token>"), (405, "alice")])
def test_identity_tokens_fall_back_to_get_where_the_token_server_has_no_post(status, user):
    """containerd's statuses: 404 (GCR), 401 (Artifactory), 400 (ACR), 405 with a user name."""
    server = NoPostTokenServer(status)
    auth = Authorizer("r.example", server, Credentials(user, "refresh-me", identity=True))
    auth.answer(parse_challenges(['Bearer realm="https://auth.example/token",service="reg"']), ("s",))
    assert auth.header(("s",)) == {"Authorization": "Bearer t2"}
    sent = "" if user == "<token>" else user
    query = [("service", "reg"), ("scope", "s")]
    assert [c[:4] for c in server.calls[1:]] == [("GET", "https://auth.example/token", query,
                                                  Credentials(sent, "refresh-me").basic())]
    assert auth.header(("other",)) == {"Authorization": "Bearer t3"}
    assert [c[0] for c in server.calls] == ["POST", "GET", "GET"]  # no POST again once refused


@pytest.mark.parametrize(("status", "user"), [(405, "<token>"), (501, "alice"), (403, "alice"), (500, "alice")])
def test_identity_tokens_do_not_fall_back_on_other_answers(status, user):
    server = NoPostTokenServer(status)
    auth = Authorizer("r.example", server, Credentials(user, "refresh-me", identity=True))
    with pytest.raises(Unavailable, match=f"token server https://auth.example answered {status}$|"
                                          f"{status} from token server https://auth.example:") as caught:
        auth.answer(parse_challenges(['Bearer realm="https://auth.example/token"']), ("s",))
    assert [c[0] for c in server.calls] == ["POST"] and "refresh-me" not in str(caught.value)


def test_refused_tokens_and_basic_without_credentials():
    auth = Authorizer("r.example", FakeTokenServer(status=401), Credentials("u", "secret-pw"),
                      lookup=lambda host: None)
    with pytest.raises(Unavailable) as e:
        auth.answer(parse_challenges(['Bearer realm="https://auth.example/token"']), ("s",))
    assert "401 from token server https://auth.example" in str(e.value) and "secret-pw" not in str(e.value)
    anonymous = Authorizer("r.example", FakeTokenServer(), lookup=lambda host: None)
    assert anonymous.answer(parse_challenges(['Basic realm="x"']), ("s",)) is False
    basic = Authorizer("r.example", FakeTokenServer(), lookup=lambda host: Credentials("u", "p"))
    assert basic.answer(parse_challenges(['Basic realm="x"']), ("s",)) is True
    assert basic.header(("other",)) == {"Authorization": Credentials("u", "p").basic()}
    assert basic.answer(parse_challenges(['Basic realm="x"']), ("s",)) is False  # refused twice: give up


@pytest.mark.parametrize(("status", "body", "why"), [
    (401, b"", "401 from token server https://auth.example:8443: it rejected the credentials"),
    (500, b"", "token server https://auth.example:8443 answered 500"),
    (200, b"{}", "token server https://auth.example:8443 sent no token"),
    (200, b'{"token": "a b"}', "token server https://auth.example:8443 sent a token no header can carry"),
], ids=["refused", "answered", "no-token", "bad-token"])
def test_a_realm_with_user_info_is_shown_without_it(status, body, why):
    """A realm may carry user:pass@ (a token service's own credentials): messages showed them."""
    def server(method, url, params, headers, form):
        return status, body

    auth = Authorizer("r.example", server, Credentials("u", "p"))
    realm = "https://svc-user:realm-Secret9@auth.example:8443/token?x=1"
    with pytest.raises(Unavailable) as caught:
        auth.answer(parse_challenges([f'Bearer realm="{realm}"']), ("s",))
    assert str(caught.value) == f"registry r.example: {why}"
    assert "realm-Secret9" not in str(caught.value) and "svc-user" not in str(caught.value)


# ---------------------------------------------------------------- properties: a registry's headers

_schemes = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,8}", fullmatch=True)
_param_names = st.from_regex(r"[a-z0-9_.-]{1,8}", fullmatch=True)
# any text but a line break, which no header value holds (RFC 9110 5.5)
_param_values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _challenge(scheme: str, params: dict[str, str]) -> str:
    return " ".join([scheme, ", ".join(f"{k}={_quoted(v)}" for k, v in params.items())]).rstrip()


@given(st.lists(st.tuples(_schemes, st.dictionaries(_param_names, _param_values, max_size=4)), max_size=3),
       st.booleans())
def test_challenges_formatted_parse_back_with_params_unescaped(challenges, one_header: bool):
    """Several challenges in one header or one a header; quotes, backslashes and commas inside
    quoted values come back as they were before escaping."""
    texts = [_challenge(s, p) for s, p in challenges]
    headers = [", ".join(texts)] if one_header else texts
    parsed = parse_challenges([h for h in headers if h])
    assert [(c.scheme, dict(c.params)) for c in parsed] == [(s.lower(), p) for s, p in challenges]


@given(st.lists(st.text(max_size=40), max_size=3))
def test_any_header_parses_to_challenges_without_raising(headers):
    for challenge in parse_challenges(headers):
        assert challenge.scheme and challenge.scheme == challenge.scheme.lower()
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in challenge.params.items())


@given(st.text(st.characters(blacklist_characters=":"), min_size=1, max_size=10), st.text(max_size=10))
def test_user_and_password_parse_back(user: str, password: str):
    asked: list[str] = []
    assert parse_user(f"{user}:{password}", asked.append) == Credentials(user, password) and asked == []
    assert parse_user(user, lambda name: f"typed for {name}") == Credentials(user, f"typed for {user}")


@given(st.text(max_size=12))
def test_parse_user_gives_credentials_or_invalid_argument(text: str):
    try:
        creds = parse_user(text, lambda name: "pw")
    except InvalidArgument:
        assert not text.partition(":")[0]
        return
    assert creds.username and ":" not in creds.username


@pytest.mark.parametrize("token", ["SECRET-1\r\nX-Injected: 1", "SECRET-1\n", "SECRET 1", "SECRET-\u00e91"])
def test_a_token_no_header_can_carry_is_refused_without_showing_it(token):
    """http.client refused the header with a ValueError that quoted it: "internal error: ValueError:
    Invalid header value b'Bearer SECRET-1\\r\\n'" was dist's error line."""
    def server(method, url, params, headers, form):
        return 200, json.dumps({"token": token}).encode()

    auth = Authorizer("r.example", server, None, lookup=lambda host: None)
    with pytest.raises(Unavailable, match="sent a token no header can carry$") as caught:
        auth.answer(parse_challenges(['Bearer realm="https://auth.example/token"']), ("s",))
    assert "SECRET" not in str(caught.value)


def test_a_password_that_is_not_utf8_is_sent_as_the_bytes_given():
    """argv and stdin give such bytes as surrogates: basic() raised UnicodeEncodeError (an internal error)."""
    password = b"pa\xffss".decode("utf-8", "surrogateescape")
    creds = parse_user(f"alice:{password}", lambda user: pytest.fail("asked"))
    assert base64.b64decode(creds.basic().removeprefix("Basic ")) == b"alice:pa\xffss"
