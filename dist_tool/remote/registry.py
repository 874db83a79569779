"""The registry resolver and its HTTP: hosts, schemes, manifest Accept, tag → digest, retries.

A ``Registry`` is one host: its scheme (HTTPS unless ``--plain-http``; plain
HTTP when HTTPS cannot connect to a localhost registry, as containerd does),
its ``Authorizer``, and one keep-alive ``transport.Client`` shared by the threads
of a transfer. ``request()`` retries 429 and 5xx answers and dropped
connections with exponential backoff (honouring ``Retry-After``) and answers
401 challenges once. A ``Repository`` is one repository on it and speaks the
distribution API: manifests by tag or digest, blobs with ranges, uploads,
cross-repository mounts.

Error mapping (SPEC, exit status): a reference the registry does not have
(404, ``MANIFEST_UNKNOWN``, ``NAME_UNKNOWN``) is ``NotFound``; 401/403 and
every other failure are ``Unavailable``; content that does not match its
digest is ``DataError``. Messages name the reference, the host and the status,
never a credential.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from dist_tool import __version__, oci
from dist_tool.errors import DataError, DistError, NotFound, Unavailable
from dist_tool.oci import Descriptor
from dist_tool.remote.auth import (
    Authorizer,
    Credentials,
    TokenRefused,
    from_docker_config,
    parse_challenges,
    repository_scope,
    shown_scope,
)
from dist_tool.remote.transport import Client, Response, TransportError, origin, shown_origin
from dist_tool.store.limits import MAX_INDEX_BYTES, MAX_MANIFEST_BYTES
from dist_tool.validate import decimal

MANIFEST_MEDIA_TYPES = (oci.MEDIA_OCI_INDEX, oci.MEDIA_OCI_MANIFEST,
                        oci.MEDIA_DOCKER_MANIFEST_LIST, oci.MEDIA_DOCKER_MANIFEST)
ACCEPT_MANIFESTS = ", ".join(MANIFEST_MEDIA_TYPES)
USER_AGENT = f"dist/{__version__}"

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_ATTEMPTS = 5  # per request: the first try and four retries
CONNECT_ATTEMPTS = 2  # when the connection cannot even be made
BACKOFF_FIRST = 0.25  # seconds; doubled each retry, with jitter
BACKOFF_MAX = 8.0
MAX_ERROR_BODY = 64 * 1024
MAX_TOKEN_BODY = 1024 * 1024
MOUNT_REFUSED = frozenset({401, 403, 404})  # a mount's source we may not read, or that is gone
MAX_DOCUMENT_BYTES = max(MAX_MANIFEST_BYTES, MAX_INDEX_BYTES)

Body = bytes | Callable[[], Iterable[bytes | memoryview]] | None  # a callable gives a fresh stream per attempt


def is_localhost(host: str) -> bool:
    """``localhost`` (in any case: host names are), ``127.0.0.0/8`` and ``::1``, with or without a port."""
    host = host.lower()
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name == "localhost" or name == "::1" or re.fullmatch(r"127(?:\.\d{1,3}){3}", name) is not None


def backoff(attempt: int, retry_after: str | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...)."""
    seconds = decimal(retry_after.strip()) if retry_after else None
    if seconds is not None:
        return min(float(seconds), BACKOFF_MAX)
    import random

    delay = min(BACKOFF_FIRST * 2 ** (attempt - 1), BACKOFF_MAX)
    return delay * (0.5 + random.random() / 2)


class TransportFailure(Unavailable):
    """The connection failed (refused, dropped, timed out), after the retries allowed."""


class Registry:
    """One registry host: scheme, auth, and an HTTP client shared by a transfer's threads."""

    def __init__(self, host: str, *, plain_http: bool = False, credentials: Credentials | None = None,
                 lookup: Callable[[str], Credentials | None] = from_docker_config,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.host = host
        self.scheme = "http" if plain_http else "https"
        self._may_fall_back = not plain_http and is_localhost(host)
        self._sleep = sleep
        self._client: Client | None = None
        self.auth = Authorizer(host, self._token_http, credentials, lookup)

    # ------------------------------------------------------------ client

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(headers={"User-Agent": USER_AGENT})
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, target: str) -> str:
        """An absolute URL for an API path (``/v2/...``); absolute URLs pass through."""
        if target.startswith(("http://", "https://")):
            return target
        return f"{self.scheme}://{self.host}{target}"

    def repository(self, path: str, display: str, actions: str = "pull") -> Repository:
        return Repository(self, path, display, actions)

    # ------------------------------------------------------------ requests

    @contextmanager
    def request(self, method: str, target: str, scopes: tuple[str, ...] | None, *,
                headers: dict[str, str] | None = None, params: dict[str, str] | None = None,
                content: Body = None, retry: bool = True) -> Iterator[Response]:
        """Sends a request and yields the streaming response, whatever its status.

        ``scopes`` are the token scopes the request needs (None: send no credentials).
        Retries 429/5xx and dropped connections (unless ``retry`` is False: a PUT that
        may have half-written an upload must restart from its POST) and answers one 401.
        """
        resp = self._send(method, target, scopes, headers, params, content, retry)
        try:
            yield resp
        except BaseException:
            resp.close(drain=False)
            raise
        resp.close()

    def _send(self, method: str, target: str, scopes: tuple[str, ...] | None, headers: dict[str, str] | None,
              params: dict[str, str] | None, content: Body, retry: bool) -> Response:
        url = self.url(target)
        if params:
            from urllib.parse import urlencode

            url += ("&" if "?" in url else "?") + urlencode(params)
        attempt = 0
        answered = False
        while True:
            h = dict(headers or {})
            # Credentials go to the registry's own origin only: an upload Location or a redirect
            # may name any host, and docker and containerd keep them from it too.
            own = scopes is not None and self._is_own(url)
            if own:
                h.update(self.auth.header(scopes))
            body = content() if callable(content) else content
            try:
                resp = self.client.send(method, url, h, body)
            except TransportError as e:
                if self._may_fall_back and e.tls and not e.untrusted and e.connecting and not e.redirected \
                        and url.startswith(f"https://{self.host}/"):
                    self._fall_back_to_http()
                    url = "http://" + url[len("https://"):]
                    continue
                attempt += 1
                # Nothing listening, no such host, an untrusted certificate: one more try at
                # most (a registry restarting), not the backoff meant for dropped connections.
                limit = (1 if e.tls or e.why == "unknown host" else CONNECT_ATTEMPTS) if e.connecting \
                    else MAX_ATTEMPTS
                if not retry or not e.retryable or attempt >= limit:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    raise TransportFailure("registry", self.host, f"{e.why}{tries}") from None
                self._sleep(backoff(attempt))
                continue
            if resp.status_code == 401 and own and not answered and self._is_own(resp.url):
                answered = True
                try:
                    again = self.auth.answer(parse_challenges(resp.headers.get_list("www-authenticate")), scopes)
                except BaseException:
                    resp.close()
                    raise
                if again:
                    resp.close()
                    continue
                return resp
            if resp.status_code in RETRY_STATUSES and retry and attempt + 1 < MAX_ATTEMPTS:
                attempt += 1
                delay = backoff(attempt, resp.headers.get("retry-after"))
                resp.close()
                self._sleep(delay)
                continue
            return resp

    def _is_own(self, url: str) -> bool:
        return origin(url) == origin(f"{self.scheme}://{self.host}/")

    def _fall_back_to_http(self) -> None:
        """A localhost registry that does not speak TLS: plain HTTP from now on (containerd's rule)."""
        self.scheme = "http"
        self._may_fall_back = False

    def _token_http(self, method: str, url: str, params: list[tuple[str, str]], headers: dict[str, str],
                    form: dict[str, str] | None) -> tuple[int, bytes]:
        """The Authorizer's way to a token server: retried like any request, bounded, no auth."""
        from urllib.parse import urlencode

        content = urlencode(form).encode() if form is not None else None
        if form is not None:
            headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
        target = url + ("&" if "?" in url else "?") + urlencode(params) if params else url
        try:
            with self.request(method, target, None, headers=headers, content=content) as resp:
                return resp.status_code, read_limited(resp, MAX_TOKEN_BODY, "token", self.host)
        except TransportFailure as e:
            # The token server is often another host: "registry H: connection refused" sent people
            # to look at a registry that was up.
            raise TransportFailure("registry", self.host, f"token server {shown_origin(url)}: {e.why}") from None


class Repository:
    """One repository of a registry: the distribution API calls pull and push make.

    ``display`` is how errors name what the user asked for (the reference).
    """

    def __init__(self, registry: Registry, path: str, display: str, actions: str = "pull") -> None:
        self.registry = registry
        self.path = path
        self.display = display
        self.scopes = (repository_scope(path, actions),)

    @property
    def host(self) -> str:
        return self.registry.host

    def _api(self, kind: str, reference: str = "") -> str:
        return f"/v2/{self.path}/{kind}/{reference}"

    # ------------------------------------------------------------ manifests

    def get_manifest(self, reference: str, expected: Descriptor | None = None) -> tuple[Descriptor, bytes]:
        """The manifest or index at a tag or digest, read bounded and verified.

        With ``expected`` (a child descriptor), its digest and size must match;
        otherwise a digest reference must match, and so must the registry's
        ``Docker-Content-Digest`` when it sends one. Raises NotFound when the
        registry does not have it.
        """
        with self.registry.request("GET", self._api("manifests", reference), self.scopes,
                                   headers={"Accept": ACCEPT_MANIFESTS}) as resp:
            if resp.status_code != 200:
                raise self.error(resp, "image" if expected is None else "manifest",
                                 self.display if expected is None else reference, missing_is_not_found=True)
            data = read_limited(resp, MAX_DOCUMENT_BYTES, "manifest", reference)
            header_digest = resp.headers.get("docker-content-digest")
            content_type = resp.headers.get("content-type", "").split(";")[0].strip()
        algorithm = (expected.digest if expected else reference if ":" in reference else "sha256:").partition(":")[0]
        if algorithm not in ("sha256", "sha512"):
            raise DataError("manifest", reference, f"unsupported digest algorithm {algorithm}")
        import hashlib  # lazy: a push with nothing to upload hashes nothing

        digest = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
        want = expected.digest if expected else (reference if ":" in reference else None)
        if want is not None and digest != want:
            raise DataError("manifest", want, f"registry {self.host} sent content that hashes to {digest}")
        if expected is not None and len(data) != expected.size:
            raise DataError("manifest", want or digest,
                            f"registry {self.host} sent {len(data)} bytes, the descriptor says {expected.size}")
        if header_digest and header_digest.startswith(f"{algorithm}:") and header_digest != digest:
            raise DataError("manifest", self.display,
                            f"registry {self.host} says {header_digest} but its content hashes to {digest}")
        if expected is not None:
            return expected, data
        media_type = content_type if oci.is_image_target(content_type) else ""
        if not media_type:
            media_type = oci.detect_media_type(oci.decode_json(data, "manifest", digest))
        return Descriptor(media_type, digest, len(data)), data

    def head_manifest(self, reference: str) -> Descriptor | None:
        """What a tag or digest points at, or None when the registry does not have it."""
        with self.registry.request("HEAD", self._api("manifests", reference), self.scopes,
                                   headers={"Accept": ACCEPT_MANIFESTS}) as resp:
            if resp.status_code == 404:
                return None
            if resp.status_code != 200:
                raise self.error(resp, "manifest", reference)
            digest = resp.headers.get("docker-content-digest", "")
            if not digest and ":" in reference:
                digest = reference
            size = decimal(resp.headers.get("content-length", ""))
            media_type = resp.headers.get("content-type", "").split(";")[0].strip()
            return Descriptor(media_type, digest, size if size is not None else -1)

    def put_manifest(self, reference: str, desc: Descriptor, data: bytes) -> None:
        """Stores a manifest or index under a tag or its digest; the registry must agree on the digest."""
        with self.registry.request("PUT", self._api("manifests", reference), self.scopes,
                                   headers={"Content-Type": desc.media_type}, content=data) as resp:
            if resp.status_code not in (200, 201, 202, 204):
                raise self.error(resp, "manifest", desc.digest)
            said = resp.headers.get("docker-content-digest")
        if said and said.partition(":")[0] == desc.digest.partition(":")[0] and said != desc.digest:
            raise DataError("manifest", desc.digest, f"registry {self.host} stored it as {said}")

    # ------------------------------------------------------------ blobs

    def blob_exists(self, desc: Descriptor) -> bool:
        with self.registry.request("HEAD", self._api("blobs", desc.digest), self.scopes) as resp:
            if resp.status_code == 404:
                return False
            if resp.status_code != 200:
                raise self.error(resp, "blob", desc.digest)
            size = decimal(resp.headers.get("content-length", ""))
            return size is None or size == desc.size

    @contextmanager
    def blob(self, digest: str, offset: int = 0) -> Iterator[tuple[Response, int]]:
        """Streams a blob from ``offset`` when the registry honours the range, else from 0.

        Yields the response and the offset its body starts at. A range answered from another
        byte (or refused with 416) is asked for again as the whole blob: the bytes kept from
        before are then replaced, not trusted.
        """
        headers = {"Accept-Encoding": "identity"}
        if offset:
            with self.registry.request("GET", self._api("blobs", digest), self.scopes,
                                       headers={**headers, "Range": f"bytes={offset}-"}) as resp:
                if resp.status_code == 206 and _content_range_start(resp.headers.get("content-range", "")) == offset:
                    yield resp, offset
                    return
                if resp.status_code == 200:
                    yield resp, 0
                    return
                if resp.status_code not in (206, 416):
                    raise self.error(resp, "blob", digest)
        with self.registry.request("GET", self._api("blobs", digest), self.scopes, headers=headers) as resp:
            if resp.status_code != 200:
                raise self.error(resp, "blob", digest)
            yield resp, 0

    def upload_blob(self, desc: Descriptor, body: Callable[[], Iterable[bytes | memoryview]],
                    mount_from: Sequence[str] = ()) -> str:
        """Uploads a blob the repository lacks: a cross-repository mount from the first of
        ``mount_from`` when the registry allows it, else a monolithic POST + PUT. Returns
        "mounted" or "uploaded".

        A refused mount (the source is stale or private: 401, 403 or 404, or a token server that
        will not grant pull on it) is not an error: the blob is uploaded as if there were no
        source, as containerd's pusher does. A PUT that fails half-way is restarted with a new
        upload session, never continued.
        """
        location = None
        if mount_from:  # the most recent source only: each refusal costs round-trips
            source = mount_from[0]
            scopes = (*self.scopes, repository_scope(source, "pull"))
            try:
                with self.registry.request("POST", self._api("blobs", "uploads/"), scopes,
                                           params={"mount": desc.digest, "from": source}) as resp:
                    if resp.status_code == 201:
                        return "mounted"
                    if resp.status_code == 202:
                        location = self._location(resp, desc)  # an ordinary upload instead: use it
                    elif resp.status_code not in MOUNT_REFUSED:
                        raise self.error(resp, "blob", desc.digest)
            except TokenRefused:
                pass  # no token for the source's scope; our own scope is asked for alone below
        failure: DistError | None = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if location is None:
                with self.registry.request("POST", self._api("blobs", "uploads/"), self.scopes) as resp:
                    if resp.status_code != 202:
                        raise self.error(resp, "blob", desc.digest)
                    location = self._location(resp, desc)
            url = _with_query(self.registry.url(location), "digest", desc.digest)
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)}
            try:
                with self.registry.request("PUT", url, self.scopes, headers=headers, content=body,
                                           retry=False) as resp:
                    if resp.status_code in (201, 204):
                        said = resp.headers.get("docker-content-digest")
                        if said and said != desc.digest:
                            raise DataError("blob", desc.digest, f"registry {self.host} stored it as {said}")
                        return "uploaded"
                    failure = self.error(resp, "blob", desc.digest)
                    if resp.status_code not in RETRY_STATUSES:
                        raise failure
            except TransportFailure as e:
                failure = e
            location = None  # a session that took part of a body is not continued: start a new one
            if attempt < MAX_ATTEMPTS:
                self.registry._sleep(backoff(attempt))
        assert failure is not None
        raise failure

    def _location(self, resp: Response, desc: Descriptor) -> str:
        location = resp.headers.get("location")
        if not location:
            raise Unavailable("blob", desc.digest, f"registry {self.host} opened an upload without a Location")
        from urllib.parse import urljoin

        # RFC 3986 resolution against the URL that answered, as docker's client does:
        # "<uuid>?_state=..." is relative to /v2/<repo>/blobs/uploads/, not to the host's root.
        return urljoin(resp.url, location)

    # ------------------------------------------------------------ errors

    def error(self, resp: Response, what: str, which: str, missing_is_not_found: bool = False) -> DistError:
        """The one-line error for an unexpected answer (reads a bounded error body)."""
        status = resp.status_code
        code = _error_code(resp)
        detail = f" ({code})" if code else ""
        if status == 404 and (missing_is_not_found or code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")):
            return NotFound(what, which, f"not found in registry {self.host}{detail}")
        # Refused access is about the reference the user named, whichever request met it.
        if status == 401:
            auth = self.registry.auth
            creds = "credentials rejected" if auth.credentials() else "authentication required"
            challenges = parse_challenges(resp.headers.get_list("www-authenticate"))
            if auth.credentials() and not auth.offered():
                # Credentials are sent only when a challenge asks for them: "rejected" sent people
                # to check a password the registry never saw.
                schemes = sorted({c.scheme for c in challenges if re.fullmatch(r"[a-z0-9_-]{1,32}", c.scheme)})
                creds = ("no WWW-Authenticate challenge came with it, so the credentials were not offered "
                         "(the registry refused anonymous access)" if not challenges else
                         f"its challenge ({', '.join(schemes) or 'unreadable'}) is not one dist answers, "
                         "so the credentials were not offered")
            elif creds == "credentials rejected":
                # A token that the token server granted with fewer actions than asked (pull, not
                # push: someone else's repository) comes back as insufficient_scope: the
                # credentials were fine, the access is not theirs.
                for challenge in challenges:
                    if challenge.params.get("error") == "insufficient_scope":
                        scope = challenge.params.get("scope", "")
                        readable = re.fullmatch(r"[A-Za-z0-9_./:,-]{1,256}", scope)
                        scope = shown_scope(scope) if readable else "this access"
                        creds = f"access denied: the credentials were accepted, but not for {scope}"
                        detail = " (insufficient_scope)"
                        break
            return Unavailable("image", self.display, f"401 Unauthorized from {self.host}: {creds}{detail}")
        if status == 403:
            return Unavailable("image", self.display, f"403 Forbidden from {self.host}: access denied{detail}")
        reason = resp.reason_phrase or ""
        return Unavailable(what, which, f"registry {self.host} answered {status} {reason}{detail}".rstrip())


def read_limited(resp: Response, limit: int, what: str, which: str) -> bytes:
    """The body of a streaming response, refusing more than ``limit`` bytes."""
    try:
        data = resp.read(limit + 1)
    except TransportError as e:
        raise TransportFailure(what, which, e.why) from None
    if len(data) > limit:
        raise DataError(what, which, f"registry answer larger than {limit} bytes")
    return data


def _error_code(resp: Response) -> str:
    """The first distribution error code of an error body (``MANIFEST_UNKNOWN``), or ""."""
    if resp.method == "HEAD":
        return ""
    try:
        body = read_limited(resp, MAX_ERROR_BODY, "registry", "")
        doc = json.loads(body)
        code = doc["errors"][0]["code"]
    except (DistError, ValueError, KeyError, IndexError, TypeError):
        return ""
    return code if isinstance(code, str) and re.fullmatch(r"[A-Z_]{1,64}", code) else ""


def _content_range_start(value: str) -> int | None:
    m = re.match(r"\s*bytes\s+(\d+)-", value)
    return int(m.group(1)) if m else None


def _with_query(url: str, key: str, value: str) -> str:
    from urllib.parse import quote

    return f"{url}{'&' if '?' in url else '?'}{key}={quote(value, safe='')}"


# ---------------------------------------------------------------- where blobs came from

SOURCE_LABEL_PREFIX = "dist.registry.source."  # + registry domain → repositories (containerd's idea)
MAX_SOURCES = 8


def source_label(domain: str) -> str:
    return SOURCE_LABEL_PREFIX + domain


def source_labels(domain: str, path: str) -> dict[str, str]:
    """The labels a blob fetched from (or pushed to) ``domain/path`` gets when it is committed."""
    return {source_label(domain): path}


def sources(labels: Mapping[str, str], domain: str) -> list[str]:
    """The repositories of ``domain`` a blob is known to be in, most recent first."""
    return [p for p in labels.get(source_label(domain), "").split(",") if p]


def record_sources(session, digests: Iterable[str], domain: str, path: str) -> None:
    """Records that these blobs are in ``domain/path`` (for later cross-repository mounts);
    one write transaction, and none when every blob already says so."""
    unique = list(dict.fromkeys(digests))

    def updates() -> dict[str, str]:
        found: dict[str, str] = {}
        for digest in unique:
            try:
                known = sources(session.content.info(digest).labels, domain)
            except NotFound:
                continue
            if path not in known:
                found[digest] = ",".join([path, *known][:MAX_SOURCES])
        return found

    if not updates():
        return
    key = source_label(domain)
    with session.meta.write():
        # Read again under the lock: another pull or push may have recorded its repository since,
        # and a list made before would drop it.
        for digest, value in updates().items():
            try:
                session.content.update_labels(digest, {key: value})
            except NotFound:
                continue
