"""Cohort review: evaluate every patient of a Bulk FHIR export (or a folder of bundles) at once.

    cds cohort run ./export/ --out review/ --as-of 2026-11-01
    cds cohort synth --patients 100000 --out big/ --seed 7

The flow: ``sources`` reads the input and groups NDJSON lines by patient through an on-disk
SQLite spill (``spill``), so memory does not grow with the export; ``runner`` cuts the patients
into partitions and evaluates each partition with the same function (``worker``) on a local
process pool or a Dask cluster; ``outputs`` writes per-partition results and merges them;
``report`` renders the self-contained HTML page. Every patient read is either evaluated or
rejected, and every line that could not be used is listed in errors.jsonl.

For notebooks: ``read_results(out)`` returns the findings, patients and errors as pandas
DataFrames (``pip install 'her2-cds[analysis]'``); ``fhir_bundles(out)`` turns the ``--format
fhir`` output into transaction Bundles for a FHIR server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cds.cohort.results import Results, fhir_bundles, read_results

__all__ = ["Results", "fhir_bundles", "read_results"]


def __getattr__(name: str) -> Any:
    """Imported on first use: every ``cds`` command imports this package, and the results reader
    pulls in pyarrow and the FHIR renderer, which only notebooks and scripts need."""
    if name in __all__:
        from cds.cohort import results

        return getattr(results, name)
    raise AttributeError(f"module 'cds.cohort' has no attribute {name!r}")
