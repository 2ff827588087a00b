"""The vendored external FHIR files are exactly the ones SOURCES.md lists, with their licenses, and small."""

from __future__ import annotations

import hashlib

import pytest

from tests.external import DATA, VENDORED, external, find, sources


def test_every_vendored_file_is_listed_with_its_size_and_sha256() -> None:
    listed = {s.file: s for s in sources() if s.vendored}
    on_disk = sorted(str(p.relative_to(VENDORED)) for p in VENDORED.rglob("*") if p.is_file())
    assert on_disk == sorted(listed)
    for rel, source in listed.items():
        data = (VENDORED / rel).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (source.size, source.sha256), rel


def test_every_source_names_a_commit_and_a_license_whose_text_is_vendored() -> None:
    rows = sources()
    assert len(rows) == 21
    for source in rows:
        assert (DATA / "licenses" / f"{source.license}.txt").is_file(), source.license


def test_vendored_data_stays_small() -> None:
    assert sum(s.size for s in sources() if s.vendored) < 3 * 1024 * 1024


def test_a_missing_large_file_skips_with_the_url_to_download_it() -> None:
    large = next(s for s in sources() if not s.vendored)
    if find(large.file) is not None:
        pytest.skip("the large file is present on this machine")
    with pytest.raises(pytest.skip.Exception) as info:
        external(large.file)
    assert large.url in str(info.value) and "$CDS_EXTERNAL_DATA" in str(info.value)

