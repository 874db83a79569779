"""Registry credentials and authorization: challenges, basic auth, bearer tokens per scope.

Credentials come from ``--user``, else from the Docker config
(``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``): the host's
``credHelpers`` entry, else ``credsStore``, else its ``auths`` entry. They are
looked up only when a registry asks (a 401 challenge), so anonymous pulls
never read the config or run a helper.

Secrets never leave this module except inside an ``Authorization`` header:
they are not in any error message, log line or ``repr``. Errors name the host
and the HTTP status, never a username's password or a token.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from dist_tool.errors import DataError, InvalidArgument, Unavailable
from dist_tool.remote.transport import shown_origin

DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
HELPER_TIMEOUT = 30.0  # seconds for a docker-credential-* helper
TOKEN_MIN_LIFETIME = 60  # seconds, when a token server gives none (the distribution spec's default)
TOKEN_EARLY_EXPIRY = 10  # renew this long before a token expires
MAX_DOCKER_CONFIG_BYTES = 1 << 20
# Go's base64.StdEncoding, once CR and LF are dropped: whole groups of four, padding only at the end.
_GO_BASE64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
CLIENT_ID = "dist"
TOKEN_USER = "<token>"  # the user name that stands for "no user, an identity token" (docker's helpers)


class Credentials:
    """A username and its secret: a password, or an OAuth2 refresh token (``identity``:
    docker's ``identitytoken``, a helper's user ``<token>``). The secret is not in its repr."""

    __slots__ = ("username", "secret", "identity")

    def __init__(self, username: str, secret: str, identity: bool = False) -> None:
        self.username = username
        self.secret = secret
        self.identity = identity

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Credentials) and (self.username, self.secret, self.identity) == \
            (other.username, other.secret, other.identity)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, identity={self.identity})"

    def basic(self) -> str:
        # The bytes the user gave: argv and stdin carry bytes that are not UTF-8 as surrogates,
        # which a strict encode refused as an "internal error" naming a character of the password.
        raw = f"{self.username}:{self.secret}".encode("utf-8", "surrogateescape")
        return "Basic " + base64.b64encode(raw).decode()


def parse_user(text: str, read_password: Callable[[str], str]) -> Credentials:
    """``USER[:PASS]`` from ``--user``; without ``:PASS`` asks ``read_password(user)``."""
    user, colon, password = text.partition(":")
    if not user:
        raise InvalidArgument("--user", "", "needs a user name (USER[:PASS])")
    if not colon:
        password = read_password(user)
    return Credentials(user, password)


# ---------------------------------------------------------------- the Docker config


def docker_config_path(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    base = env.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def config_keys(host: str) -> list[str]:
    """The keys under which Docker tools file the credentials of ``host``."""
    if host in DOCKER_HUB_HOSTS:
        return [DOCKER_HUB_CONFIG_KEY, "index.docker.io", "docker.io", "registry-1.docker.io",
                "https://registry-1.docker.io"]
    return [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]


def from_docker_config(host: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    """The credentials the Docker config holds for ``host``, or None.

    A missing config holds nothing. One that cannot be read or parsed, an
    ``auth`` that is not base64, and a helper that fails are errors: the user
    meant to give credentials, and a bare 401 would hide why none were sent
    (docker warns; nerdctl fails). Only the registry's demand for credentials
    reads the config, so a broken one never stops an anonymous pull.
    """
    path = docker_config_path(env)
    try:
        with open(path, "rb") as f:
            config = json.loads(f.read(MAX_DOCKER_CONFIG_BYTES))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise Unavailable("Docker config", path, e.strerror or "cannot be read") from None
    except ValueError as e:  # the position only: the text around it may be a secret
        where = f" (line {e.lineno}, column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        raise DataError("Docker config", path, f"not valid JSON{where}") from None
    if not isinstance(config, dict):
        raise DataError("Docker config", path, "is not a JSON object")
    keys = config_keys(host)
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for key in keys:
            if isinstance(helpers.get(key), str) and helpers[key]:
                return call_helper(helpers[key], key)
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        found = call_helper(store, keys[0])
        if found is not None:
            return found
    auths = config.get("auths")
    if isinstance(auths, dict):
        # The exact keys first, then any key that names the host with another scheme or path
        # ("https://host/", "http://host/v1/"), as docker's ConvertToHostname matches them.
        hosts = DOCKER_HUB_HOSTS if host in DOCKER_HUB_HOSTS else {host}
        others = [k for k in auths if isinstance(k, str) and k not in keys and config_key_host(k) in hosts]
        for key in [*keys, *others]:
            entry = auths.get(key)
            if isinstance(entry, dict):
                found = _from_auth_entry(entry, path, key)
                if found is not None:
                    return found
    return None


def config_key_host(key: str) -> str:
    """The host a Docker config key names: without its scheme and anything from the first "/"."""
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme):]
            break
    return key.split("/", 1)[0]


def _from_auth_entry(entry: Mapping[str, object], path: str, key: str) -> Credentials | None:
    token = entry.get("identitytoken")
    user, password = entry.get("username"), entry.get("password")
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        # Go's base64 decoder (docker's decodeAuth) skips CR and LF wherever they are, so a value
        # wrapped at 76 columns works there; any other character outside the alphabet does not,
        # nor does padding past the last group, which Python's decoder lets by.
        unwrapped = encoded.replace("\r", "").replace("\n", "")
        colon = ""
        if _GO_BASE64_RE.fullmatch(unwrapped):
            try:
                user, colon, password = base64.b64decode(unwrapped, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                colon = ""
        if not colon:
            raise DataError("Docker config", path, f"auths[{key!r}].auth is not the base64 of USER:PASSWORD")
    if isinstance(token, str) and token:
        return Credentials(str(user or TOKEN_USER), token, identity=True)
    if isinstance(user, str) and user and isinstance(password, str):
        return Credentials(user, password)
    return None


def call_helper(name: str, server: str) -> Credentials | None:
    """``docker-credential-NAME get`` for ``server``; None when it holds nothing for it."""
    import subprocess

    program = f"docker-credential-{name}"
    try:
        proc = subprocess.run([program, "get"], input=server.encode(), capture_output=True,
                              timeout=HELPER_TIMEOUT)
    except FileNotFoundError:
        raise Unavailable("credential helper", program, "not found in PATH") from None
    except subprocess.TimeoutExpired:
        raise Unavailable("credential helper", program, f"no answer in {HELPER_TIMEOUT:.0f} s") from None
    except OSError as e:
        raise Unavailable("credential helper", program, e.strerror or "cannot run") from None
    if proc.returncode != 0:
        # "credentials not found in native keychain" is how helpers say "none"; anything else
        # is reported by exit status only, as helpers may echo what they were given.
        if b"credentials not found" in proc.stdout.lower() or b"credentials not found" in proc.stderr.lower():
            return None
        raise Unavailable("credential helper", program, f"exit status {proc.returncode}")
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise Unavailable("credential helper", program, "did not print JSON") from None
    if not isinstance(doc, dict):
        raise Unavailable("credential helper", program, "did not print a JSON object")
    user, secret = doc.get("Username"), doc.get("Secret")
    if not isinstance(secret, str) or not secret:
        return None
    if user == TOKEN_USER:
        return Credentials(TOKEN_USER, secret, identity=True)
    return Credentials(str(user or ""), secret)


# ---------------------------------------------------------------- challenges

# A value is a quoted string (its closing quote may be missing: the rest of the header is the
# value) or a token; empty list elements (", ,") may come before a parameter (RFC 7235).
_PARAM_RE = re.compile(r'[\s,]*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"?|([^\s,]*))\s*,?')
_SCHEME_RE = re.compile(r"\s*,?\s*([A-Za-z][A-Za-z0-9_-]*)(?=\s|$|,)")


_HEADER_TOKEN_RE = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what "Bearer TOKEN" may hold


class Challenge(NamedTuple):
    scheme: str  # lowercase: "basic", "bearer"
    params: Mapping[str, str]


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """Parses ``WWW-Authenticate`` values (RFC 7235): schemes, each with its parameters."""
    out: list[Challenge] = []
    for value in headers:
        pos = 0
        while pos < len(value):
            m = _SCHEME_RE.match(value, pos)
            if m is None:
                break
            scheme, pos = m.group(1).lower(), m.end()
            params: dict[str, str] = {}
            while pos < len(value):
                p = _PARAM_RE.match(value, pos)
                if p is None:
                    break
                quoted, token = p.group(2), p.group(3)
                params[p.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else token
                pos = p.end()
            out.append(Challenge(scheme, params))
    return out


def repository_scope(path: str, actions: str) -> str:
    return f"repository:{path}:{actions}"


def merge_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """One scope per resource with the union of its actions, in first-seen order
    (``repository:a:pull,push`` and ``repository:a:pull`` are ``repository:a:pull,push``)."""
    merged: dict[str, list[str]] = {}
    for scope in scopes:
        resource, colon, actions = scope.rpartition(":")
        if not colon or not resource:
            merged.setdefault(scope, [])
            continue
        known = merged.setdefault(resource, [])
        known.extend(a for a in actions.split(",") if a and a not in known)
    return tuple(f"{r}:{','.join(a)}" if a else r for r, a in merged.items())


def shown_scope(scope: str) -> str:
    """A scope as a message shows it: its actions sorted, since a registry's challenge may list
    them in any order (docker-registry's comes from a Go map: pull,push one time, push,pull the
    next)."""
    resource, colon, actions = scope.rpartition(":")
    return f"{resource}:{','.join(sorted(actions.split(',')))}" if colon and resource else scope


# ---------------------------------------------------------------- the authorizer


# (method, url, params, headers, form) → (status, body): the registry's HTTP with its retries.
TokenHttp = Callable[[str, str, list[tuple[str, str]], dict[str, str], dict[str, str] | None], tuple[int, bytes]]


class TokenRefused(Unavailable):
    """The token server answered 401 or 403: it refused the credentials, or one of the scopes."""


class _Token:
    __slots__ = ("value", "expires")

    def __init__(self, value: str, expires: float) -> None:
        self.value = value
        self.expires = expires  # time.monotonic()

    def __repr__(self) -> str:
        return "_Token(...)"


class Authorizer:
    """The ``Authorization`` header for one registry host, per scope; answers its challenges.

    Thread-safe: the blob transfers of one command share it. Bearer tokens are
    cached by the set of scopes they were asked for; once the host is known to
    use bearer tokens, a new scope's token is fetched before the request
    instead of after a 401.
    """

    def __init__(self, host: str, http: TokenHttp, credentials: Credentials | None = None,
                 lookup: Callable[[str], Credentials | None] = from_docker_config) -> None:
        self.host = host
        self._http = http
        self._given = credentials
        self._lookup = lookup
        self._looked_up = False
        self._found: Credentials | None = None
        self._basic = False
        self._bearer: Mapping[str, str] | None = None  # the realm and service of the host's challenge
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._no_post = False  # the token server refused the OAuth2 POST: GET from then on
        self._lock = threading.RLock()

    def credentials(self) -> Credentials | None:
        if self._given is not None:
            return self._given
        with self._lock:
            if not self._looked_up:
                self._found = self._lookup(self.host)
                self._looked_up = True
            return self._found

    def offered(self) -> bool:
        """Whether credentials have gone out: as basic auth, or to a token server for a token."""
        with self._lock:
            return self._basic or (self._bearer is not None and self.credentials() is not None)

    def header(self, scopes: tuple[str, ...]) -> dict[str, str]:
        """The headers that authorize a request needing ``scopes`` (empty when anonymous so far)."""
        with self._lock:
            if self._basic:
                creds = self.credentials()
                return {"Authorization": creds.basic()} if creds else {}
            if self._bearer is None:
                return {}
            token = self._tokens.get(scopes)
            if token is None or token.expires <= time.monotonic():
                token = self._tokens[scopes] = self._fetch_token(self._bearer, scopes)
            return {"Authorization": f"Bearer {token.value}"}

    def answer(self, challenges: list[Challenge], scopes: tuple[str, ...]) -> bool:
        """After a 401: prepares credentials for a retry. False when nothing more can be tried."""
        with self._lock:
            for challenge in challenges:
                if challenge.scheme == "bearer" and challenge.params.get("realm"):
                    wanted = merge_scopes([*scopes, *challenge.params.get("scope", "").split()])
                    self._bearer = challenge.params
                    self._tokens[scopes] = self._fetch_token(challenge.params, wanted)
                    return True
            for challenge in challenges:
                if challenge.scheme == "basic":
                    if self._basic or self.credentials() is None:
                        return False
                    self._basic = True
                    return True
            return False

    def _fetch_token(self, params: Mapping[str, str], scopes: tuple[str, ...]) -> _Token:
        realm = params["realm"]
        if not realm.startswith(("https://", "http://")):
            raise Unavailable("registry", self.host, "challenge names a token realm that is not an http(s) URL")
        where = shown_origin(realm)  # for messages: a realm may carry user:pass@ and a query
        service = params.get("service")
        creds = self.credentials()
        query: list[tuple[str, str]] = [("service", service)] if service else []
        if creds is not None and creds.identity:
            form = {"grant_type": "refresh_token", "refresh_token": creds.secret, "client_id": CLIENT_ID,
                    "scope": " ".join(scopes)}
            if service:
                form["service"] = service
            status, body = (0, b"") if self._no_post else self._http("POST", realm, [], {}, form)
            if self._no_post or _post_unsupported(status, creds):
                # A token server without the OAuth2 endpoint: the GET of the distribution token
                # spec with the refresh token as the basic password, as containerd falls back
                # (with no user name for an identity token alone, as containerd has none).
                self._no_post = True
                query += [("scope", s) for s in scopes]
                basic = Credentials("" if creds.username == TOKEN_USER else creds.username, creds.secret).basic()
                status, body = self._http("GET", realm, query, {"Authorization": basic}, None)
        else:
            query += [("scope", s) for s in scopes]
            headers = {"Authorization": creds.basic()} if creds is not None else {}
            status, body = self._http("GET", realm, query, headers, None)
        if status in (401, 403):
            why = "rejected the credentials" if creds is not None else "requires credentials"
            raise TokenRefused("registry", self.host, f"{status} from token server {where}: it {why}")
        if status != 200:
            raise Unavailable("registry", self.host, f"token server {where} answered {status}")
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        value = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        if not isinstance(value, str) or not value:
            raise Unavailable("registry", self.host, f"token server {where} sent no token")
        if not _HEADER_TOKEN_RE.fullmatch(value):
            # A CR, LF or space cannot go into a header: http.client refused it with a ValueError
            # that quoted the header, the token in it, on dist's error line.
            raise Unavailable("registry", self.host, f"token server {where} sent a token no header can carry")
        lifetime = doc.get("expires_in")
        if not isinstance(lifetime, int | float) or not math.isfinite(lifetime) or lifetime < TOKEN_MIN_LIFETIME:
            lifetime = TOKEN_MIN_LIFETIME
        return _Token(value, time.monotonic() + lifetime - TOKEN_EARLY_EXPIRY)


def _post_unsupported(status: int, creds: Credentials) -> bool:
    """Whether a token server's answer to the OAuth2 POST means "no such endpoint, use GET".

    containerd's statuses (remotes/docker/authorizer.go, doAuth): 404 (GCR), 401 (Artifactory),
    400 (ACR), and 405 only when the credentials name a user. Anything else (501, 5xx, 403) is
    the token server's answer and is reported as such.
    """
    return status in (400, 401, 404) or (status == 405 and bool(creds.username) and creds.username != TOKEN_USER)
