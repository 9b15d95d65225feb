"""HTTP access for the dataset sources: bounded retries, resumable downloads, clear offline errors.

Compute nodes often have no internet, so every failure to reach a host says which dataset needed
which address and where to stage the file by hand; a staged file with the right hash is used
without any network access.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import warnings
from pathlib import Path
from urllib.parse import unquote, urlparse

import requests

from ...config import ConfigError

log = logging.getLogger(__name__)

RETRIES = 3  # extra attempts after the first, for network errors and 429/5xx answers
BACKOFF_S = 1.0  # waits BACKOFF_S, 2*BACKOFF_S, 4*BACKOFF_S ... between attempts
TIMEOUT_S = 60.0  # connect and read timeout of one request
TRANSIENT = {429, 500, 502, 503, 504}


class SourceUnavailable(RuntimeError):
    """A dataset host cannot be reached; the message says how to stage the data by hand."""


class ChecksumError(ValueError):
    """Downloaded data does not match its pinned checksum (or shape and dtype)."""


class UnverifiedDownloadWarning(UserWarning):
    """A download runs without a checksum because the config says ``verify: false``."""


class _Transient(requests.HTTPError):
    """A 429/5xx answer: worth retrying."""


RETRYABLE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError, _Transient)


@functools.lru_cache(maxsize=1)
def _session() -> requests.Session:
    return requests.Session()


def _check(response: requests.Response) -> None:
    if response.status_code in TRANSIENT:
        raise _Transient(f"HTTP {response.status_code} for {response.url}", response=response)
    response.raise_for_status()


def retrying(action):
    """Run ``action()``, retrying network errors and transient answers a bounded number of times."""
    for attempt in range(RETRIES + 1):
        try:
            return action()
        except RETRYABLE as exc:
            if attempt == RETRIES:
                raise
            wait = BACKOFF_S * 2**attempt
            log.info("attempt %d failed (%s); retrying in %.1f s", attempt + 1, exc, wait)
            time.sleep(wait)


def get_bytes(url: str) -> bytes | None:
    """The body at ``url``, or None on 404 (a missing chunk of a sparse array)."""

    def attempt() -> bytes | None:
        response = _session().get(url, timeout=TIMEOUT_S)
        if response.status_code == 404:
            return None
        _check(response)
        return response.content

    return retrying(attempt)


def get_required(url: str) -> bytes:
    data = get_bytes(url)
    if data is None:
        raise FileNotFoundError(f"{url}: not found (HTTP 404)")
    return data


def download(url: str, part: Path) -> None:
    """Stream ``url`` into ``part``, continuing an earlier partial download with an HTTP Range request."""

    def attempt() -> None:
        start = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={start}-"} if start else {}
        with _session().get(url, headers=headers, stream=True, timeout=TIMEOUT_S) as response:
            if response.status_code == 416:  # nothing left to send: the part is complete
                return
            _check(response)
            with open(part, "ab" if response.status_code == 206 else "wb") as f:
                for block in response.iter_content(1 << 20):
                    f.write(block)

    part.parent.mkdir(parents=True, exist_ok=True)
    retrying(attempt)


class _ResumingDownloader:
    """A pooch downloader that keeps its progress in ``<file>.part`` between runs."""

    def __init__(self, part: Path):
        self.part = part

    def __call__(self, url: str, output_file, pooch, check_only: bool = False) -> None:
        download(url, self.part)
        os.replace(self.part, output_file)  # pooch verifies output_file, then renames it into place


def url_filename(url: str) -> str:
    """The file name a URL's path ends in, un-escaped (a name with a separator in it is refused by
    :func:`cache_file`)."""
    path = urlparse(url).path
    return "" if path.endswith("/") else unquote(Path(path).name)


def cache_file(name: str, cache_dir: Path, filename: str, source: str) -> Path:
    """``cache_dir / filename``, refused unless it is a plain file name that stays inside the cache:
    a URL such as ``.../..%2F..%2Fx.tif`` must never write outside ``data/raw/<dataset>``."""
    cache_dir = Path(cache_dir)
    path = cache_dir / filename
    plain = filename not in ("", ".", "..") and "/" not in filename and "\\" not in filename
    if not plain or path.resolve().parent != cache_dir.resolve():
        raise ConfigError(f"dataset '{name}': {source} does not end in a plain file name ({filename!r}); "
                          "give the URL of a file (not of a folder, no '..' or '/' in its last part)")
    return path


def known_hash(name: str, key: str, spec: dict, entry: dict) -> str | None:
    """The pinned hash ``spec["hash"]`` ("sha256:..." or "md5:..."); None only with an explicit ``verify: false``.

    ``key`` is the config path of the hash (e.g. ``labels.mito.hash``), named in the messages.
    """
    if spec.get("hash"):
        return spec["hash"]
    if entry.get("verify") is False:
        warnings.warn(
            f"datasets.{name}: downloading {spec['url']} WITHOUT checksum verification (verify: false); "
            f"pin the SHA256 that pooch logs after the download as datasets.{name}.{key}",
            UnverifiedDownloadWarning,
            stacklevel=2,
        )
        return None
    raise ConfigError(
        f"datasets.{name}.{key} is not set for {spec['url']}: pin it as 'sha256:<hex>' or 'md5:<hex>' "
        f"(Zenodo lists md5 checksums at https://zenodo.org/api/records/<record>), or set "
        f"datasets.{name}.verify: false to download without verification"
    )


def fetch_file(name: str, url: str, hash_: str | None, path: Path) -> Path:
    """Download ``url`` to ``path`` through pooch (verified, atomic, resumable) unless it is already there."""
    import pooch

    try:
        return Path(
            pooch.retrieve(
                url,
                hash_,
                fname=path.name,
                path=path.parent,
                downloader=_ResumingDownloader(path.with_name(path.name + ".part")),
            )
        )
    except requests.RequestException as exc:
        raise SourceUnavailable(
            f"dataset '{name}': cannot download {url} ({exc}). To work offline, download the file "
            f"elsewhere and put it at {path.resolve()}"
            + (f" (it must match {hash_})" if hash_ else "")
            + "; a file there with the right checksum is used without any network access."
        ) from exc
    except ValueError as exc:  # pooch's hash mismatch; the bad download is already deleted
        raise ChecksumError(f"dataset '{name}': {url}: {exc}") from exc
