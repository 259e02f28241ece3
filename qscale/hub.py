"""Read a Hugging Face Hub repo as a checkpoint, fetching headers and scales only.

``org/name[@revision]`` is listed once (file names and sizes at one commit); ``config.json``,
the safetensors index and the quantization config files are fetched into the normal Hugging
Face cache; every safetensors file is then read with HTTP range requests: a speculative range
for the 8-byte length and a header of typical size, the exact rest when the header is larger,
and the file's small tensors in a few coalesced ranges. The bytes go through the same strict
parsers as a local file's (file sizes come from the listing), so a remote checkpoint gives the
same errors and findings as the same files on disk. Files already in the cache are read from
there; with ``HF_HUB_OFFLINE=1`` the repo is read from the cache alone.

Everything network-related goes through ``huggingface_hub`` (endpoint, token, offline mode,
retries), and each of its failures becomes a one-line :class:`~qscale.errors.HubError`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast
from urllib.parse import urlsplit

import httpx2
import numpy as np
from huggingface_hub import (
    HfApi,
    constants,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
    try_to_load_from_cache,
)
from huggingface_hub.errors import (
    DisabledRepoError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import (  # type: ignore[attr-defined]  # public, not in __all__
    build_hf_headers,
    hf_raise_for_status,
    http_stream_backoff,
    silent_tqdm,
)

from qscale._version import __version__
from qscale.checkpoint import (
    INDEX_SUFFIX,
    QUANT_CONFIG_FILES,
    REPO_SPEC,
    Checkpoint,
    ModelConfig,
    _check_index_tensors,
    _collect_tensors,
    _list_files,
    _read_json,
    _read_weight_map,
    parse_config,
    read_local_checkpoint,
    small_tensors,
    unindexed_files,
)
from qscale.errors import (
    CheckpointNotFound,
    HeaderError,
    HubAccessDenied,
    HubError,
    HubNotFound,
    QscaleError,
)
from qscale.progress import ReadProgress
from qscale.safetensors_io import FileHeader, TensorInfo, read_header, read_tensors
from qscale.scale_scan import SCALES, ScaleScan, is_scale, scale_names, scan_file, scan_tensors

log = logging.getLogger(__name__)

#: First range of a file: the length prefix and a header of this many bytes. Headers of large
#: shards run to ~100 KB; later files start from the largest header seen so far.
HEADER_GUESS = 64 * 1024
MAX_HEADER_GUESS = 1024 * 1024
#: Small tensors closer than this are fetched in one range: a new request costs more time
#: than this many extra bytes. Safetensors writers group tensors by dtype, so scales of one
#: file usually sit together and take one or two ranges.
COALESCE_GAP = 256 * 1024
WORKERS = 8  #: files read at the same time
RETRIES = 3

_QUIET: Any = silent_tqdm  #: huggingface_hub draws no bars: the CLI draws one (qscale.progress)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_Result = TypeVar("_Result")


def parse_repo_spec(spec: str) -> tuple[str, str | None]:
    """``org/name@rev`` -> (``org/name``, ``rev``); no ``@`` means the default branch."""
    m = REPO_SPEC.fullmatch(spec)
    if m is None:
        raise CheckpointNotFound(f"{spec}: not a Hub repo id (expected org/name[@revision])")
    return m["repo"], m["rev"]


def read_hub_checkpoint(
    spec: str, *, progress: ReadProgress | None = None, header_only: bool = False
) -> Checkpoint:
    """Read ``org/name[@revision]`` from the Hub, or from the local cache when offline.

    Past the headers, only the bytes of scale tensors are fetched (range requests, coalesced)
    for the deep scan (:mod:`qscale.scale_scan`), and none with ``header_only``.

    Raises:
        HubNotFound, HubAccessDenied, HubError, and every error a local read raises
    """
    repo_id, revision = parse_repo_spec(spec)
    if constants.is_offline_mode():
        hint = f"unset HF_HUB_OFFLINE, or download the repo first: `hf download {repo_id}`"
        return _read_cached(
            spec,
            repo_id,
            revision,
            progress,
            HubError("HF_HUB_OFFLINE is set", hint=hint),
            header_only,
        )
    api = HfApi(library_name="qscale", library_version=__version__)
    try:
        with _hub_errors(spec, revision):
            info = api.model_info(repo_id, revision=revision, files_metadata=True)
    except HubError as exc:
        if type(exc) is not HubError:  # not found / no access: the cache must not hide that
            raise
        log.debug("%s; trying the local cache", exc)
        return _read_cached(spec, repo_id, revision, progress, exc, header_only)
    sizes = {s.rfilename: s.size for s in info.siblings or () if "/" not in s.rfilename}
    if info.sha is None or None in sizes.values():
        raise HubError(f"{spec}: {constants.ENDPOINT} listed the repo without commit or sizes")
    sizes_known = cast(dict[str, int], sizes)
    return _read_remote(spec, repo_id, info.sha, sizes_known, progress, header_only)


def _read_remote(
    spec: str,
    repo_id: str,
    commit: str,
    sizes: dict[str, int],
    progress: ReadProgress | None,
    header_only: bool = False,
) -> Checkpoint:
    if not any(n.endswith((".safetensors", INDEX_SUFFIX)) for n in sizes):
        raise CheckpointNotFound(
            f"{spec}: no .safetensors file in this repo",
            hint="qscale reads safetensors only; convert .bin/.pt checkpoints first",
        )
    wanted = [n for n in sizes if n == "config.json" or n in QUANT_CONFIG_FILES]
    wanted += [n for n in sizes if n.endswith(INDEX_SUFFIX)]
    local: dict[str, Path] = {}
    with _hub_errors(spec, commit):
        for name in wanted:  # small files, into the normal cache (pinned to the listed commit)
            path = hf_hub_download(repo_id, name, revision=commit, tqdm_class=_QUIET)
            local[name] = Path(path)
    root = next(iter(local.values())).parent if local else Path(constants.HF_HUB_CACHE)
    files, index = _list_files(root, sizes)  # the same index/stray/missing checks as locally
    config = (
        parse_config(_read_json(local["config.json"]))
        if "config.json" in local
        else ModelConfig({})
    )
    extra = {n: _read_json(local[n]) for n in QUANT_CONFIG_FILES if n in local}
    source = HubFiles(spec, repo_id, commit, sizes)
    if progress is not None:
        progress.start(len(files), remote=True)
    headers, values = source.read_headers(files, progress)
    tensors = _collect_tensors(headers)
    if index is not None:
        _check_index_tensors(index[0], index[1], tensors)
    scan = None if header_only else source.scan_scales(headers, scale_names(config.raw))
    return Checkpoint(
        source=spec,
        root=None,
        config=config,
        extra_configs=extra,
        files=tuple(headers),
        tensors=tensors,
        values=values,
        index_file=index[0] if index else None,
        remote=source,
        scale_scan=scan,
        header_only=header_only,
        unindexed=unindexed_files([n for n in sizes if n.endswith(".safetensors")], files)
        if index is not None
        else (),
    )


# --------------------------------------------------------------------------- the cache


def _read_cached(
    spec: str,
    repo_id: str,
    revision: str | None,
    progress: ReadProgress | None,
    why: HubError,
    header_only: bool = False,
) -> Checkpoint:
    """Read the repo's snapshot from the local cache, as a local checkpoint folder; ``why`` is
    the reason the Hub cannot be asked, raised (amended) if the cache does not have the repo."""
    reason = why.message.removeprefix(f"{spec}:").strip()
    not_cached = HubError(
        f"{spec}: not in the local Hugging Face cache ({constants.HF_HUB_CACHE}), and the Hub"
        f" cannot be asked: {reason}",
        hint=why.hint,
    )
    try:
        folder = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                local_files_only=True,
                allow_patterns=["*.safetensors", "*.json"],
                tqdm_class=_QUIET,
            )
        )
    except IncompleteSnapshotError:
        raise _partly_cached(spec, not_cached) from None
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise not_cached from None
    names = {p.name for p in folder.iterdir()}
    indexes = sorted(n for n in names if n.endswith(INDEX_SUFFIX))
    if indexes:
        index_file = "model" + INDEX_SUFFIX if "model" + INDEX_SUFFIX in indexes else indexes[0]
        missing = set(_read_weight_map(folder, index_file).values()) - names
        if any(Path(n).name == n and n != ".." for n in missing):  # paths: QS009 says more
            raise _partly_cached(spec, not_cached)
    elif not any(n.endswith(".safetensors") for n in names):
        raise _partly_cached(spec, not_cached)
    log.debug("%s: reading the cached snapshot %s", spec, folder)
    ckpt = read_local_checkpoint(folder, progress=progress, header_only=header_only)
    return replace(ckpt, source=spec)


def _partly_cached(spec: str, base: HubError) -> HubError:
    return HubError(
        base.message.replace("not in the local", "only partly in the local", 1),
        hint=base.hint.replace("download the repo first", "complete the download"),
    )


# --------------------------------------------------------------------------- remote files


class HubFiles:
    """The safetensors files of one repo commit, read by HTTP range requests (or from the
    cache, for files already there). Thread-safe: files are read in parallel."""

    def __init__(self, spec: str, repo_id: str, commit: str, sizes: Mapping[str, int]) -> None:
        self.spec, self.repo_id, self.commit = spec, repo_id, commit
        self.sizes = dict(sizes)
        self._headers = build_hf_headers(library_name="qscale", library_version=__version__)
        self._located: dict[str, str] = {}  #: file -> where its URL redirected last time
        self._guess = HEADER_GUESS
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- reading in parallel

    def read_headers(
        self, files: Sequence[str], progress: ReadProgress | None = None
    ) -> tuple[list[FileHeader], dict[str, np.ndarray]]:
        """Every file's header and small tensors, as the local reader returns them."""
        on_done = None if progress is None else (lambda r: progress.advance(r[2]))
        results = self._parallel(files, self._read_header, on_done)
        values: dict[str, np.ndarray] = {}
        for _, small, _ in results:
            values.update(small)
        return [header for header, _, _ in results], values

    def read_values(self, by_file: Mapping[str, Sequence[TensorInfo]]) -> dict[str, np.ndarray]:
        """Decode the given tensors (``Checkpoint.read_values`` on a Hub repo)."""
        files = list(by_file)
        out: dict[str, np.ndarray] = {}
        for values in self._parallel(files, lambda f: self._read_tensors(f, by_file[f])):
            out.update(values)
        return out

    def scan_scales(self, headers: Sequence[FileHeader],
                    names: frozenset[str] = SCALES) -> ScaleScan:
        """The deep scan of every file's scale tensors (leaf names in ``names``): range reads
        of their bytes only, coalesced across gaps under :data:`COALESCE_GAP` (or the cached
        file, when there)."""
        with_scales = [h for h in headers if any(is_scale(t, names) for t in h.tensors)]
        # the small ones were decoded with the headers, and are judged from their values
        by_name = {h.file: h for h in with_scales}
        parts = self._parallel([h.file for h in with_scales],
                               lambda f: self._scan(by_name[f], names))
        return ScaleScan.merge(parts)

    def _scan(self, header: FileHeader, names: frozenset[str] = SCALES) -> ScaleScan:
        name = header.file
        small = {t.name for t in small_tensors(header)}
        cached = self._cached(name)
        if cached is not None:
            with _cache_errors(name), open(cached, "rb") as fh:
                return scan_file(fh.fileno(), header, small, names)

        def read(begin: int, end: int) -> bytes:
            data = self._fetch(name, begin, end)
            if len(data) < end - begin:
                raise HubError(f"{self.spec}: {name}: the server sent fewer bytes than asked")
            return data[: end - begin]

        with _hub_errors(self.spec, self.commit):
            scales = [t for t in header.tensors if is_scale(t, names) and t.name not in small]
            return scan_tensors(read, scales, gap=COALESCE_GAP)

    def _parallel(
        self,
        files: Sequence[str],
        read: Callable[[str], _Result],
        on_done: Callable[[_Result], None] | None = None,
    ) -> list[_Result]:
        """``read`` every file on a thread pool. Every file is read even when one fails, and
        the first failure in file order is raised: the error a local read gives."""
        done: dict[str, _Result] = {}
        failed: dict[str, QscaleError] = {}
        pool = ThreadPoolExecutor(max_workers=max(1, min(WORKERS, len(files))))
        try:
            futures: dict[Future[_Result], str] = {pool.submit(read, f): f for f in files}
            for fut in as_completed(futures):
                try:
                    done[futures[fut]] = fut.result()
                except QscaleError as exc:
                    failed[futures[fut]] = exc
                    continue
                if on_done is not None:
                    on_done(done[futures[fut]])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        for f in files:
            if f in failed:
                raise failed[f]
        return [done[f] for f in files]

    # ---------------------------------------------------------------- one file

    def _read_header(self, name: str) -> tuple[FileHeader, dict[str, np.ndarray], int]:
        size = self.sizes[name]
        cached = self._cached(name)
        if cached is not None:
            with _cache_errors(name), open(cached, "rb") as fh:
                header = read_header(fh, file=name, file_size=size)
                return header, read_tensors(fh, small_tensors(header)), 0
        with _hub_errors(self.spec, self.commit):
            rf = RangeFile(size, lambda a, b: self._fetch(name, a, b), read_ahead=self._guess)
            header = read_header(cast(BinaryIO, rf), file=name, file_size=size)
            self._guess = max(self._guess, min(MAX_HEADER_GUESS, header.data_start * 5 // 4))
            small = small_tensors(header)
            rf.prefetch(coalesce([(t.begin, t.end) for t in small]))
            return header, read_tensors(cast(BinaryIO, rf), small), rf.fetched

    def _read_tensors(self, name: str, infos: Sequence[TensorInfo]) -> dict[str, np.ndarray]:
        cached = self._cached(name)
        if cached is not None:
            with _cache_errors(name), open(cached, "rb") as fh:
                return read_tensors(fh, infos)
        with _hub_errors(self.spec, self.commit):
            rf = RangeFile(self.sizes[name], lambda a, b: self._fetch(name, a, b))
            rf.prefetch(coalesce([(t.begin, t.end) for t in infos]))
            return read_tensors(cast(BinaryIO, rf), infos)

    def _cached(self, name: str) -> str | None:
        found = try_to_load_from_cache(self.repo_id, name, revision=self.commit)
        return found if isinstance(found, str) else None

    # ---------------------------------------------------------------- HTTP

    def _fetch(self, name: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of a file. The file URL redirects (on the Hub, to a signed CDN
        URL); the target is reused for the file's next ranges, and resolved again if refused."""
        resolve = hf_hub_url(self.repo_id, name, revision=self.commit)
        with self._lock:
            url = self._located.get(name, resolve)
        try:
            data, final = self._get(name, url, start, end)
        except HfHubHTTPError as exc:
            if url == resolve or _status(exc) not in (401, 403, 404, 410):
                raise
            data, final = self._get(name, resolve, start, end)  # the signed URL expired
        with self._lock:
            self._located[name] = final
        return data

    def _get(self, name: str, url: str, start: int, end: int) -> tuple[bytes, str]:
        headers = dict(self._headers)
        if _origin(url) != _origin(constants.ENDPOINT):
            headers.pop("authorization", None)  # never send the token off the Hub
        headers["range"] = f"bytes={start}-{end - 1}"
        headers["accept-encoding"] = "identity"
        with http_stream_backoff(
            "GET",
            url,
            headers=headers,
            timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT,
            max_retries=RETRIES,
        ) as r:
            if r.status_code >= 400:
                r.read()
                hf_raise_for_status(r)
            if r.status_code == 200 and start == 0 and _length(r.headers) in range(end + 1):
                return r.read(), str(r.url)  # the whole (small) file: some servers answer so
            if r.status_code != 206:  # stop before a full download starts
                raise HubError(
                    f"{self.spec}: {urlsplit(url).netloc} answered a range request for {name}"
                    f" with HTTP {r.status_code}, not 206 Partial Content",
                    hint="qscale reads only headers and scales; use an endpoint (HF_ENDPOINT)"
                    " that supports HTTP range requests",
                )
            self._check_range(name, r.headers.get("content-range", ""), start)
            return r.read(), str(r.url)

    def _check_range(self, name: str, content_range: str, start: int) -> None:
        m = _CONTENT_RANGE.fullmatch(content_range.strip())
        if m is None or int(m[1]) != start:
            raise HubError(
                f"{self.spec}: {name}: the server sent the wrong byte range"
                f" ({content_range or 'no Content-Range'}, asked from byte {start})"
            )
        if m[3] != "*" and int(m[3]) != self.sizes[name]:
            raise HubError(
                f"{self.spec}: {name} is {m[3]} bytes on the server but {self.sizes[name]}"
                " in the repo listing",
                hint="the repo changed while qscale read it; run again",
            )


def _length(headers: Mapping[str, str]) -> int:
    try:
        return int(headers.get("content-length", "-1"))
    except ValueError:
        return -1


def _status(exc: HfHubHTTPError) -> int | None:
    return exc.response.status_code if exc.response is not None else None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def coalesce(spans: Sequence[tuple[int, int]], gap: int = COALESCE_GAP) -> list[tuple[int, int]]:
    """Merge ``[begin, end)`` spans that are less than ``gap`` bytes apart."""
    out: list[tuple[int, int]] = []
    for begin, end in sorted(spans):
        if out and begin - out[-1][1] <= gap:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((begin, end))
    return out


class RangeFile:
    """A read-only, seekable file of known size whose bytes are fetched on demand by range.

    The first fetch reads ``read_ahead`` bytes more than asked (the header guess); later reads
    fetch exactly what is missing. :meth:`prefetch` fetches spans ahead of the reads.
    """

    def __init__(
        self, size: int, fetch: Callable[[int, int], bytes], *, read_ahead: int = 0
    ) -> None:
        self.size = size
        self.fetched = 0  #: bytes received
        self._fetch = fetch
        self._read_ahead = read_ahead
        self._blocks: dict[int, bytes] = {}  #: start -> bytes; blocks never overlap
        self._pos = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move the position, as ``io`` files do."""
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        """The position."""
        return self._pos

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes from the position (all to the end if ``n`` < 0)."""
        end = self.size if n < 0 else min(self.size, self._pos + n)
        for begin, stop in self._missing(self._pos, end):
            self._get(begin, stop)
        data = self._slice(self._pos, end)
        self._pos += len(data)
        return data

    def prefetch(self, spans: Sequence[tuple[int, int]]) -> None:
        """Fetch the parts of these spans that are not here yet."""
        for begin, end in spans:
            for a, b in self._missing(begin, min(end, self.size)):
                self._get(a, b)

    def _get(self, begin: int, end: int) -> None:
        if self._read_ahead:
            end = max(end, min(self.size, begin + self._read_ahead))
            end = min([end, *(s for s in self._blocks if s > begin)])
            self._read_ahead = 0
        data = self._fetch(begin, end)
        self.fetched += len(data)
        if data:
            self._blocks[begin] = data[: end - begin]

    def _missing(self, begin: int, end: int) -> list[tuple[int, int]]:
        """The sub-spans of ``[begin, end)`` that no block holds."""
        out: list[tuple[int, int]] = []
        pos = begin
        for start in sorted(self._blocks):
            stop = start + len(self._blocks[start])
            if stop <= pos or start >= end:
                continue
            if start > pos:
                out.append((pos, start))
            pos = max(pos, stop)
        if pos < end:
            out.append((pos, end))
        return out

    def _slice(self, begin: int, end: int) -> bytes:
        """The held bytes from ``begin`` on, up to ``end`` or the first gap."""
        parts: list[bytes] = []
        pos = begin
        while pos < end:
            start = next((s for s, b in self._blocks.items() if s <= pos < s + len(b)), None)
            if start is None:
                break
            parts.append(self._blocks[start][pos - start : end - start])
            pos += len(parts[-1])
        return b"".join(parts)


# --------------------------------------------------------------------------- errors


@contextmanager
def _cache_errors(name: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:  # as the local reader says it
        raise HeaderError(f"{name}: cannot be read ({exc.strerror})", code="QS001") from None


@contextmanager
def _hub_errors(spec: str, revision: str | None) -> Iterator[None]:
    """Turn huggingface_hub's and the HTTP client's errors into one-line qscale errors."""
    try:
        yield
    except (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        LocalEntryNotFoundError,
        HFValidationError,
        httpx2.TransportError,
    ) as exc:
        raise _translate(exc, spec, revision) from None


def _translate(exc: Exception, spec: str, revision: str | None) -> QscaleError:
    repo = spec.partition("@")[0]
    host = constants.ENDPOINT
    if isinstance(exc, GatedRepoError):
        return HubAccessDenied(f"{repo}: gated repo, and no token with access to it was sent")
    if isinstance(exc, RepositoryNotFoundError):
        return HubNotFound(
            f"{spec}: no local file or folder of that name, and no repo `{repo}` on {host}"
            " (or it is private and no valid token was sent)"
        )
    if isinstance(exc, RevisionNotFoundError):
        return HubNotFound(
            f"{spec}: repo `{repo}` has no revision `{revision}` on {host}",
            hint="use a branch, tag or commit hash of the repo",
        )
    if isinstance(exc, DisabledRepoError):
        return HubAccessDenied(f"{repo}: the Hub has disabled this repo", hint="")
    if isinstance(exc, RemoteEntryNotFoundError):
        return HubError(
            f"{spec}: a file of the repo listing is gone from {host}",
            hint="the repo changed while qscale read it; run again",
        )
    if isinstance(exc, HfHubHTTPError):
        status = _status(exc)
        if status in (401, 403):
            return HubAccessDenied(f"{spec}: HTTP {status} from {host}: the token may not read it")
        return HubError(f"{spec}: HTTP {status} from {host}")
    if isinstance(exc, HFValidationError):
        return HubNotFound(f"{spec}: not a valid Hub repo id ({_first_line(exc)})")
    return HubError(f"{spec}: cannot reach {host} ({type(exc).__name__}: {_first_line(exc)})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no details"
